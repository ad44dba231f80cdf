"""The paper's held-out metrics and certificate on the decoder's z-only bags of tokens
(``core.sequence_region`` defines the region and says why it lives on these bags)."""

from __future__ import annotations

import numpy as np
import torch

from shellvae.core.variances import collapse_floor
from shellvae.core.objectives import cluster_sq_dist
from shellvae.core.sequence_region import SequenceRegion
from shellvae.data.sequences import N_SPECIAL
from shellvae.evaluation.certificate import REGION_MARGIN_SHARE, Certificate, certify



@torch.no_grad()
def region_metrics(bag_fn, X, mu: torch.Tensor, partner: torch.Tensor, region: SequenceRegion,
                   batch_size: int = 1024) -> dict:
    """The paper's held-out metrics on the (scaled) z-only bags: ``bag_l_clu`` (decoding each posterior mean),
    ``bag_l_clu_shuffled`` (another sequence's), ``bag_collapse_floor`` (the best any z-free bag
    does on these sequences), ``bag_cluster_r2``, ``bag_cluster_accuracy``, ``bag_delta``,
    ``bag_data_W``. ``bag_fn(z, x) -> (B, V)``: the model's ``z_only_bag``."""
    X = torch.as_tensor(np.asarray(X))
    device = mu.device
    own_cluster = torch.as_tensor(region.geometry_.predict(region.transform(X.numpy())), device=device)
    table = torch.as_tensor(region.geometry_.centers_, dtype=torch.float32, device=device)
    sums = {"own": 0.0, "shuffled": 0.0, "accuracy": 0.0}
    for start in range(0, len(X), batch_size):
        rows = slice(start, start + batch_size)
        x = X[rows].to(device)
        centers = table[own_cluster[rows]]
        bag = bag_fn(mu[rows], x) * region.scale_
        sums["own"] += float(cluster_sq_dist(bag, centers).sum())
        sums["shuffled"] += float(cluster_sq_dist(bag_fn(mu[partner[rows]], x) * region.scale_, centers).sum())
        sums["accuracy"] += float((torch.cdist(bag, table).argmin(dim=1) == own_cluster[rows]).sum())
    n = len(X)
    counts = np.bincount(own_cluster.cpu().numpy(), minlength=len(region.geometry_.centers_))
    floor = collapse_floor(region.geometry_.centers_, counts)
    l_clu = sums["own"] / n
    return {"bag_l_clu": l_clu, "bag_l_clu_shuffled": sums["shuffled"] / n, "bag_collapse_floor": floor,
            "bag_cluster_r2": 1.0 - l_clu / region.delta_, "bag_cluster_accuracy": sums["accuracy"] / n,
            "bag_delta": region.delta_, "bag_data_W": region.data_W_}


@torch.no_grad()
def teacher_forced_l_clu(logits_fn, X, region: SequenceRegion, batch_size: int = 1024) -> float:
    """Held-out L_clu of the bags a decoder predicts under teacher forcing (the sum over the T positions of its
    predicted distributions given the sequence's own prefix): the naive carry-over, which a z-free
    language model already brings below delta (module docstring). ``logits_fn(x) -> (B, T, V)``."""
    X = torch.as_tensor(np.asarray(X))
    own = region.geometry_.predict(region.transform(X.numpy()))
    table = torch.as_tensor(region.geometry_.centers_, dtype=torch.float32)
    total = 0.0
    for start in range(0, len(X), batch_size):
        x = X[start:start + batch_size]
        bag = logits_fn(x).softmax(dim=-1).cpu().sum(dim=1) * region.scale_
        total += float(cluster_sq_dist(bag, table[torch.as_tensor(own[start:start + batch_size])]).sum())
    return total / len(X)


def topic_bag_l_clu(chains, X, topics, region: SequenceRegion) -> float:
    """Held-out L_clu of the generator's own expected bags given each sequence's topic
    (``TopicChains.expected_counts``): what a perfect topic-aware decoder scores. It lies below the
    data's W, which is why W is not the region's lower edge here (module docstring)."""
    counts = np.zeros((len(topics), region.vocab_size_))
    counts[:, N_SPECIAL:N_SPECIAL + chains.n_content] = chains.expected_counts()[np.asarray(topics)]
    own = region.geometry_.predict(region.transform(X))
    return float(np.mean(np.sum((counts * region.scale_ - region.geometry_.centers_[own]) ** 2, axis=1)))


def certify_region(metrics: dict, region: SequenceRegion, eps: float | None = None) -> Certificate:
    """The paper's certificate on the z-only bags (``shellvae.certify``): bag L_clu < min(delta, floor) - eps,
    eps = ``REGION_MARGIN_SHARE`` * delta by default (as for vectors). ``metrics``: ``SequenceVAE.evaluate``'s, with the bag metrics."""
    eps = REGION_MARGIN_SHARE * region.delta_ if eps is None else eps
    renamed = {key: metrics[f"bag_{key}"] for key in ("l_clu", "collapse_floor", "cluster_r2", "l_clu_shuffled",
                                                      "cluster_accuracy")}
    renamed.update(margin=region.delta_ - renamed["l_clu"], kl=metrics["kl"], active_units=metrics["active_units"],
                   mutual_info=metrics["mutual_info"])
    return certify(renamed, region, eps)
