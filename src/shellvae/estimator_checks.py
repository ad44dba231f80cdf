"""The checks ``ShellVAE`` runs on its own hyperparameters, its networks, its device and a
checkpoint it is asked to resume from, before any data is read (``ShellVAE.check_params``; the CLI
runs them too). The shell, the geometry, the model and the method check their own settings.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from shellvae import checkpoint as checkpoints
from shellvae.acceleration import COMPILE_MODES
from shellvae.errors import ShellVAEError
from shellvae.methods import get_method
from shellvae.model import ARCHITECTURES
from shellvae.shell import SphericalShell
from shellvae.validation import check_scalar


def check_params(est) -> None:
    """The hyperparameters ``ShellVAE`` itself uses, checked (the shell, geometry, model and method
    check their own)."""
    for name in ("latent_dim", "epochs", "batch_size", "eval_every"):
        check_scalar(getattr(est, name), name, integer=True)
    if est.n_clusters != "auto":
        check_scalar(est.n_clusters, "n_clusters", integer=True, low=1, fix="Give an integer >= 2 or 'auto'.")
    check_scalar(est.lr, "lr", fix="Adam's usual step is 1e-3.")
    if est.sigma2 is not None:
        check_scalar(est.sigma2, "sigma2", fix="Or leave sigma2=None to use sigma2_ratio * lambda_max.")
    else:
        check_scalar(est.sigma2_ratio, "sigma2_ratio", fix="2.0 is the paper's moderate violating condition.")
    check_scalar(est.beta, "beta", low_open=False, fix="beta=0 turns the KL term off.")
    check_scalar(est.random_state, "random_state", integer=True, low_open=False, high=2**32 - 1)
    check_scalar(est.certificate_margin, "certificate_margin", low_open=False, high=1.0,
                 fix="It is a share of delta; 0.05 asks the decoder to recover 5% of the between-cluster variance.")
    if not (est.method_params is None or isinstance(est.method_params, dict)):
        raise ShellVAEError(
            f"method_params={est.method_params!r}: give a dict, e.g. {{'lambda_b': 5.0}}, or None."
        )
    get_method(est.method, **(est.method_params or {}))  # the method checks its hyperparameters
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
    check_device(est)
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

def check_device(est) -> None:
    try:
        device = torch.device(est.device)
    except (RuntimeError, TypeError) as exc:
        raise ShellVAEError(f"device={est.device!r} is not a torch device ({exc}); use 'cpu' or 'cuda'.") from None
    if device.type == "meta":  # tensors without data: training or loading on it cannot work
        raise ShellVAEError(f"device={est.device!r} holds no data (shapes only); use 'cpu' or 'cuda'.")
    count = {"cuda": torch.cuda.device_count, "mps": lambda: int(torch.backends.mps.is_available())}
    if device.type in count and (device.index or 0) >= count[device.type]():
        raise ShellVAEError(f"device={est.device!r}: this machine has no such {device.type} device; use 'cpu'.")

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
