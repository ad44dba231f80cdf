"""Cluster geometry of the shell data (docs/method.md §2; paper eqs. 3-6).

K-means on the shell data x~ gives labels c(i), centres mu_k, weights pi_k = N_k / N and the
overall mean mu_bar. Then

    T     = (1/N) sum_i ||x~_i - mu_bar||^2          total variance          (eq. 3)
    W     = (1/N) sum_i ||x~_i - mu_c(i)||^2         within-cluster variance (eq. 4)
    delta = sum_k pi_k ||mu_k - mu_bar||^2          collapse loss           (eq. 5)
    T = W + delta                                                           (eq. 6)

The identity is exact only when mu_k are the means of the final clusters and mu_bar is the mean
of x~, so both are recomputed here from the labels (K-means' own centres come from the
previous iteration, and mu_bar is near 0 but not 0 after the shell map).

The feasible region [W, delta) is non-empty iff W < delta. A constant decoder output a has
cluster-aware loss delta + ||a - mu_bar||^2 >= delta, so a model with L_clu < delta is not
collapsed; if W >= delta no model can certify itself that way, and we say so.

Data larger than memory (a memory-mapped array, or a ``shell.ShellView`` of one) is clustered
by streaming: K-means on a seeded subset of ``stream_init_samples`` rows gives the starting
centres, then Lloyd passes over all rows, ``chunk_rows`` at a time, move them (each pass:
assign every row to its nearest centre, accumulate counts and sums, take the means). The last
pass's labels and the means of those clusters are the result, and T, W, delta, mu_bar and
lambda_max come from per-chunk sums (counts, sums, sum of squared norms, X^T X), so eq. 6 holds
exactly as in memory. Only the labels (4 bytes a row) and the norms of a chunk are ever held.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

from shellvae.validation import (CHUNK_ROWS, check_array, check_distinct_count, check_distinct_rows, row_chunks,
                                row_hashes)
from shellvae.errors import EmptyFeasibleRegionWarning, ShellVAEError
from shellvae.shell import ShellView
from shellvae.theory import covariance_spectrum

#: K values tried by ``n_clusters="auto"`` (roughly x1.5 steps: few fits, fine enough near small K)
AUTO_K_GRID = (2, 3, 4, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)

#: above this many samples K-means switches to MiniBatchKMeans (``kmeans="auto"``)
MINIBATCH_THRESHOLD = 200_000

#: "auto" sweeps K on a seeded subset of at most this many samples, then fits the chosen K on all
SWEEP_SAMPLES = 20_000

#: ``kmeans="auto"`` streams data that is not in memory (a memmap, a ShellView) when its float64
#: rows would take more than this; smaller such data is read into memory and clustered there
STREAM_BYTES = 2**30


def within_between(X: np.ndarray, labels: np.ndarray, n_clusters: int):
    """T, W, delta, centres, weights, mu_bar from labels alone (float64). Empty clusters get weight 0."""
    X = np.asarray(X, dtype=np.float64)
    counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    sums = np.zeros((n_clusters, X.shape[1]))
    np.add.at(sums, labels, X)
    centers = sums / np.maximum(counts, 1.0)[:, None]
    weights = counts / len(X)
    mu_bar = X.mean(axis=0)
    T = float(np.mean(np.sum((X - mu_bar) ** 2, axis=1)))
    W = float(np.mean(np.sum((X - centers[labels]) ** 2, axis=1)))
    delta = float(np.sum(weights * np.sum((centers - mu_bar) ** 2, axis=1)))
    return T, W, delta, centers, weights, mu_bar


def within_between_from_sums(counts, sums, sum_sq_norms: float, n: int):
    """``within_between`` from per-cluster counts and row sums and the sum of squared row norms.

    With mu_k = sums_k / N_k (the means of the clusters) and mu_bar = sum_k sums_k / N:
    T = S / N - ||mu_bar||^2 and W = S / N - sum_k pi_k ||mu_k||^2 (S = sum_i ||x~_i||^2), so
    T = W + delta exactly; what streamed data needs, since a chunk at a time is seen.
    """
    counts = np.asarray(counts, dtype=np.float64)
    centers = sums / np.maximum(counts, 1.0)[:, None]
    weights = counts / n
    mu_bar = sums.sum(axis=0) / n
    mean_sq = sum_sq_norms / n
    T = float(mean_sq - mu_bar @ mu_bar)
    W = float(mean_sq - np.sum(weights * np.sum(centers**2, axis=1)))
    delta = float(np.sum(weights * np.sum((centers - mu_bar) ** 2, axis=1)))
    return T, W, delta, centers, weights, mu_bar


def nearest_center(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of each row's nearest centre (squared Euclidean distance)."""
    d2 = (X**2).sum(1)[:, None] - 2 * X @ centers.T + (centers**2).sum(1)[None, :]
    return d2.argmin(axis=1)


def collapse_floor(centers_of_samples: np.ndarray) -> float:
    """min over constant outputs a of (1/N) sum_i ||a - mu_c(i)||^2 on *these* samples.

    Any collapsed (constant) decoder has L_clu >= this value on the same samples. It equals
    delta on the training data; on held-out data it is the exact bar to beat.
    """
    c = np.asarray(centers_of_samples, dtype=np.float64)
    return float(np.mean(np.sum((c - c.mean(axis=0)) ** 2, axis=1)))


def largest_eigenvalue(X: np.ndarray) -> float:
    """lambda_max of the covariance (1/N normalisation, consistent with T = trace of it)."""
    return float(covariance_spectrum(X)[0])


class ClusterGeometry:
    """K-means geometry of shell data: T, W, delta and the feasible region [W, delta).

    Parameters
    ----------
    n_clusters : int or "auto"
        K >= 2, or "auto" for the smallest K on ``k_grid`` with
        (delta - W) / T >= ``auto_margin`` (the region non-empty with a margin).
    auto_margin : float
        Required width of the region, as a share of T, for "auto".
    k_grid : sequence of int, optional
        K values tried by "auto" (default ``AUTO_K_GRID``, capped at n_samples - 1).
    sweep_samples : int or None
        "auto" sweeps on a seeded subset of this many samples (None: all), then fits
        the chosen K on all samples; the final region is re-checked there.
    on_empty : {"warn", "raise"}
        What to do when the fitted region is empty (W >= delta).
    kmeans : {"auto", "full", "minibatch", "streaming"}
        "auto": in memory, minibatch above
        ``MINIBATCH_THRESHOLD`` samples; data not in memory (memmap, ``ShellView``) streams when
        larger than ``STREAM_BYTES`` as float64, and is read into memory otherwise.
    n_init : int
        K-means restarts.
    random_state : int
        Seed.
    chunk_rows : int
        Streaming K-means (module docstring): rows per chunk.
    stream_init_samples : int
        Streaming K-means: rows of the subset that seeds the centres.
    stream_passes : int
        Streaming K-means: most Lloyd passes over all rows (fewer when no label changes).

    Notes
    -----
    Learned attributes: ``labels_``, ``centers_`` (K, D), ``weights_``, ``mu_bar_``, ``T_``,
    ``W_``, ``delta_collapse_``, ``feasible_`` (W < delta), ``lambda_max_``, ``n_clusters_``,
    ``sweep_`` (list of dicts K, W, delta, width; only for "auto").
    """

    def __init__(
        self,
        n_clusters: int | str = 10,
        *,
        auto_margin: float = 0.05,
        k_grid=None,
        sweep_samples: int | None = SWEEP_SAMPLES,
        on_empty: str = "warn",
        kmeans: str = "auto",
        n_init: int = 3,
        random_state: int = 0,
        chunk_rows: int = CHUNK_ROWS,
        stream_init_samples: int = 100_000,
        stream_passes: int = 10,
    ):
        self.n_clusters = n_clusters
        self.auto_margin = auto_margin
        self.k_grid = k_grid
        self.sweep_samples = sweep_samples
        self.on_empty = on_empty
        self.kmeans = kmeans
        self.n_init = n_init
        self.random_state = random_state
        self.chunk_rows = chunk_rows
        self.stream_init_samples = stream_init_samples
        self.stream_passes = stream_passes

    def _check_params(self, n_samples: int) -> None:
        if self.on_empty not in ("warn", "raise"):
            raise ShellVAEError(f"on_empty={self.on_empty!r}: choose 'warn' or 'raise'.")
        if self.kmeans not in ("auto", "full", "minibatch", "streaming"):
            raise ShellVAEError(f"kmeans={self.kmeans!r}: choose 'auto', 'full', 'minibatch' or 'streaming'.")
        for name in ("chunk_rows", "stream_init_samples", "stream_passes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ShellVAEError(f"{name}={value!r}: must be a positive integer.")
        if isinstance(self.n_clusters, str):
            if self.n_clusters != "auto":
                raise ShellVAEError(f"n_clusters={self.n_clusters!r}: give an integer >= 2 or 'auto'.")
            if not 0.0 <= self.auto_margin < 1.0:
                raise ShellVAEError(f"auto_margin={self.auto_margin}: need 0 <= auto_margin < 1.")
            return
        if isinstance(self.n_clusters, bool) or not isinstance(self.n_clusters, (int, np.integer)):
            raise ShellVAEError(f"n_clusters={self.n_clusters!r}: give an integer >= 2 or 'auto'.")
        if not 2 <= self.n_clusters <= n_samples:
            raise ShellVAEError(
                f"n_clusters={self.n_clusters} with {n_samples} samples: need 2 <= n_clusters <= n_samples."
            )

    def _kmeans_labels(self, X: np.ndarray, k: int) -> np.ndarray:
        use_minibatch = self.kmeans == "minibatch" or (self.kmeans == "auto" and len(X) > MINIBATCH_THRESHOLD)
        if use_minibatch:
            km = MiniBatchKMeans(k, n_init=self.n_init, random_state=self.random_state, batch_size=4096)
        else:
            km = KMeans(k, n_init=self.n_init, random_state=self.random_state)
        return km.fit_predict(X)

    def _fit_k(self, X: np.ndarray, k: int) -> dict:
        labels = self._kmeans_labels(X, k)
        T, W, delta, centers, weights, mu_bar = within_between(X, labels, k)
        return dict(K=k, T=T, W=W, delta=delta, labels=labels, centers=centers, weights=weights, mu_bar=mu_bar)

    def _streams(self, X) -> bool:
        if self.kmeans == "streaming":
            return True
        in_memory = isinstance(X, np.ndarray) and not isinstance(X, np.memmap)
        return self.kmeans == "auto" and not in_memory and np.prod(np.shape(X), dtype=float) * 8 > STREAM_BYTES

    def fit(self, X, y=None) -> "ClusterGeometry":
        """Cluster the shell data X (N, D): an array, a memmap or a ``ShellView`` (see ``kmeans``)."""
        stream = self._streams(X)
        if stream:
            X = X if isinstance(X, ShellView) else check_array(X, "X", dtype=None)  # a memmap: checked in chunks
            self._check_params(len(X))
            moments = self._moments(X)
            n_distinct = moments["n_distinct"]
        else:
            X = check_array(X, "X", dtype=np.float64)
            self._check_params(len(X))
        # duplicates are data; fewer distinct rows than clusters is not (K-means would leave clusters empty)
        need = 3 if self.n_clusters == "auto" else int(self.n_clusters)
        why = "n_clusters='auto'" if self.n_clusters == "auto" else f"n_clusters={need}"
        if stream:
            check_distinct_count(n_distinct, len(X), "X", need, why)
        else:
            n_distinct = check_distinct_rows(X, "X", need, why)
        fit_k = (lambda k: self._fit_k_streaming(X, k, moments)) if stream else (lambda k: self._fit_k(X, k))
        if self.n_clusters == "auto":
            sweep_X = X
            if self.sweep_samples is not None and len(X) > self.sweep_samples:
                rows = np.sort(np.random.default_rng(self.random_state).permutation(len(X))[:self.sweep_samples])
                sweep_X = _take(X, rows)
            elif stream:
                sweep_X = _take(X, np.arange(len(X)))
            fit = self._auto(sweep_X, max_k=n_distinct)
            if sweep_X is not X:
                fit = fit_k(fit["K"])
        else:
            fit = fit_k(int(self.n_clusters))
            self.sweep_ = None
        self.n_clusters_ = fit["K"]
        self.labels_, self.centers_, self.weights_, self.mu_bar_ = (
            fit["labels"], fit["centers"], fit["weights"], fit["mu_bar"]
        )
        self.T_, self.W_, self.delta_collapse_ = fit["T"], fit["W"], fit["delta"]
        self.feasible_ = self.W_ < self.delta_collapse_
        self.lambda_max_ = moments["lambda_max"] if stream else largest_eigenvalue(X)
        self.n_features_in_ = X.shape[1]
        if not self.feasible_:
            msg = (
                f"The feasible region is empty at K={self.n_clusters_}: W={self.W_:.4g} >= delta={self.delta_collapse_:.4g}. "
                "No model can prove it is not collapsed with this clustering, so the collapse guarantee does not apply. "
                "Use more clusters (n_clusters='auto' picks the smallest K that works)."
            )
            if self.on_empty == "raise":
                raise ShellVAEError(msg)
            warnings.warn(msg, EmptyFeasibleRegionWarning, stacklevel=2)
        return self

    # -- streaming (data not held in memory) ---------------------------------------------------
    def _moments(self, X) -> dict:
        """One pass: the sums that do not depend on the clustering, and the number of distinct rows."""
        d = X.shape[1]
        total, sum_sq, gram = np.zeros(d), 0.0, np.zeros((d, d))
        hashes = np.empty(len(X), dtype=np.int64)
        for start, block in _chunks(X, self.chunk_rows):
            total += block.sum(axis=0)
            sum_sq += float(np.einsum("ij,ij->", block, block))
            gram += block.T @ block
            hashes[start:start + len(block)] = row_hashes(block)  # as check_distinct_rows counts them
        mu_bar = total / len(X)
        covariance = gram / len(X) - np.outer(mu_bar, mu_bar)
        return dict(sum_sq=sum_sq, lambda_max=float(np.linalg.eigvalsh(covariance)[-1]),
                    n_distinct=len(np.unique(hashes)))

    def _fit_k_streaming(self, X, k: int, moments: dict) -> dict:
        """K-means on a seeded subset for the starting centres, then Lloyd passes over all rows in chunks."""
        n = len(X)
        rows = np.sort(np.random.default_rng(self.random_state).permutation(n)[:self.stream_init_samples])
        centers = self._fit_k(_take(X, rows), k)["centers"]
        labels = np.full(n, -1, dtype=np.int32)
        for _ in range(self.stream_passes):
            counts, sums, changed = np.zeros(k), np.zeros((k, X.shape[1])), 0
            for start, block in _chunks(X, self.chunk_rows):
                new = nearest_center(block, centers).astype(np.int32)
                changed += int(np.count_nonzero(new != labels[start:start + len(block)]))
                labels[start:start + len(block)] = new
                counts += np.bincount(new, minlength=k)
                np.add.at(sums, new, block)
            # the means of this pass's clusters; an empty cluster keeps its centre for the next pass
            centers = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], centers)
            if changed == 0:
                break
        T, W, delta, centers, weights, mu_bar = within_between_from_sums(counts, sums, moments["sum_sq"], n)
        return dict(K=k, T=T, W=W, delta=delta, labels=labels, centers=centers, weights=weights, mu_bar=mu_bar)

    def _auto(self, X: np.ndarray, max_k: int) -> dict:
        grid = [k for k in (self.k_grid or AUTO_K_GRID) if 2 <= k < len(X) and k <= max_k]
        if not grid:
            raise ShellVAEError(f"n_clusters='auto' needs at least 3 samples; got {len(X)}.")
        self.sweep_ = []
        fit = None
        for k in sorted(grid):
            fit = self._fit_k(X, k)
            width = (fit["delta"] - fit["W"]) / fit["T"]
            self.sweep_.append(dict(K=k, W=fit["W"], delta=fit["delta"], width=width))
            if width >= self.auto_margin:
                return fit
        warnings.warn(
            f"n_clusters='auto': no K up to {grid[-1]} gives a region of width >= {self.auto_margin} T; "
            f"using K={fit['K']}.",
            EmptyFeasibleRegionWarning,
            stacklevel=3,
        )
        return fit

    # -- use on new data ----------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Nearest fitted centre for each sample (how held-out data gets its cluster)."""
        if not hasattr(self, "centers_"):
            raise ShellVAEError("This ClusterGeometry is not fitted yet: call fit(X) first.")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ShellVAEError(f"X has shape {X.shape}; the geometry was fitted on {self.n_features_in_} features.")
        return nearest_center(X, self.centers_)

    def eps(self, eps_ratio: float = 0.0, alpha: float | None = None) -> float:
        """The margin eps of F_eps: eps_ratio * delta, or alpha * (delta - W) when alpha is given."""
        if alpha is not None:
            return alpha * max(self.delta_collapse_ - self.W_, 0.0)
        return eps_ratio * self.delta_collapse_

    @property
    def region(self) -> tuple[float, float]:
        return self.W_, self.delta_collapse_

    def state_dict(self) -> dict:
        state = {k: getattr(self, k) for k in (
            "labels_", "centers_", "weights_", "mu_bar_", "T_", "W_", "delta_collapse_", "feasible_",
            "lambda_max_", "n_clusters_", "n_features_in_",
        )}
        state["params"] = dict(n_clusters=self.n_clusters, auto_margin=self.auto_margin, on_empty=self.on_empty,
                               sweep_samples=self.sweep_samples, kmeans=self.kmeans, n_init=self.n_init,
                               random_state=self.random_state, chunk_rows=self.chunk_rows,
                               stream_init_samples=self.stream_init_samples, stream_passes=self.stream_passes)
        state["sweep_"] = self.sweep_
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> "ClusterGeometry":
        geo = cls(**state["params"])
        for k, v in state.items():
            if k != "params":
                setattr(geo, k, v)
        return geo

    def __repr__(self) -> str:
        if hasattr(self, "W_"):
            return (f"ClusterGeometry(K={self.n_clusters_}, W={self.W_:.4g}, delta={self.delta_collapse_:.4g}, "
                    f"feasible={self.feasible_})")
        return f"ClusterGeometry(n_clusters={self.n_clusters!r})"


def _chunks(X, chunk_rows: int):
    """(start, float64 block) over X's rows: a ShellView's own chunks, or slices of an array."""
    return X.chunks(chunk_rows) if isinstance(X, ShellView) else row_chunks(X, chunk_rows)


def _take(X, rows: np.ndarray) -> np.ndarray:
    """The rows ``rows`` of X in memory, float64."""
    return X.take(rows) if isinstance(X, ShellView) else np.asarray(X[rows], dtype=np.float64)

