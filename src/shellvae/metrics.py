"""Held-out metrics (METHOD.md §6) and the non-collapse certificate.

All metrics are computed on the model's device, batch by batch: only the (N, d) latents of the
whole set are held, never an (N, D) array of reconstructions, so held-out sets of any size (a
``shell.ShellView`` of a memory map included) are evaluated in ``batch_size`` rows of memory.
Inference reconstructions decode the posterior mean (deterministic); the ``*_sampled`` variants
decode a sampled z, because KL > 0 alone does not prove the latent is useful (METHOD.md §8).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from shellvae.geometry import ClusterGeometry
from shellvae.model import GaussianVAE
from shellvae.objectives import cluster_sq_dist, kl_per_dim
from shellvae.shell import ShellView

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2015
MI_SAMPLES = 1000  # the MI estimate is O(n^2): a seeded subset keeps it cheap


def row_batches(X, batch_size: int, device) -> Iterator[torch.Tensor]:
    """Consecutive float32 batches of X's rows on ``device``: X a tensor, an array or a ``ShellView``
    (whose rows are read and shell-transformed a batch at a time)."""
    for start in range(0, len(X), batch_size):
        if isinstance(X, ShellView):
            rows = torch.from_numpy(X.take(np.arange(start, min(start + batch_size, len(X)))))
        else:
            rows = torch.as_tensor(X[start:start + batch_size])
        yield rows.to(device=device, dtype=torch.float32)


@torch.no_grad()
def encode_all(model: GaussianVAE, X, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances of all rows of X (see ``row_batches``), batched."""
    device = next(model.parameters()).device
    parts = [model.encode(rows) for rows in row_batches(X, batch_size, device)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def decode_all(model: GaussianVAE, Z: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    return torch.cat([model.decode(Z[i:i + batch_size]) for i in range(0, len(Z), batch_size)])


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dims whose posterior mean varies across the data: Cov_x(E_q[z_j]) > threshold."""
    return int((mu.var(dim=0, unbiased=False) > threshold).sum())


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> float:
    """I(x; z) under the aggregate posterior, estimated as in He et al. 2019 (lagging inference nets).

    I = E_x E_q(z|x)[log q(z|x) - log q(z)], with q(z) the mixture of the posteriors of the
    given samples. It is bounded by log(n), so pass a few hundred to a few thousand samples.
    """
    n, d = mu.shape
    neg_entropy = (-0.5 * d * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = mu + torch.randn(mu.shape, generator=generator, device=mu.device) * (0.5 * logvar).exp()
    var = logvar.exp()
    dev = z[:, None, :] - mu[None, :, :]
    log_density = -0.5 * (dev.pow(2) / var[None]).sum(-1) - 0.5 * (d * math.log(2 * math.pi) + logvar.sum(-1))[None]
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(n)
    return float(neg_entropy - log_qz.mean())


@torch.no_grad()
def evaluate(
    model: GaussianVAE,
    X,
    geometry: ClusterGeometry,
    r_min: float,
    r_max: float,
    *,
    labels: np.ndarray | None = None,
    batch_size: int = 4096,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric of METHOD.md §6 on shell data X (N, D): a tensor, an array or a ``ShellView``.

    ``labels``: each row's cluster (predicted from the nearest centre if None). Two passes over X:
    the first encodes (keeping the (N, d) latents: the KL, active units and MI need them all, and
    the shuffled-latent control decodes other rows' codes), the second decodes batch by batch and
    sums every per-row quantity. The result does not depend on ``batch_size`` beyond float rounding.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    centers = torch.as_tensor(geometry.centers_, dtype=torch.float32, device=device)
    n = len(X)

    codes, own = [], []
    for rows in row_batches(X, batch_size, device):
        codes.append(model.encode(rows))
        if labels is None:
            own.append(torch.as_tensor(geometry.predict(rows.cpu().numpy()), device=device))
    mu, logvar = torch.cat([c[0] for c in codes]), torch.cat([c[1] for c in codes])
    own = torch.cat(own) if labels is None else torch.as_tensor(np.asarray(labels), device=device)
    # the random draws, in a fixed order from one seeded generator
    z = mu + torch.randn(mu.shape, generator=gen, device=device) * (0.5 * logvar).exp()
    shuffled = torch.randperm(n, generator=gen, device=device)
    sub = torch.randperm(n, generator=gen, device=device)[:MI_SAMPLES]

    W, delta = geometry.W_, geometry.delta_collapse_
    totals, center_sum = np.zeros(10), np.zeros(centers.shape[1])  # float64, on the host: one transfer a batch
    for i, x in enumerate(row_batches(X, batch_size, device)):
        part = slice(i * batch_size, i * batch_size + len(x))
        c, label = centers[own[part]], own[part]
        xhat, xhat_sampled = model.decode(mu[part]), model.decode(z[part])
        xhat_shuffled = model.decode(mu[shuffled[part]])
        d_clu = cluster_sq_dist(xhat, c)
        norms = xhat.norm(dim=-1)
        sums = torch.stack([
            (x - xhat).pow(2).sum(), (x - xhat_sampled).pow(2).sum(),
            d_clu.sum(), cluster_sq_dist(xhat_sampled, c).sum(), cluster_sq_dist(xhat_shuffled, c).sum(),
            (torch.cdist(xhat, centers).argmin(dim=1) == label).sum(),
            (torch.cdist(xhat_sampled, centers).argmin(dim=1) == label).sum(),
            ((d_clu >= W) & (d_clu <= delta)).sum(), ((norms >= r_min) & (norms <= r_max)).sum(),
            c.pow(2).sum(),
        ])
        totals += sums.cpu().double().numpy()
        center_sum += c.sum(0).cpu().double().numpy()
    model.train(was_training)
    (sq_err, sq_err_sampled, l_clu_sum, l_clu_sampled_sum, l_clu_shuffled_sum, in_own, in_own_sampled, in_region,
     in_shell, center_sq) = totals
    n_values = n * centers.shape[1]
    mean_c = center_sum / n
    l_clu = l_clu_sum / n
    return {
        "kl": float(kl_per_dim(mu, logvar).sum(-1).mean()),
        "active_units": active_units(mu),
        "mutual_info": mutual_information(mu[sub], logvar[sub], gen),
        "recon_mse": float(sq_err / n_values),
        "recon_mse_sampled": float(sq_err_sampled / n_values),
        "l_clu": float(l_clu),
        "l_clu_sampled": float(l_clu_sampled_sum / n),
        "l_clu_shuffled": float(l_clu_shuffled_sum / n),
        # mean ||c_i - c_bar||^2 = mean ||c_i||^2 - ||c_bar||^2: the bar a constant output cannot beat
        "collapse_floor": float(center_sq / n - mean_c @ mean_c),
        "margin": float(delta - l_clu),
        "cluster_r2": float(1.0 - l_clu / delta) if delta > 0 else float("nan"),
        "cluster_accuracy": float(in_own / n),
        "cluster_accuracy_sampled": float(in_own_sampled / n),
        "feasible_coverage": float(in_region / n),
        "norm_satisfaction": float(in_shell / n),
    }


@dataclass
class Certificate:
    """Whether held-out data proves the decoder output depends on the input (METHOD.md §3).

    A constant decoder output a has, on the same samples, L_clu >= ``collapse_floor`` (the
    spread of the samples' own cluster centres; equal to delta on the training data). So
    L_clu < min(delta, collapse_floor) - eps proves the model is not collapsed.
    ``l_clu_shuffled`` is the control: decoding other samples' latents must lose the advantage.
    """

    W: float
    delta: float
    eps: float
    l_clu: float
    collapse_floor: float
    margin: float
    cluster_r2: float
    l_clu_shuffled: float
    kl: float
    active_units: int
    mutual_info: float
    cluster_accuracy: float
    feasible: bool
    certified: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        verdict = "CERTIFIED non-collapsed" if self.certified else "NOT certified"
        lines = [
            f"{verdict}",
            f"  feasible region [W, delta) = [{self.W:.4f}, {self.delta:.4f})  (eps = {self.eps:.4f})",
            f"  held-out L_clu = {self.l_clu:.4f}  (collapse floor {self.collapse_floor:.4f}, "
            f"margin delta - L_clu = {self.margin:+.4f}, cluster R^2 = {self.cluster_r2:.3f})",
            f"  shuffled-latent L_clu = {self.l_clu_shuffled:.4f}; KL = {self.kl:.3f} nats, "
            f"{self.active_units} active units, MI = {self.mutual_info:.3f} nats, "
            f"reconstructions in own cluster = {100 * self.cluster_accuracy:.1f}%",
        ]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


def certify(metrics: dict, geometry: ClusterGeometry, eps: float = 0.0) -> Certificate:
    """The verdict from held-out ``evaluate`` metrics: certified iff the region is non-empty and
    L_clu < min(delta, collapse_floor) - eps."""
    W, delta = geometry.W_, geometry.delta_collapse_
    bar = min(delta, metrics["collapse_floor"]) - eps
    reasons = []
    if not geometry.feasible_:
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
    return Certificate(
        W=W, delta=delta, eps=eps, l_clu=metrics["l_clu"], collapse_floor=metrics["collapse_floor"],
        margin=metrics["margin"], cluster_r2=metrics["cluster_r2"], l_clu_shuffled=metrics["l_clu_shuffled"],
        kl=metrics["kl"], active_units=metrics["active_units"], mutual_info=metrics["mutual_info"],
        cluster_accuracy=metrics["cluster_accuracy"], feasible=bool(geometry.feasible_),
        certified=bool(geometry.feasible_ and metrics["l_clu"] < bar), reasons=reasons,
    )
