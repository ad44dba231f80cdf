"""The checks ``ShellVAE`` runs on the hyperparameters only it has, its networks and a checkpoint it
is asked to resume from, before any data is read (``ShellVAE.check_params``; the CLI runs them too).
The shared hyperparameters are checked once for both estimators (``estimators.base``); the shell,
the geometry, the model and the method check their own settings.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from shellvae.training import checkpoint as checkpoints
from shellvae.training.acceleration import COMPILE_MODES
from shellvae.errors import ShellVAEError
from shellvae.core.model import ARCHITECTURES
from shellvae.core.shell import SphericalShell
from shellvae.base.validation import check_scalar


def check_shell_vae_params(est) -> None:
    """The hyperparameters only ``ShellVAE`` has, checked (the shared ones: ``VAEEstimator.check_params``;
    the shell, geometry, model and method check their own)."""
    if est.n_clusters != "auto":
        check_scalar(est.n_clusters, "n_clusters", integer=True, low=1, fix="Give an integer >= 2 or 'auto'.")
    if est.sigma2 is not None:
        check_scalar(est.sigma2, "sigma2", fix="Or leave sigma2=None to use sigma2_ratio * lambda_max.")
    else:
        check_scalar(est.sigma2_ratio, "sigma2_ratio", fix="2.0 is the paper's moderate violating condition.")
    check_networks(est)
    SphericalShell(est.r_min, est.r_max, radius=est.radius, zero_norm=est.zero_norm).check_params()
    for name in ("encoder_hidden", "decoder_hidden"):
        widths = getattr(est, name)
        if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
            raise ShellVAEError(f"{name}={widths!r}: give the layer widths, e.g. (256, 128); () for a linear map.")
        for i, width in enumerate(widths):
            check_scalar(width, f"{name}[{i}]", integer=True)
    if not (isinstance(est.compile, bool) or est.compile in COMPILE_MODES):
        raise ShellVAEError(f"compile={est.compile!r}: give True, False or a torch.compile mode, one of "
                            f"{', '.join(COMPILE_MODES)}.")
    if est.resume and est.checkpoint is None:
        raise ShellVAEError("resume=True needs checkpoint=PATH, the file to continue from.")
    try:
        folder = est.checkpoint is not None and Path(est.checkpoint).is_dir()
    except (OSError, ValueError) as exc:  # e.g. a name too long for the file system
        raise ShellVAEError(f"checkpoint={str(est.checkpoint)[:80]!r}...: not a usable path "
                            f"({getattr(exc, 'strerror', None) or exc}); give a shorter one.") from None
    if folder:
        raise ShellVAEError(
            f"checkpoint={str(est.checkpoint)!r} is a folder; give a file path, e.g. 'run/checkpoint.pt'."
        )

def check_networks(est) -> None:
    for name in ("encoder", "decoder"):
        module = getattr(est, name)
        if module is not None and not isinstance(module, nn.Module):
            raise ShellVAEError(f"{name}={type(module).__name__}(...): give a torch.nn.Module (or None to use "
                                "arch=...).")
    if (est.encoder is None) != (est.decoder is None):
        given = "encoder" if est.encoder is not None else "decoder"
        raise ShellVAEError(f"only {given}= was given: give both encoder= and decoder= (your own networks), or "
                            "neither (arch=... builds them).")
    if est.encoder is None and est.arch not in ARCHITECTURES:
        raise ShellVAEError(f"arch={est.arch!r}: choose one of {', '.join(ARCHITECTURES)}, register yours with "
                            "shellvae.register_architecture, or pass encoder= and decoder=.")


def check_checkpoint(est) -> None:
    """Before resuming: the checkpoint must come from a run with this model and at most ``epochs`` epochs."""
    saved, epoch = checkpoints.describe(est.checkpoint)
    built = {k: tuple(v.shape) for k, v in est.model_.state_dict().items()}
    problem = None
    if saved != built:
        problem = "its model has other layers or sizes"
    elif not 0 <= epoch <= est.epochs:
        problem = f"it holds epoch {epoch}, but epochs={est.epochs}"
    if problem:
        raise ShellVAEError(
            f"checkpoint {est.checkpoint}: cannot resume, {problem}. Resume with the arguments of the interrupted "
            "run, or delete the checkpoint to start afresh."
        )
