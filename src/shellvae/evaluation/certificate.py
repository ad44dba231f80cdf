"""The non-collapse certificate (docs/method.md §3, §6), for shellvae's models and for any VAE.

A constant decoder output a has, on the same held-out samples, L_clu >= ``collapse_floor`` (the
spread of the samples' own cluster centres; equal to delta on the training data). So held-out
L_clu < min(delta, collapse_floor) - eps proves the decoder output depends on the input: the
model is not collapsed. The margin eps is the certificate's own setting.

``certify`` turns ``evaluate``'s metrics into the verdict; ``certify_vector_model`` runs both on a VAE
that shellvae did not train, given as two callables (docs/custom_models.md).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from shellvae.errors import ShellVAEError
from shellvae.core.geometry import ClusterGeometry
from shellvae.evaluation.metrics import evaluate
from shellvae.core.region import FeasibleRegion
from shellvae.core.shell import SphericalShell
from shellvae.base.validation import check_scalar

#: the region certificate's default margin, as a share of delta: certified iff held-out L_clu is below
#: the collapse floor by more than 5% of delta, i.e. the decoder recovers more than 5% of the
#: between-cluster variance (cluster R^2 > 0.05). One bar for every method (docs/method.md §6).
REGION_MARGIN_SHARE = 0.05


class CollapseCertificate:
    """What every non-collapse certificate gives, whichever collapse floor it measures against:
    ``certified``, the ``reasons`` in words, ``to_dict()`` and the printed verdict (``details`` are its
    own lines). The two floors: ``Certificate``, the cluster-aware region's (Gaussian decoders), and
    ``SequenceCertificate``, the z-free language model's (autoregressive decoders)."""

    certified: bool
    reasons: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def details(self) -> list[str]:
        """The lines between the verdict and the reasons."""
        raise NotImplementedError

    def __str__(self) -> str:
        verdict = "CERTIFIED non-collapsed" if self.certified else "NOT certified"
        return "\n".join([verdict, *self.details(), *(f"  - {r}" for r in self.reasons)])


@dataclass
class Certificate(CollapseCertificate):
    """Whether held-out data proves the decoder output depends on the input (the region's floor).

    ``l_clu_shuffled`` is the control: decoding other samples' latents must lose the advantage.
    ``l_clu_sampled`` decodes a sampled z instead of the posterior mean. ``kl``, ``mutual_info`` and
    ``l_clu_sampled`` are None for an encoder that gives no log-variances (``certify_vector_model``).
    """

    W: float
    delta: float
    eps: float
    l_clu: float
    collapse_floor: float
    margin: float
    cluster_r2: float
    l_clu_shuffled: float
    kl: float | None
    active_units: int
    mutual_info: float | None
    cluster_accuracy: float
    feasible: bool
    certified: bool
    reasons: list[str] = field(default_factory=list)
    l_clu_sampled: float | None = None

    def details(self) -> list[str]:
        return [
            f"  feasible region [W, delta) = [{self.W:.4f}, {self.delta:.4f})  (eps = {self.eps:.4f})",
            f"  held-out L_clu = {self.l_clu:.4f}  (collapse floor {self.collapse_floor:.4f}, "
            f"margin delta - L_clu = {self.margin:+.4f}, cluster R^2 = {self.cluster_r2:.3f})",
            f"  shuffled-latent L_clu = {self.l_clu_shuffled:.4f}, sampled-z L_clu = {_fmt(self.l_clu_sampled, '.4f')}; "
            f"KL = {_fmt(self.kl, '.3f')} nats, {self.active_units} active units, MI = {_fmt(self.mutual_info, '.3f')} "
            f"nats (a biased estimate: near 0 reads as 0), reconstructions in own cluster = {100 * self.cluster_accuracy:.1f}%",
        ]


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def certify(metrics: dict, region, eps: float | None = None) -> Certificate:
    """The verdict from held-out ``evaluate`` metrics and the run's ``FeasibleRegion``: certified iff
    the region is non-empty and L_clu < min(delta, collapse_floor) - eps (default eps:
    ``REGION_MARGIN_SHARE * delta``)."""
    W, delta = region.W_, region.delta_
    # a negative margin would certify outputs a constant (collapsed) decoder reaches
    eps = check_scalar(REGION_MARGIN_SHARE * delta if eps is None else eps, "eps", low_open=False)
    bar = min(delta, metrics["collapse_floor"]) - eps
    reasons = []
    if not region.feasible_:
        reasons.append(f"the feasible region is empty (W = {W:.4f} >= delta = {delta:.4f}): the guarantee does "
                       "not apply at this K; refit with more clusters (n_clusters='auto').")
    if metrics["l_clu"] >= bar:
        reasons.append(f"held-out L_clu = {metrics['l_clu']:.4f} is not below min(delta, collapse floor) - eps = "
                       f"{bar:.4f}: a constant (collapsed) decoder could do as well.")
    else:
        reasons.append(f"held-out L_clu = {metrics['l_clu']:.4f} < {bar:.4f}: no constant output reaches this, "
                       "so the decoder output depends on z.")
    if metrics["l_clu_shuffled"] <= metrics["l_clu"]:
        reasons.append("shuffling latents across samples does not worsen L_clu: the latent carries no cluster "
                       "information.")
    if metrics.get("kl") is None:
        reasons.append("the encoder gives no log-variances: the sampled-z control, KL and MI are not available.")
    return Certificate(
        W=W, delta=delta, eps=eps, l_clu=metrics["l_clu"], collapse_floor=metrics["collapse_floor"],
        margin=metrics["margin"], cluster_r2=metrics["cluster_r2"], l_clu_shuffled=metrics["l_clu_shuffled"],
        kl=metrics["kl"], active_units=metrics["active_units"], mutual_info=metrics["mutual_info"],
        cluster_accuracy=metrics["cluster_accuracy"], feasible=bool(region.feasible_),
        certified=bool(region.feasible_ and metrics["l_clu"] < bar), reasons=reasons,
        l_clu_sampled=metrics.get("l_clu_sampled"),
    )


# -- any VAE ------------------------------------------------------------------------------------------
class CallableVAE(torch.nn.Module):
    """A VAE's ``encode`` and ``decode`` callables as the model ``evaluate`` reads, on shell rows.

    ``encode(x)`` gives posterior means (B, d) or a pair (mu, logvar); ``decode(z)`` gives (B, D).
    With ``shell`` (space="data") the callables work in data space: the shell rows ``evaluate``
    hands out are mapped back with ``shell.inverse_transform`` before ``encode``, and ``decode``'s
    output is mapped onto the shell with ``shell.transform``. The certificate then judges
    ``shell.transform(decode(z))``, a function of the decoder's output: if that depends on z, so
    does the output. Outputs are taken as float32 on ``device``.
    """

    def __init__(self, encode: Callable, decode: Callable, device="cpu", shell: SphericalShell | None = None):
        super().__init__()
        self.encode_fn, self.decode_fn, self.device, self.shell = encode, decode, torch.device(device), shell
        if shell is not None:  # a decoder output at the training mean has no direction: give it the fixed one
            self.output_shell = copy.copy(shell)
            self.output_shell.zero_norm = "fixed"

    def _tensor(self, values) -> torch.Tensor:
        return torch.as_tensor(values).to(device=self.device, dtype=torch.float32)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What ``encode`` is given for shell rows ``x``: the rows, or in data space their preimages."""
        return x if self.shell is None else self._tensor(self.shell.inverse_transform(x.cpu().double().numpy()))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.encode_fn(self.inputs(x))
        if isinstance(out, torch.Tensor):
            return self._tensor(out), None
        mu, logvar = out
        return self._tensor(mu), self._tensor(logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        xhat = self.decode_fn(z)
        if self.shell is None:
            return self._tensor(xhat)
        rows = torch.as_tensor(xhat).detach().cpu().double().numpy()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the fixed direction of an output at the mean: expected here
                return self._tensor(self.output_shell.transform(rows))
        except ShellVAEError as exc:
            raise ShellVAEError(f"decode's data-space output could not be mapped onto the shell: {exc}") from None


@torch.no_grad()
def _check_callables(model: CallableVAE, x: torch.Tensor, space: str) -> None:
    """One call of each on the rows ``x``: shapes as the contract says, or an error naming the callable."""
    b, d = x.shape
    rows = "shell-space" if space == "shell" else "data-space"
    try:
        out = model.encode_fn(model.inputs(x))
    except Exception as exc:
        raise ShellVAEError(f"encode failed on {rows} rows of shape {(b, d)}: {type(exc).__name__}: {exc}") from exc
    parts = [out] if isinstance(out, torch.Tensor) else list(out) if isinstance(out, (tuple, list)) else None
    if (parts is None or len(parts) not in (1, 2) or not all(isinstance(p, torch.Tensor) for p in parts)
            or parts[0].ndim != 2 or len(parts[0]) != b or any(p.shape != parts[0].shape for p in parts)):
        got = type(out).__name__ if parts is None else ", ".join(
            str(tuple(p.shape)) if isinstance(p, torch.Tensor) else type(p).__name__ for p in parts)
        raise ShellVAEError(f"encode returned {got} for {rows} rows of shape {(b, d)}; expected the posterior means, "
                            f"one ({b}, latent_dim) tensor, or a pair (mu, logvar) of two such tensors.")
    mu = parts[0]
    try:
        xhat = model.decode_fn(mu)
    except Exception as exc:
        raise ShellVAEError(f"decode failed on latents of shape {tuple(mu.shape)}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(xhat, torch.Tensor) or tuple(xhat.shape) != (b, d):
        got = tuple(xhat.shape) if isinstance(xhat, torch.Tensor) else type(xhat).__name__
        raise ShellVAEError(f"decode returned {got} for latents of shape {tuple(mu.shape)}; expected {rows} rows of "
                            f"the input's shape, ({b}, {d}).")


def certify_vector_model(encode: Callable, decode: Callable, X, *, shell: SphericalShell, geometry: ClusterGeometry,
                  space: str = "shell", eps: float | None = None, certificate_margin: float = REGION_MARGIN_SHARE,
                  device="cpu", batch_size: int = 4096, seed: int = 0) -> Certificate:
    """Certify any VAE, trained anywhere, on held-out data: the same ``Certificate`` as ``ShellVAE.certify``.

    Put the model in ``eval()`` mode first; the callables run under ``torch.no_grad``.

    Parameters
    ----------
    encode : callable
        A float32 tensor of rows (B, D) to the posterior means (B, d), or to a pair (mu, logvar).
        Without log-variances the sampled-z control, KL and MI are None.
    decode : callable
        Latents (B, d) to reconstructions (B, D).
    X : array of shape (n, D)
        Held-out rows in data space.
    shell : SphericalShell
        The fitted shell transform (e.g. ``FeasibleRegion.shell_``).
    geometry : ClusterGeometry
        The cluster geometry fitted on the training data's shell coordinates
        (``FeasibleRegion.geometry_``).
    space : {"shell", "data"}
        "shell": the callables take and return shell-space rows (a model trained on
        ``shell.transform(X_train)``); "data": data-space rows (any VAE of the raw data; the shell
        maps its inputs and outputs, see ``CallableVAE``).
    eps, certificate_margin : float
        The certificate's margin: ``eps``, or by default ``certificate_margin * delta``.
    device : str
        Where the rows are put before ``encode`` (the model's device).
    batch_size, seed : int
        Rows per call; seed of the sampled z and the shuffled-latent control (as ``ShellVAE``'s
        ``random_state``: the same seed gives the same certificate on the same weights).
    """
    if space not in ("shell", "data"):
        raise ShellVAEError(f"space={space!r}: choose 'shell' (the callables take and give shell-space rows) or "
                            "'data' (data-space rows).")
    if not isinstance(shell, SphericalShell) or not hasattr(shell, "mean_"):
        raise ShellVAEError("shell= must be a fitted SphericalShell (e.g. FeasibleRegion(...).fit(X_train).shell_).")
    if not isinstance(geometry, ClusterGeometry) or not hasattr(geometry, "centers_"):
        raise ShellVAEError("geometry= must be a ClusterGeometry fitted on the training data's shell coordinates "
                            "(e.g. FeasibleRegion(...).fit(X_train).geometry_).")
    if np.shape(geometry.centers_)[1] != shell.n_features_in_:
        raise ShellVAEError(f"the geometry's centres have {np.shape(geometry.centers_)[1]} features but the shell "
                            f"{shell.n_features_in_}: fit both on the same training data.")
    region = FeasibleRegion.from_fitted(geometry, shell)
    X_shell = torch.as_tensor(shell.transform(X), dtype=torch.float32)  # checks X: finite, 2-D, its width
    model = CallableVAE(encode, decode, device, shell if space == "data" else None)
    _check_callables(model, X_shell[:8].to(model.device), space)
    eps = check_scalar(certificate_margin * region.delta_ if eps is None else eps, "eps", low_open=False)
    metrics = evaluate(model, X_shell, region, batch_size=batch_size, seed=seed)
    cert = certify(metrics, region, eps)
    if space == "shell" and not cert.certified and (metrics.get("norm_satisfaction") or 0.0) < 0.5:
        # most outputs off the shell: the likeliest cause is a VAE of data-space rows certified as a shell one
        cert.reasons.append(f"only {100 * (metrics.get('norm_satisfaction') or 0.0):.0f}% of the decoder's outputs "
                            "lie in the shell's norm range: if encode and decode take and give data-space rows (a VAE "
                            "of the raw data), pass space='data'.")
    return cert
