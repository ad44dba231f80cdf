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

from shellvae.errors import EmptyFeasibleRegionWarning, ShellVAEError
from shellvae.core.geometry import ClusterGeometry
from shellvae.core.objectives import cluster_loss
from shellvae.core.region import FeasibleRegion

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
