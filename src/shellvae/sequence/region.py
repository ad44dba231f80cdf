"""The paper's cluster-aware feasible region, carried over to sequences (docs/sequences.md, item 5).

Spherical VAE with Cluster-Aware Feasible Regions (arXiv 2603.10935 v4) clusters the data, and
bounds L_clu = mean ||xhat_i - mu_c(i)||^2 of the decoder's output: a decoder output that does
not depend on z has L_clu >= delta (the spread of the cluster centres), so L_clu < delta - eps
proves the output depends on z. For sequences:

- the data: each sequence's **bag of tokens** b_i (V,), the count of each token id in it over its
  T positions (``<pad>`` counted as a token: the length is part of the bag), scaled so that the
  training bags' total variance is 1 (what the shell map does for vectors: the penalties then
  have the paper's scale), clustered by K-means (``ClusterGeometry``) into centres mu_k;
- the decoder's output: its **z-only bag** bhat(z) = sum over the T positions of the decoder's
  predicted distributions when its inputs carry no token (``<bos>``, then ``<unk>``: word
  dropout with probability 1; ``SequenceVAEModel.z_only_bag``). It is a function of z alone, so a
  decoder that ignores z gives one bag for every sequence, with L_clu >= delta: the paper's
  argument holds as it is.

Two things do not carry over, each measured (docs/sequences.md):

- **the teacher-forced prediction**: the decoder's predicted bag under teacher forcing sees the
  sequence's own prefix, which reveals its cluster, so a z-free language model reaches
  L_clu < delta without any latent: a region on it would not exclude collapse.
- **the lower edge W**: W is the spread of the data's *sampled* bags around their centres (their
  sampling noise, large for short sequences); the decoder predicts an *expected* bag, which a
  perfect decoder puts much closer to the centre (the generator's true topic-conditional bags
  have L_clu well below W). A lower edge at W would push good decoders away, so the region here
  is [0, delta - eps]: ``W_`` is 0 and the data's W is kept as ``data_W_``.

The shell methods (``shell``, ``shell_lagrange`` and the ablations) run unchanged through the
method registry: the estimator gives them this region as ``Objective.region``, and the model's
output carries the z-only bag after the step logits (``bag_output``). There is no norm penalty
(a bag of predicted distributions cannot leave the simplex scaled by the length): ``shell_norm``
is ``shell_none`` here, and ``shell_boundary`` is ``shell``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from shellvae.certificate import Certificate, certify
from shellvae.errors import EmptyFeasibleRegionWarning, ShellVAEError
from shellvae.geometry import ClusterGeometry, collapse_floor
from shellvae.objectives import cluster_loss, cluster_sq_dist
from shellvae.region import FeasibleRegion
from shellvae.sequence.data import N_SPECIAL

#: the certificate margin of the region, as a share of delta (the paper's eps_ratio, shellvae's default)
REGION_MARGIN = 0.05


def bag_of_tokens(X, vocab_size: int) -> np.ndarray:
    """Each sequence's token counts over all its T positions, ``<pad>`` included (so a bag also says how
    long the sequence is), (N, vocab_size) float64."""
    X = np.asarray(X, dtype=np.int64)
    bags = np.zeros((len(X), vocab_size))
    np.add.at(bags, (np.repeat(np.arange(len(X)), X.shape[1]), X.ravel()), 1.0)
    return bags


def predicted_bag(xhat: torch.Tensor) -> torch.Tensor:
    """The z-only bag a region model's output carries after its step logits (``bag_output``), (B, V)."""
    if xhat.ndim != 3:
        raise ShellVAEError(f"expected a sequence model's output (B, T + 1, V), got shape {tuple(xhat.shape)}.")
    return xhat[:, -1].exp()


class SequenceRegion(FeasibleRegion):
    """The feasible region [0, delta - eps] of the decoder's z-only bag of tokens (module docstring).

    Learned: ``geometry_`` (K-means of the training bags), ``delta_`` (the collapse value),
    ``data_W_`` (the sampled bags' within-cluster spread, reported, not a bound here), ``W_`` = 0,
    ``feasible_`` (delta > 0), ``vocab_size_``.
    """

    def __init__(self, n_clusters: int = 16, *, random_state: int = 0):
        super().__init__(n_clusters, random_state=random_state)

    def fit(self, X, vocab_size: int, y=None) -> SequenceRegion:
        bags = bag_of_tokens(X, vocab_size)
        total = float(((bags - bags.mean(axis=0)) ** 2).sum(axis=1).mean())
        if not total > 0:
            raise ShellVAEError("every training sequence has the same bag of tokens: there are no clusters to find.")
        self.scale_ = 1.0 / total ** 0.5
        bags *= self.scale_
        with warnings.catch_warnings():  # the paper's W >= delta test does not apply here (module docstring),
            warnings.simplefilter("ignore", EmptyFeasibleRegionWarning)  # and distinct sequences may share a bag
            warnings.filterwarnings("ignore", message=".*distinct rows", category=UserWarning)
            geometry = ClusterGeometry(self.n_clusters, random_state=self.random_state).fit(bags)
        return self._from_geometry(geometry)

    def _from_geometry(self, geometry: ClusterGeometry, scale: float | None = None) -> SequenceRegion:
        if scale is not None:
            self.scale_ = float(scale)
        self._set(None, geometry)
        self.vocab_size_ = int(np.shape(geometry.centers_)[1])
        self.data_W_ = self.W_
        self.W_, self.feasible_ = 0.0, bool(self.delta_ > 0)
        return self

    @classmethod
    def from_state_dict(cls, state: dict) -> SequenceRegion:
        geometry = ClusterGeometry.from_state_dict(state["geometry"])
        return cls(geometry.n_clusters, random_state=geometry.random_state)._from_geometry(geometry, state["scale"])

    def state_dict(self) -> dict:
        return {"geometry": self.geometry_.state_dict(), "scale": self.scale_}

    def transform(self, X) -> np.ndarray:
        """The scaled bags of tokens of sequences X: the rows the region's geometry lives in."""
        self._check_fitted()
        return bag_of_tokens(X, self.vocab_size_) * self.scale_

    def cluster_loss(self, xhat: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """L_clu of the (scaled) z-only bags a region model's output carries (``predicted_bag``), batch mean."""
        return cluster_loss(predicted_bag(xhat) * self.scale_, centers)

    def norm_penalty(self, xhat: torch.Tensor) -> torch.Tensor:
        """No norm penalty on sequences (module docstring): 0."""
        return xhat.new_zeros(())

    def __repr__(self) -> str:
        fitted = f", data W={self.data_W_:.4g}, delta={self.delta_:.4g}" if hasattr(self, "delta_") else ""
        return f"SequenceRegion(n_clusters={self.n_clusters!r}{fitted})"


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
    eps = ``REGION_MARGIN`` * delta by default. ``metrics``: ``SequenceVAE.evaluate``'s, with the bag metrics."""
    eps = REGION_MARGIN * region.delta_ if eps is None else eps
    renamed = {key: metrics[f"bag_{key}"] for key in ("l_clu", "collapse_floor", "cluster_r2", "l_clu_shuffled",
                                                      "cluster_accuracy")}
    renamed.update(margin=region.delta_ - renamed["l_clu"], kl=metrics["kl"], active_units=metrics["active_units"],
                   mutual_info=metrics["mutual_info"])
    return certify(renamed, region, eps)
