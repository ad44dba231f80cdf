"""Held-out metrics of the vector family (docs/method.md §6), one registration each (``metric_registry``:
the one registry both families register into, and the kinds of metric), and ``evaluate``, which computes
them. The metrics both families share (``kl``, ``mutual_info``, ``active_units``, ``probe_accuracy``,
``chance_accuracy``) are functions of a ``LatentSet``, what both families' evaluated sets carry.

All metrics are computed on the model's device, batch by batch: only the (N, d) latents of the
whole set are held, never an (N, D) array of reconstructions, so held-out sets of any size (a
``shell.ShellView`` of a memory map included) are evaluated in ``batch_size`` rows of memory.
Reconstructions decode the posterior mean (deterministic); the ``*_sampled`` variants decode a
sampled z, because KL > 0 alone does not prove the latent is useful (docs/method.md §8).

The model is anything with ``encode(x) -> (mu, logvar)``, ``decode(z)``, ``eval()`` / ``train()``
and a ``device`` (or parameters): shellvae's ``GaussianVAE``, or ``certificate.certify_vector_model``'s
adapter around any VAE's callables. An encoder that gives no log-variances (logvar None) leaves
the metrics of a sampled z, the KL, the MI and the likelihood None.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import torch

from shellvae.core.variances import collapse_floor
from shellvae.evaluation.likelihood import VECTOR_IW_SAMPLES, gaussian_log_density, iw_log_likelihood_batch, kl_to_standard_normal
from shellvae.core.model import sample_posterior
from shellvae.core.objectives import cluster_sq_dist, kl_per_dim, mutual_information
from shellvae.evaluation.probes import knn_accuracy, probe_metrics
from shellvae.core.region import FeasibleRegion
from shellvae.core.shell import ShellView
from shellvae.core.contract import VectorModel
from shellvae.evaluation.metric_registry import (has_inputs, metrics_for, register_per_row_metric,
                                                 register_whole_set_metric)

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2015
MI_SAMPLES = 1000  # the MI estimate is O(n^2): a seeded subset keeps it cheap


@dataclass
class EvalBatch:
    """One batch of held-out rows and what the model makes of them."""

    x: torch.Tensor  # (B, D) shell rows
    mu: torch.Tensor  # (B, d) their posterior means
    logvar: torch.Tensor | None  # (B, d) and log-variances (None: the encoder gives none)
    xhat: torch.Tensor  # decoded from the posterior mean
    xhat_sampled: torch.Tensor | None  # decoded from a sampled z (None without log-variances)
    xhat_shuffled: torch.Tensor  # decoded from other rows' posterior means
    cluster: torch.Tensor  # (B,) each row's cluster
    centers: torch.Tensor  # (B, D) each row's cluster centre
    table: torch.Tensor  # (K, D) every centre
    region: FeasibleRegion
    model: VectorModel
    likelihood: Likelihood | None  # how to score the rows' likelihood (None: not asked for)
    log_det: torch.Tensor | None  # (B,) log|det J| of the shell map at the rows' data-space points
    outside: torch.Tensor | None  # (B,) rows outside the training norm range (log_det extended linearly)

    @cached_property
    def iw_log_likelihood(self) -> torch.Tensor:
        """log p_K(x~) per row (Burda et al. 2016), once per batch for every metric that needs it."""
        lk = self.likelihood
        return iw_log_likelihood_batch(self.model.encode, self.model.decode, self.x, lk.sigma2, lk.iw_samples,
                                       generator=lk.generator)


@dataclass
class Likelihood:
    """What the likelihood metrics need: the decoder variance, the importance samples per row and
    their own seeded generator (so asking for them leaves every other metric's draws as they were)."""

    sigma2: float
    iw_samples: int
    generator: torch.Generator


@dataclass
class LatentSet:
    """What both families' evaluated sets carry, and all the metrics they share read: the posterior means and
    log-variances of every row, the seeded generator and rows of the MI estimate, the labels (probes)."""

    mu: torch.Tensor
    logvar: torch.Tensor | None
    generator: torch.Generator
    mi_rows: torch.Tensor  # the seeded subset of rows the MI estimate uses
    seed: int  # the evaluation's seed (the probe's folds)
    y: np.ndarray | None  # class labels of the rows, when known (probes)
    #: the dtype the KL is summed in: the model's float32 for vectors, float64 (as the likelihoods) for sequences
    precision: ClassVar[torch.dtype] = torch.float32

    @cached_property
    def probe(self) -> dict:
        """``probes.probe_metrics`` of the labels, once for every metric that reads it."""
        return probe_metrics(self.mu.cpu().numpy(), self.y, random_state=self.seed)


@dataclass
class EvalSet(LatentSet):
    """The whole held-out set of a vector model: the latents, the per-row means, the region, the clusters' sizes."""

    means: dict[str, float]
    region: FeasibleRegion
    cluster_counts: np.ndarray  # (K,) rows of the set in each cluster


# -- whole-set metrics of the latents: both families (functions of a LatentSet; sequence_metrics includes them) --
@register_whole_set_metric("kl", "mean KL(q(z|x) || N(0, I)) in nats, summed over latent dimensions",
                           needs=("logvar",))
def _kl(s: LatentSet) -> float:
    return float(kl_per_dim(s.mu.to(s.precision), s.logvar.to(s.precision)).sum(-1).mean())


@register_whole_set_metric("active_units", f"latent dimensions with Cov_x(E_q[z_j]) > {ACTIVE_UNIT_THRESHOLD} (Burda et al. 2015)")
def _active_units(s: LatentSet) -> int:
    return active_units(s.mu)


@register_whole_set_metric("mutual_info", f"I(x; z) in nats (He et al. 2019 estimator, {MI_SAMPLES} rows)",
                           needs=("logvar",))
def _mutual_info(s: LatentSet) -> float:
    return mutual_information(s.mu[s.mi_rows], s.logvar[s.mi_rows], s.generator)


# -- likelihood (docs/method.md §6; shellvae.evaluation.likelihood) ------------------------------------------------
@register_per_row_metric("elbo", "held-out ELBO in nats per row (shell space; one sampled z, exact KL)")
def _elbo(b: EvalBatch):
    if b.likelihood is None:
        return None
    return gaussian_log_density(b.x, b.xhat_sampled, b.likelihood.sigma2) - kl_to_standard_normal(b.mu, b.logvar)


@register_per_row_metric("nll_iw", "importance-weighted bound on -log p(x~) in nats (shell space; Burda et al. 2016)")
def _nll_iw(b: EvalBatch):
    return None if b.likelihood is None else -b.iw_log_likelihood


@register_per_row_metric("nll_iw_data", "the same in data space: -log p(x~) - log|det J| of the shell map")
def _nll_iw_data(b: EvalBatch):
    if b.likelihood is None or b.log_det is None:
        return None
    return -(b.iw_log_likelihood + b.log_det)


@register_per_row_metric("outside_norm_range", "share of rows outside the training norm range (nll_iw_data extends the map there)")
def _outside_norm_range(b: EvalBatch):
    return None if b.outside is None else b.outside.double()


# -- per-row metrics ---------------------------------------------------------------------------------
@register_per_row_metric("recon_mse", "mean squared error per dimension, decoding the posterior mean (shell space)", per="value")
def _recon_mse(b: EvalBatch):
    return (b.x - b.xhat).pow(2).sum(-1)


@register_per_row_metric("recon_mse_sampled", "the same, decoding a sampled z", per="value")
def _recon_mse_sampled(b: EvalBatch):
    return None if b.xhat_sampled is None else (b.x - b.xhat_sampled).pow(2).sum(-1)


@register_per_row_metric("l_clu", "held-out L_clu = mean ||xhat_i - mu_c(i)||^2 (eq. 7), posterior-mean decoding")
def _l_clu(b: EvalBatch):
    return cluster_sq_dist(b.xhat, b.centers)


@register_per_row_metric("l_clu_sampled", "L_clu decoding a sampled z")
def _l_clu_sampled(b: EvalBatch):
    return None if b.xhat_sampled is None else cluster_sq_dist(b.xhat_sampled, b.centers)


@register_per_row_metric("l_clu_shuffled", "L_clu decoding latents shuffled across rows (the control: a used latent loses here)")
def _l_clu_shuffled(b: EvalBatch):
    return cluster_sq_dist(b.xhat_shuffled, b.centers)


@register_per_row_metric("cluster_accuracy", "share of reconstructions nearest their own cluster centre")
def _cluster_accuracy(b: EvalBatch):
    return (torch.cdist(b.xhat, b.table).argmin(dim=1) == b.cluster).float()


@register_per_row_metric("cluster_accuracy_sampled", "the same, decoding a sampled z")
def _cluster_accuracy_sampled(b: EvalBatch):
    if b.xhat_sampled is None:
        return None
    return (torch.cdist(b.xhat_sampled, b.table).argmin(dim=1) == b.cluster).float()


@register_per_row_metric("feasible_coverage", "share of rows with W <= ||xhat_i - mu_c(i)||^2 <= delta")
def _feasible_coverage(b: EvalBatch):
    d = cluster_sq_dist(b.xhat, b.centers)
    return ((d >= b.region.W_) & (d <= b.region.delta_)).float()


@register_per_row_metric("norm_satisfaction", "share of decoder outputs with r_min <= ||xhat_i|| <= r_max")
def _norm_satisfaction(b: EvalBatch):
    norms = b.xhat.norm(dim=-1)
    return ((norms >= b.region.r_min) & (norms <= b.region.r_max)).float()


# -- whole-set metrics of the reconstructions --------------------------------------------------------
@register_whole_set_metric("collapse_floor", "the lowest L_clu any constant decoder output reaches on these rows")
def _collapse_floor(s: EvalSet) -> float:
    return collapse_floor(s.region.geometry_.centers_, s.cluster_counts)


@register_whole_set_metric("margin", "delta - L_clu: how far below the collapse loss the model stays")
def _margin(s: EvalSet) -> float:
    return float(s.region.delta_ - s.means["l_clu"])


@register_whole_set_metric("cluster_r2", "1 - L_clu / delta: the share of between-cluster variance the decoder recovers")
def _cluster_r2(s: EvalSet) -> float:
    return float(1.0 - s.means["l_clu"] / s.region.delta_) if s.region.delta_ > 0 else float("nan")


# -- is the latent useful? (shellvae.evaluation.probes; needs class labels) ------------------------------------------
@register_whole_set_metric("probe_accuracy", "logistic regression on the posterior means, 5-fold cross-validated "
                           "accuracy (over the classes with 5 rows or more)", needs=("y",))
def _probe_accuracy(s: LatentSet):
    return s.probe["probe_accuracy"]


@register_whole_set_metric("knn_accuracy", "10-nearest-neighbour accuracy on the posterior means, 5-fold "
                           "cross-validated", needs=("y",))
def _knn_accuracy(s: EvalSet):
    return knn_accuracy(s.mu, s.y)


@register_whole_set_metric("chance_accuracy", "share of the most frequent class: what a collapsed latent scores "
                           "(over the probe's classes)", needs=("y",))
def _chance_accuracy(s: LatentSet):
    return s.probe["chance_accuracy"]


# -- the held-out pass -------------------------------------------------------------------------------
def model_device(model) -> torch.device:
    """Where a model computes: its ``device`` attribute if it has one, else that of its parameters."""
    device = getattr(model, "device", None)
    return torch.device(device) if device is not None else next(model.parameters()).device


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
def encode_all(model: VectorModel, X, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances of all rows of X (see ``row_batches``), batched."""
    device = model_device(model)
    parts = [model.encode(rows) for rows in row_batches(X, batch_size, device)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def decode_all(model: VectorModel, Z: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    return torch.cat([model.decode(Z[i:i + batch_size]) for i in range(0, len(Z), batch_size)])


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dims whose posterior mean varies across the data: Cov_x(E_q[z_j]) > threshold."""
    return int((mu.var(dim=0, unbiased=False) > threshold).sum())


@torch.no_grad()
def evaluate(model: VectorModel, X, region: FeasibleRegion, *, clusters: np.ndarray | None = None,
             y=None, sigma2: float | None = None, iw_samples: int = VECTOR_IW_SAMPLES, log_det: np.ndarray | None = None,
             outside_norm_range: np.ndarray | None = None, batch_size: int = 4096, seed: int = 0) -> dict:
    """Every registered metric on shell rows X (N, D): a tensor, an array or a ``ShellView``.

    ``clusters``: each row's cluster (default: its nearest centre). ``y``: class labels of the rows
    (for ``probe_accuracy`` / ``knn_accuracy``; the probe's folds shuffled with ``seed``, over the classes it can
    cross-validate: ``probes.probe_metrics``). ``sigma2``: the decoder variance, for the
    likelihood metrics (``elbo``, ``nll_iw`` with ``iw_samples`` importance samples per row; they need
    log-variances);
    ``log_det`` (and ``outside_norm_range``): per-row log|det J| of the shell map at the rows'
    data-space points, for ``nll_iw_data``. A metric whose input is not given is None.

    Two passes over X: the first encodes (keeping the (N, d) latents: the KL, active units and MI
    need them all, and the shuffled-latent control decodes other rows' codes), the second decodes
    batch by batch and sums every per-row metric. The result does not depend on ``batch_size``
    beyond float rounding, except the likelihood bounds' Monte Carlo draws.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    table = torch.as_tensor(region.geometry_.centers_, dtype=torch.float32, device=device)
    n = len(X)

    codes, own = [], []
    for rows in row_batches(X, batch_size, device):
        codes.append(model.encode(rows))
        if clusters is None:
            own.append(torch.as_tensor(region.geometry_.predict(rows.cpu().numpy()), device=device))
    mu = torch.cat([c[0] for c in codes])
    logvar = None if codes[0][1] is None else torch.cat([c[1] for c in codes])
    own = torch.cat(own) if clusters is None else torch.as_tensor(np.asarray(clusters), device=device)
    # the random draws, in a fixed order from one seeded generator
    if logvar is not None:
        z = sample_posterior(mu, logvar, gen)
    else:  # no log-variances, no sampled z; the same draw is made, so the shuffles below are a full encoder's
        z, _ = None, torch.randn(mu.shape, generator=gen, device=device, dtype=mu.dtype)
    shuffled = torch.randperm(n, generator=gen, device=device)
    mi_rows = torch.randperm(n, generator=gen, device=device)[:MI_SAMPLES]

    likelihood = None
    if sigma2 is not None and logvar is not None:
        likelihood = Likelihood(sigma2, iw_samples, torch.Generator(device=device).manual_seed(seed + 1))
    log_det, outside = (None if a is None else torch.as_tensor(np.asarray(a), device=device)
                        for a in (log_det, outside_norm_range))

    rows_metrics = [m for m in metrics_for("vector") if m.kind == "per_row"]
    sums = np.zeros(len(rows_metrics))  # float64 on the host: one transfer a batch
    missing: set[str] = set()
    for i, x in enumerate(row_batches(X, batch_size, device)):
        part = slice(i * batch_size, i * batch_size + len(x))
        batch = EvalBatch(x, mu[part], None if logvar is None else logvar[part], model.decode(mu[part]),
                          None if z is None else model.decode(z[part]),
                          model.decode(mu[shuffled[part]]), own[part], table[own[part]], table, region, model,
                          likelihood, None if log_det is None else log_det[part],
                          None if outside is None else outside[part])
        values = [m.compute(batch) for m in rows_metrics]
        missing |= {m.name for m, v in zip(rows_metrics, values) if v is None}
        totals = [torch.zeros((), device=device) if v is None else v.sum().double() for v in values]
        sums += torch.stack(totals).cpu().numpy()
    model.train(was_training)
    means = {m.name: None if m.name in missing else float(total / (n * table.shape[1] if m.per == "value" else n))
             for m, total in zip(rows_metrics, sums)}
    counts = np.bincount(own.cpu().numpy(), minlength=len(table)).astype(np.float64)
    whole = EvalSet(mu, logvar, gen, mi_rows, seed, None if y is None else np.asarray(y), means, region, counts)
    results = {}
    for metric in metrics_for("vector"):
        if metric.kind == "per_row":
            results[metric.name] = means[metric.name]
        else:
            results[metric.name] = metric.compute(whole) if has_inputs(whole, metric) else None
    return results


@torch.no_grad()
def cluster_sq_distances(model: VectorModel, X, region: FeasibleRegion, batch_size: int = 4096) -> np.ndarray:
    """||xhat_i - mu_c(i)||^2 of every row of shell data X (posterior-mean decoding; c(i) the
    nearest centre): the per-row values whose mean ``evaluate`` reports as ``l_clu``."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    table = torch.as_tensor(region.geometry_.centers_, dtype=torch.float32, device=device)
    parts = []
    for rows in row_batches(X, batch_size, device):
        own = torch.as_tensor(region.geometry_.predict(rows.cpu().numpy()), device=device)
        parts.append(cluster_sq_dist(model.decode(model.encode(rows)[0]), table[own]).cpu())
    model.train(was_training)
    return torch.cat(parts).numpy()
