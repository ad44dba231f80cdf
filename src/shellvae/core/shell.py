"""Spherical shell transform (docs/method.md §1; paper eqs. 1-2).

Centre the data, then move every sample along its own direction to a radius in
[r_min, r_max]:  x~_i = rho(||x_c,i||) * x_c,i / ||x_c,i||.

rho is monotone in the norm, so the map is invertible and reconstructions can be shown in data
space. Two radius maps are offered:

- ``"minmax"`` (the paper's reading): rho is linear between the smallest and largest training
  norms. One far outlier squashes every other sample onto r_min.
- ``"rank"``: rho follows the empirical CDF of the training norms (piecewise linear between
  quantile knots), robust to outliers.

New data uses the training mean and norm range; radii outside the training range are clipped
into the shell, so such samples do not round-trip exactly (``inverse_transform`` returns the
norm at the shell's edge).

Zero-norm samples (a sample equal to the training mean) have no direction. ``zero_norm="error"``
(default) raises; ``zero_norm="fixed"`` gives them the fixed direction (1, ..., 1) / sqrt(D) at
the radius of norm 0, and warns. ``inverse_transform`` cannot recover their zero norm.

Data larger than memory: ``fit`` reads its input ``CHUNK_ROWS`` rows at a time (mean, then the
norms: one float per row), so a memory-mapped ``.npy`` is never loaded whole, and
``ShellView(source, shell)`` gives the shell coordinates of such an array's rows as they are read.
"""

from __future__ import annotations

import warnings

import numpy as np

from shellvae.base.validation import CHUNK_ROWS, check_array, check_n_features, check_scalar, row_chunks
from shellvae.errors import NotFittedError, ShellVAEError

_N_QUANTILES = 1001  # knots of the rank map; enough that rank interpolation error is < 0.1%
_MAX_ABS = 1e150  # beyond this, squared norms overflow float64 (below 1 / _MAX_ABS they underflow)


def _norms(Xc: np.ndarray, name: str, fitting: bool = False) -> np.ndarray:
    """Row norms of centred data, refusing magnitudes whose squares leave float64's range.

    Too small only matters when fitting: a new sample that close to the mean is a zero-norm sample.
    """
    top = max(float(Xc.max()), -float(Xc.min()))
    if top > _MAX_ABS or (fitting and top < 1 / _MAX_ABS):
        raise ShellVAEError(
            f"{name} deviates from the training mean by up to {top:.3g}: outside [{1 / _MAX_ABS:.0e}, {_MAX_ABS:.0e}], "
            "where squared norms are exact in float64. Rescale the data (e.g. X / np.abs(X).max())."
        )
    return np.linalg.norm(Xc, axis=1)


#: ``SphericalShell.transform`` works on about this many bytes of rows at once (in cache)
TRANSFORM_BYTES = 2**20

#: the default shell radii (docs/method.md §1, a choice: the paper does not give them)
R_MIN, R_MAX = 0.9, 1.1


class SphericalShell:
    """Map data to a spherical shell r_min <= ||x~|| <= r_max, keeping each direction.

    Parameters
    ----------
    r_min : float
        Inner shell radius (0 < r_min < r_max).
    r_max : float
        Outer shell radius.
    radius : {"minmax", "rank"}
        How norms are mapped to radii (see module docstring).
    zero_norm : {"error", "fixed"}
        What to do with samples equal to the training mean.

    Notes
    -----
    Learned attributes: ``mean_`` (D,), ``norm_min_``, ``norm_max_``, ``norm_knots_`` (rank
    mode: increasing norms at ``quantile_knots_``), ``n_features_in_``.
    """

    def __init__(self, r_min: float = R_MIN, r_max: float = R_MAX, radius: str = "minmax", zero_norm: str = "error"):
        self.r_min = r_min
        self.r_max = r_max
        self.radius = radius
        self.zero_norm = zero_norm

    # -- parameters -------------------------------------------------------------------------
    def check_params(self) -> None:
        for name in ("r_min", "r_max"):
            check_scalar(getattr(self, name), name, fix="Shell radii are positive (defaults 0.9 and 1.1).")
        if not self.r_min < self.r_max:
            raise ShellVAEError(
                f"r_min={self.r_min}, r_max={self.r_max}: need 0 < r_min < r_max (defaults 0.9 and 1.1)."
            )
        if self.radius not in ("minmax", "rank"):
            raise ShellVAEError(f"radius={self.radius!r}: choose 'minmax' or 'rank'.")
        if self.zero_norm not in ("error", "fixed"):
            raise ShellVAEError(f"zero_norm={self.zero_norm!r}: choose 'error' or 'fixed'.")

    # -- fit / transform ----------------------------------------------------------------------
    def fit(self, X, y=None) -> "SphericalShell":
        """Learn the mean and the norm range (rank: the norm quantiles) of X, ``CHUNK_ROWS`` rows at a time.

        In chunks whether X is in memory or memory-mapped, so both give the same shell bit for bit.
        """
        self.check_params()
        X = check_array(X, "X", dtype=None, allow_constant=False)  # a memmap is checked in chunks, not loaded
        self.n_features_in_ = X.shape[1]
        total = np.zeros(X.shape[1])
        for _, block in row_chunks(X):
            total += block.sum(axis=0)
        self.mean_ = total / len(X)
        norms = np.concatenate([_norms(block - self.mean_, "X", fitting=True) for _, block in row_chunks(X)])
        self.norm_min_, self.norm_max_ = float(norms.min()), float(norms.max())
        if self.radius == "rank":
            q = np.linspace(0.0, 1.0, min(_N_QUANTILES, len(norms)))
            knots = np.quantile(norms, q)
            # np.interp needs strictly increasing knots: ties (repeated norms) keep their last quantile
            keep = np.append(np.diff(knots) > 0, True)
            self.norm_knots_, self.quantile_knots_ = knots[keep], q[keep]
        return self

    def _check_fitted(self, X, name: str = "X") -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise NotFittedError("This SphericalShell is not fitted yet: call fit(X) first.")
        X = check_array(X, name, dtype=np.float64)
        check_n_features(X, name, self.n_features_in_, "the fitted shell")
        return X

    def _unit_radius(self, norms: np.ndarray) -> np.ndarray:
        """Position of each norm in the shell, in [0, 1] (0 = r_min), clipped."""
        if self.radius == "rank":
            if len(self.norm_knots_) == 1:
                return np.full_like(norms, 0.5)
            return np.interp(norms, self.norm_knots_, self.quantile_knots_)
        span = self.norm_max_ - self.norm_min_
        if span <= 0:  # every training sample had the same norm: put them mid-shell
            return np.full_like(norms, 0.5)
        return np.clip((norms - self.norm_min_) / span, 0.0, 1.0)

    def _norm_of_unit_radius(self, u: np.ndarray) -> np.ndarray:
        if self.radius == "rank":
            if len(self.norm_knots_) == 1:
                return np.full_like(u, self.norm_knots_[0])
            return np.interp(u, self.quantile_knots_, self.norm_knots_)
        return self.norm_min_ + u * (self.norm_max_ - self.norm_min_)

    def transform(self, X) -> np.ndarray:
        """Shell coordinates of X, float64 (N, D).

        Computed ``TRANSFORM_BYTES`` of rows at a time into one output array: a block's temporaries
        stay in cache, instead of three N x D temporaries (7x faster at 1,000,000 x 32).
        """
        X = self._check_fitted(X)
        out = np.empty(X.shape, dtype=np.float64)
        block_rows = max(1, TRANSFORM_BYTES // (8 * X.shape[1]))
        zero_rows = [start + self._transform_block(block, out[start:start + len(block)])
                     for start, block in row_chunks(X, block_rows)]
        zero = np.concatenate(zero_rows) if zero_rows else np.zeros(0, dtype=np.int64)
        if len(zero):
            if self.zero_norm == "error":
                raise ShellVAEError(
                    f"{len(zero)} sample(s) equal the training mean (rows {zero[:5].tolist()}...) "
                    "and have no direction. Remove them, or use zero_norm='fixed' to give them a fixed direction."
                )
            warnings.warn(f"{len(zero)} zero-norm sample(s) got the fixed direction (1,...,1)/sqrt(D).", stacklevel=2)
        return out

    def _transform_block(self, X: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write the shell coordinates of the rows X into ``out``; return the rows (of X) with no
        direction (equal to the mean), which get (1,...,1)/sqrt(D) scaled to r_min."""
        Xc = X - self.mean_
        norms = _norms(Xc, name="X")
        zero = norms <= 1e-12 * self.norm_max_  # relative: the shell is scale-invariant
        if zero.any():
            Xc[zero] = 1.0
            norms = np.where(zero, 0.0, norms)
        np.divide(Xc, np.where(zero, np.sqrt(X.shape[1]), norms)[:, None], out=out)
        out *= (self.r_min + (self.r_max - self.r_min) * self._unit_radius(norms))[:, None]
        return np.flatnonzero(zero)

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).transform(X)

    def inverse_transform(self, X_shell) -> np.ndarray:
        """Data-space points for shell coordinates (for showing reconstructions).

        Points off the shell (decoder outputs need not lie on it) are mapped by their clipped radius.
        """
        Xs = self._check_fitted(X_shell, "X_shell")
        rho = np.linalg.norm(Xs, axis=1)
        u = np.clip((rho - self.r_min) / (self.r_max - self.r_min), 0.0, 1.0)
        directions = Xs / np.maximum(rho, 1e-300)[:, None]
        return self.mean_ + directions * self._norm_of_unit_radius(u)[:, None]

    # -- change of variables (docs/method.md §6) ----------------------------------------------
    def outside_norm_range(self, X) -> np.ndarray:
        """Bool (N,): rows whose distance to the training mean lies outside the training norms
        [norm_min_, norm_max_]. The shell clips their radius, so there the map is not invertible and
        ``log_abs_det_jacobian`` uses its linear extension (count these rows when you report it)."""
        X = self._check_fitted(X)
        norms = _norms(X - self.mean_, "X")
        return (norms < self.norm_min_) | (norms > self.norm_max_)

    def _unit_radius_slope(self, norms: np.ndarray) -> np.ndarray:
        """d(unit radius)/d(norm): the slope of the linear segment holding each norm (minmax: the one
        segment; rank: the interpolation segment, the right-hand one at a knot), and outside the
        training range the slope of the nearest edge segment, i.e. of the map's linear extension."""
        if self.radius == "rank":
            k, q = self.norm_knots_, self.quantile_knots_
            seg = np.clip(np.searchsorted(k, norms, side="right") - 1, 0, len(k) - 2)
            return (q[seg + 1] - q[seg]) / (k[seg + 1] - k[seg])
        return np.full_like(norms, 1.0 / (self.norm_max_ - self.norm_min_))

    def log_abs_det_jacobian(self, X) -> np.ndarray:
        """log|det J| of the shell map x -> x~ at each data-space row of X: (N,) float64.

        The map is radial, f(x) = g(r) u with r = ||x - m||, u = (x - m) / r and g(r) = r_min +
        (r_max - r_min) t(r) (t the unit radius). Its Jacobian g'(r) u u^T + (g(r) / r)(I - u u^T)
        has eigenvalue g'(r) along u and g(r) / r on the D - 1 directions orthogonal to it, so

            log|det J(x)| = log g'(r) + (D - 1) log(g(r) / r),

        and log p_X(x) = log p_X~(f(x)) + log|det J(x)| (``likelihood.data_log_likelihood``).
        g' is (r_max - r_min) / (norm_max_ - norm_min_) for minmax, (r_max - r_min) times the
        interpolation segment's slope for rank. The rank map has a kink at each knot, where the
        right-hand slope is used; with few training rows every training norm is a knot, so on
        training rows that value is a convention (held-out rows fall between knots): report data-space
        likelihoods of rank shells on held-out data.

        Rows outside the training norm range (``outside_norm_range``) are clipped onto the shell's
        edge, where g' = 0 and the map has no density to carry over. For them g' is the edge
        segment's slope (the map's linear extension) and g(r) the clipped radius they actually get,
        so the value is finite and continuous across the range's ends, never -inf or NaN; it is a
        convention, so report how many rows it was used for. Raises ``ShellVAEError`` for a row at
        the training mean (no direction: g(r) / r is infinite) and for a shell fitted on data of
        a single norm (g' = 0 everywhere).
        """
        X = self._check_fitted(X)
        if not self.norm_max_ > self.norm_min_:
            raise ShellVAEError(
                "every training sample had the same norm, so the shell maps all of them to one radius: "
                "the map is not invertible and data-space likelihoods are undefined (use shell-space ones)."
            )
        norms = _norms(X - self.mean_, "X")
        zero = norms <= 1e-12 * self.norm_max_
        if zero.any():
            raise ShellVAEError(
                f"{int(zero.sum())} row(s) equal the training mean (rows {np.flatnonzero(zero)[:5].tolist()}...): "
                "the shell map has no Jacobian there. Leave them out of data-space likelihoods."
            )
        radius = self.r_min + (self.r_max - self.r_min) * self._unit_radius(norms)
        slope = (self.r_max - self.r_min) * self._unit_radius_slope(norms)
        return np.log(slope) + (X.shape[1] - 1) * (np.log(radius) - np.log(norms))

    def state_dict(self) -> dict:
        keys = ["mean_", "norm_min_", "norm_max_", "n_features_in_"]
        if self.radius == "rank":
            keys += ["norm_knots_", "quantile_knots_"]
        state = {k: getattr(self, k) for k in keys}
        state["params"] = dict(r_min=self.r_min, r_max=self.r_max, radius=self.radius, zero_norm=self.zero_norm)
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> "SphericalShell":
        shell = cls(**state["params"])
        for k, v in state.items():
            if k != "params":
                setattr(shell, k, np.asarray(v, dtype=np.float64) if isinstance(v, np.ndarray) else v)
        return shell

    def __repr__(self) -> str:
        return f"SphericalShell(r_min={self.r_min}, r_max={self.r_max}, radius={self.radius!r})"


class ShellView:
    """The shell coordinates of an array's rows, computed when they are read, never held whole.

    ``source`` holds data-space rows, typically a memory map (``np.load(path, mmap_mode="r")``);
    ``rows`` (optional) selects and orders the rows this view exposes (e.g. a training split),
    so no copy of the data is made. ``shell`` is a fitted ``SphericalShell``. A view has the
    ``shape``, ``len`` and ``dtype`` (float64) of ``shell.transform(source[rows])`` and reads as:

    - ``take(indices)``: the transformed rows at ``indices`` (read from the source in increasing
      order, which a memory map serves sequentially, then put back in the order asked for);
    - ``chunks(chunk_rows)``: (start, block) over consecutive blocks of rows;
    - ``np.asarray(view)``: everything at once, for data that fits in memory.
    """

    dtype = np.dtype(np.float64)
    ndim = 2

    def __init__(self, source, shell: SphericalShell, rows=None):
        if getattr(source, "ndim", None) != 2:
            raise ShellVAEError(f"a ShellView needs 2-D rows (n_samples, n_features), got shape {np.shape(source)}.")
        self.source, self.shell = source, shell
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.source) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.source.shape[1]

    def take(self, indices) -> np.ndarray:
        where = np.asarray(indices, dtype=np.int64)
        if self.rows is not None:
            where = self.rows[where]
        order = np.argsort(where, kind="stable")
        out = np.empty((len(where), self.source.shape[1]), dtype=np.float64)
        out[order] = self.shell.transform(self.source[where[order]])  # sorted gather, then the asked order back
        return out

    def chunks(self, chunk_rows: int = CHUNK_ROWS):
        for start in range(0, len(self), chunk_rows):
            stop = min(start + chunk_rows, len(self))
            if self.rows is None:
                yield start, self.shell.transform(self.source[start:stop])
            else:
                yield start, self.take(np.arange(start, stop))

    def __array__(self, dtype=None, copy=None):
        out = self.shell.transform(self.source if self.rows is None else self.source[self.rows])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ShellView(shape={self.shape}, {self.shell!r})"
