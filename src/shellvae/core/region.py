"""The cluster-aware feasible region as a building block for any PyTorch training loop.

Spherical VAE with Cluster-Aware Feasible Regions (arXiv 2603.10935 v4); docs/method.md §1-4.
``FeasibleRegion`` is fitted once on the training data (the shell transform, then the K-means
geometry on the shell data) and then gives, for a batch and its reconstructions, what the loss
needs: each row's cluster centre mu_c(i), L_clu (eq. 7), the boundary penalty L_b (eq. 8) and
the decoder-norm penalty L_n (eq. 9). ``DualAscent`` is the multiplier update of the Lagrangian
variant. The estimator's shell methods use these same objects::

    region = FeasibleRegion(n_clusters=8).fit(X_train)
    X = torch.as_tensor(region.transform(X_train), dtype=torch.float32)
    for idx in batches:                                  # row indices of the training data
        x, centers = X[idx], region.centers(idx)         # centres by index; new data: centers(x=...)
        mu, logvar = encoder(x); z = ...; xhat = decoder(z)
        l_clu = region.cluster_loss(xhat, centers)
        loss = nll + kl + 10 * region.boundary_penalty(l_clu, eps) + 10 * region.norm_penalty(xhat)
        # or the Lagrangian variant: loss = nll + kl + dual.multiplier * region.constraint(l_clu, eps),
        # then after the step dual.update(float(region.constraint(l_clu, eps)))   (dual = DualAscent())

examples/plain_loop.py runs this loop; docs/custom_models.md explains it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from typing import ClassVar

import numpy as np
import torch

from shellvae.base import distributed
from shellvae.errors import NotFittedError, ShellVAEError
from shellvae.core.geometry import N_CLUSTERS, ClusterGeometry
from shellvae.core.objectives import boundary_penalty, cluster_loss, norm_penalty
from shellvae.core.shell import R_MAX, R_MIN, ShellView, SphericalShell
from shellvae.base.validation import check_array
from shellvae.core.contract import VAEOutput


class FeasibleRegion:
    """Shell transform + cluster geometry: the region F_eps = {W <= L_clu <= delta - eps}.

    Fitted once on the training data; then, batch by batch: ``centers`` (by row index for training
    rows, by nearest centre for new ones), ``cluster_loss`` (L_clu), ``boundary_penalty`` (L_b),
    ``norm_penalty`` (L_n) and ``constraint`` (for ``DualAscent``). Learned attributes: ``shell_``,
    ``geometry_``, ``W_``, ``delta_``, ``feasible_`` (W < delta).

    Parameters
    ----------
    n_clusters : int or str
        K of the geometry, or "auto" (see ``ClusterGeometry``).
    r_min, r_max : float
        The shell's radii (see ``SphericalShell``); also the norm penalty's.
    radius, zero_norm : str
        The shell transform's settings (see ``SphericalShell``).
    random_state : int
        Seed of K-means.
    """

    def __init__(self, n_clusters: int | str = N_CLUSTERS, *, r_min: float = R_MIN, r_max: float = R_MAX,
                 radius: str = "minmax", zero_norm: str = "error", random_state: int = 0):
        self.n_clusters = n_clusters
        self.r_min = r_min
        self.r_max = r_max
        self.radius = radius
        self.zero_norm = zero_norm
        self.random_state = random_state

    def fit(self, X, y=None, *, geometry: ClusterGeometry | None = None) -> FeasibleRegion:
        """Fit the shell on X (N, D) and the geometry on X's shell coordinates.

        ``geometry``: a ``ClusterGeometry`` to use instead of ``ClusterGeometry(n_clusters,
        random_state=random_state)``: unfitted, a copy of it is fitted here; fitted, it is used as
        it is and must come from this X's shell coordinates, row for row. A ``np.memmap`` X is
        never loaded whole. Under DDP, K-means runs on rank 0 only and is broadcast.
        """
        memmap = X if isinstance(X, np.memmap) else None
        if memmap is None:
            X = check_array(X, "X", min_samples=2, dtype=None, allow_constant=False)
        shell = SphericalShell(self.r_min, self.r_max, radius=self.radius, zero_norm=self.zero_norm).fit(X)
        X_shell = ShellView(memmap, shell) if memmap is not None else shell.transform(X)
        return self._set(shell, self._fit_geometry(X_shell, geometry))

    @classmethod
    def from_fitted(cls, geometry: ClusterGeometry, shell: SphericalShell | None = None, *, r_min: float = R_MIN,
                    r_max: float = R_MAX) -> FeasibleRegion:
        """The region of an already fitted geometry and (optionally) shell, e.g. of a loaded model;
        without a shell, ``r_min`` / ``r_max`` give the radii of the norm penalty."""
        if shell is not None:
            r_min, r_max = shell.r_min, shell.r_max
        region = cls(geometry.n_clusters, r_min=r_min, r_max=r_max, random_state=geometry.random_state)
        if shell is not None:
            region.radius, region.zero_norm = shell.radius, shell.zero_norm
        return region._set(shell, geometry)

    @classmethod
    def from_bounds(cls, W: float, delta: float, *, r_min: float = R_MIN, r_max: float = R_MAX) -> FeasibleRegion:
        """A region known only by its bounds: the penalties work, ``centers`` does not (tests, toys)."""
        region = cls(r_min=r_min, r_max=r_max)
        region.W_, region.delta_, region.feasible_ = float(W), float(delta), W < delta
        return region

    def _set(self, shell: SphericalShell | None, geometry: ClusterGeometry) -> FeasibleRegion:
        self.shell_, self.geometry_ = shell, geometry
        self.W_, self.delta_ = float(geometry.W_), float(geometry.delta_collapse_)
        self.feasible_ = bool(geometry.feasible_)
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        return self

    def _fit_geometry(self, X_shell, geometry: ClusterGeometry | None) -> ClusterGeometry:
        if geometry is None:
            geometry = ClusterGeometry(self.n_clusters, random_state=self.random_state)
        if not isinstance(geometry, ClusterGeometry):
            raise ShellVAEError(f"geometry={geometry!r}: give a ClusterGeometry (fitted or not), or None.")
        if geometry.n_clusters != self.n_clusters:
            raise ShellVAEError(
                f"geometry has n_clusters={geometry.n_clusters!r} but this model has n_clusters={self.n_clusters!r}: "
                "set the same value on both."
            )
        if not hasattr(geometry, "labels_"):  # a copy: the caller's object may configure other fits too
            return distributed.run_once(copy.deepcopy(geometry).fit, X_shell)
        if len(geometry.labels_) != len(X_shell) or geometry.n_features_in_ != X_shell.shape[1]:
            raise ShellVAEError(
                f"the fitted geometry has {len(geometry.labels_)} labels of {geometry.n_features_in_} features, but X has "
                f"shape {X_shell.shape}: a fitted geometry must come from this X's shell coordinates, row for row. "
                "Pass an unfitted ClusterGeometry to fit it here."
            )
        return geometry

    # -- using the fitted region ------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "geometry_"):
            raise NotFittedError("This FeasibleRegion has no fitted geometry: call fit(X) first.")

    def transform(self, X) -> np.ndarray:
        """Shell coordinates of data-space rows X (float64), the rows the model sees."""
        self._check_fitted()
        if self.shell_ is None:
            raise ShellVAEError("This FeasibleRegion was built from a geometry alone: it has no shell to transform with.")
        return self.shell_.transform(X)

    def _table(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, D) float32 centres on ``device`` and the (N,) int64 training labels (on the CPU for a
        CPU index, with the table otherwise), made once per device."""
        device = torch.device(device)
        if device not in self._tables:
            table = torch.as_tensor(self.geometry_.centers_, dtype=torch.float32, device=device)
            labels = torch.as_tensor(np.asarray(self.geometry_.labels_), dtype=torch.int64, device=device)
            self._tables[device] = table, labels
        return self._tables[device]

    def centers(self, index=None, *, x: torch.Tensor | None = None, device=None) -> torch.Tensor:
        """Each row's cluster centre mu_c(i), (B, D) float32: of training rows by ``index``, or of new
        shell-space rows ``x`` by their nearest centre. ``device``: where the result goes (default:
        that of ``index`` or ``x``)."""
        self._check_fitted()
        if (index is None) == (x is None):
            raise ShellVAEError("give either index= (training rows) or x= (new shell-space rows) to centers().")
        if x is not None:
            x = _as_tensor(x)  # NumPy rows too, e.g. those transform() returns
            table, _ = self._table(x.device if device is None else device)
            return table.index_select(0, torch.cdist(x.to(table), table).argmin(dim=1))
        index = torch.as_tensor(index)
        # the labels stay where the index is (a memory map's batches are indexed on the CPU)
        _, labels = self._table(index.device)
        table, _ = self._table(index.device if device is None else device)
        return table.index_select(0, labels.index_select(0, index).to(table.device))

    #: whether the region bounds the decoder outputs' norms (L_n); a region on other outputs may not
    bounds_norm: ClassVar[bool] = True

    def bounded_output(self, out: VAEOutput) -> torch.Tensor:
        """The model output this region bounds: the reconstruction ``xhat``, for the shell's rows."""
        return out.xhat

    def cluster_loss(self, xhat: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """L_clu = (1/B) sum_i ||xhat_i - mu_c(i)||^2 over the batch (eq. 7)."""
        return cluster_loss(_as_tensor(xhat), _as_tensor(centers))

    def boundary_penalty(self, l_clu: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        """L_b: zero inside [W, delta - eps], squared distance to it outside (eq. 8)."""
        return boundary_penalty(_as_tensor(l_clu), self.W_, self.delta_, eps)

    def norm_penalty(self, xhat: torch.Tensor) -> torch.Tensor:
        """L_n: mean squared distance of the decoder outputs' norms to [r_min, r_max] (eq. 9)."""
        return norm_penalty(_as_tensor(xhat), self.r_min, self.r_max)

    def constraint(self, l_clu: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        """L_clu - (delta - eps): the Lagrangian variant's constraint, <= 0 inside the region's upper edge."""
        return l_clu - (self.delta_ - eps)

    def eps_from_alpha(self, alpha: float) -> float:
        """eps = alpha (delta - W): the margin as a share of the region's width (0 for an empty region)."""
        return max(0.0, alpha * (self.delta_ - self.W_))

    def __repr__(self) -> str:
        fitted = f", W={self.W_:.4g}, delta={self.delta_:.4g}" if hasattr(self, "W_") else ""
        return f"FeasibleRegion(n_clusters={self.n_clusters!r}, r_min={self.r_min}, r_max={self.r_max}{fitted})"

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_tables", None)  # device copies are rebuilt on demand
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._tables = {}


@dataclass
class DualAscent:
    """The multiplier of the constraint L_clu <= delta - eps, by dual ascent as in GECO (Rezende &
    Viola 2018): c_t = moving average of the batch constraint, lam <- max(0, lam + lr * c_t)."""

    lr: float = 1.0
    ema: float = 0.9  # decay of the constraint's moving average (smooths batch noise)
    multiplier: float = 0.0
    average: float | None = None

    def update(self, constraint: float) -> float:
        """One step from a batch's constraint value L_clu - (delta - eps); returns the new multiplier."""
        self.average = constraint if self.average is None else self.ema * self.average + (1 - self.ema) * constraint
        self.multiplier = max(0.0, self.multiplier + self.lr * self.average)
        return self.multiplier


def _as_tensor(value) -> torch.Tensor:
    """A tensor as it is; NumPy arrays and numbers (what ``transform`` and ``evaluate`` give) as float32 tensors."""
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value), dtype=torch.float32)
