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

The shell methods (``shell``, ``shell_lagrange``, ``shell_boundary``, ``shell_none``) run unchanged
through the method registry: the estimator gives them this region as ``Objective.region``, and the
model's output carries the z-only bag in its own field (``VAEOutput.log_bag``, ``bag_output``).
There is no norm penalty (a bag of predicted distributions cannot leave the simplex scaled by the
length; ``bounds_norm`` is False): ``shell_boundary`` is ``shell`` here, and ``shell_norm``, whose
only penalty is the norm's, is refused with an error rather than trained as ``shell_none``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from shellvae.errors import EmptyFeasibleRegionWarning, ShellVAEError
from shellvae.core.contract import VAEOutput
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


class SequenceRegion(FeasibleRegion):
    """The feasible region [0, delta - eps] of the decoder's z-only bag of tokens (module docstring).

    Learned: ``geometry_`` (K-means of the training bags), ``delta_`` (the collapse value),
    ``data_W_`` (the sampled bags' within-cluster spread, reported, not a bound here), ``W_`` = 0,
    ``feasible_`` (delta > 0), ``vocab_size_``.
    """

    def __init__(self, n_clusters: int = 16, *, vocab_size: int | None = None, random_state: int = 0):
        super().__init__(n_clusters, random_state=random_state)
        self.vocab_size = vocab_size

    def fit(self, X, y=None, *, geometry: ClusterGeometry | None = None) -> SequenceRegion:
        """Fit the bags' scale and their cluster geometry on token rows X (N, T); ``y`` is ignored.

        The bags have ``vocab_size`` entries (default: X's largest id + 1). ``geometry``: as for
        ``FeasibleRegion.fit``, here on X's scaled bags of tokens (``transform``)."""
        if y is not None and np.ndim(y) == 0:  # the released fit(X, vocab_size) would pass it as y here
            raise ShellVAEError(f"SequenceRegion.fit(X, {y!r}): y is ignored; give the vocabulary size to the "
                                f"constructor, SequenceRegion(n_clusters, vocab_size={y!r}).fit(X).")
        X = np.asarray(X)
        bags = bag_of_tokens(X, int(self.vocab_size or X.max() + 1))
        total = float(((bags - bags.mean(axis=0)) ** 2).sum(axis=1).mean())
        if not total > 0:
            raise ShellVAEError("every training sequence has the same bag of tokens: there are no clusters to find.")
        self.scale_ = 1.0 / total ** 0.5
        bags *= self.scale_
        with warnings.catch_warnings():  # the paper's W >= delta test does not apply here (module docstring),
            warnings.simplefilter("ignore", EmptyFeasibleRegionWarning)  # and distinct sequences may share a bag
            warnings.filterwarnings("ignore", message=".*distinct rows", category=UserWarning)
            return self._from_geometry(self._fit_geometry(bags, geometry))

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
        region = cls(geometry.n_clusters, vocab_size=int(np.shape(geometry.centers_)[1]),
                     random_state=geometry.random_state)
        return region._from_geometry(geometry, state["scale"])

    def state_dict(self) -> dict:
        return {"geometry": self.geometry_.state_dict(), "scale": self.scale_}

    def transform(self, X) -> np.ndarray:
        """The scaled bags of tokens of sequences X: the rows the region's geometry lives in."""
        self._check_fitted()
        return bag_of_tokens(X, self.vocab_size_) * self.scale_

    bounds_norm = False  # a bag of predicted distributions has no norm to bound (module docstring)

    def bounded_output(self, out: VAEOutput) -> torch.Tensor:
        """The decoder's z-only bags of tokens (B, V), from the output's ``log_bag`` (``bag_output``)."""
        if out.log_bag is None:
            raise ShellVAEError("the model's output carries no bag of tokens: build it with bag_output=True "
                                "(sequence_vae(..., bag_output=True)) to train it with a SequenceRegion.")
        return out.log_bag.exp()

    def cluster_loss(self, bag: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """L_clu of the (scaled) z-only bags (``bounded_output``), batch mean."""
        return cluster_loss(bag * self.scale_, centers)

    def norm_penalty(self, xhat: torch.Tensor) -> torch.Tensor:
        """Refused: the region bounds no norm here (module docstring), and a penalty of 0 would make
        ``shell_norm`` ``shell_none`` without a word."""
        raise ShellVAEError("a SequenceRegion has no norm penalty: a bag of predicted distributions has no norm "
                            "to bound. Train sequences with shell, shell_boundary or shell_none.")

    def __repr__(self) -> str:
        fitted = f", data W={self.data_W_:.4g}, delta={self.delta_:.4g}" if hasattr(self, "delta_") else ""
        return f"SequenceRegion(n_clusters={self.n_clusters!r}{fitted})"
