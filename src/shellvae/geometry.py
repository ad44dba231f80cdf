"""Cluster geometry of the shell data (docs/method.md §2; paper eqs. 3-6).

K-means on the shell data x~ gives labels c(i), centres mu_k, weights pi_k = N_k / N and the
overall mean mu_bar. Then

    T     = (1/N) sum_i ||x~_i - mu_bar||^2          total variance          (eq. 3)
    W     = (1/N) sum_i ||x~_i - mu_c(i)||^2         within-cluster variance (eq. 4)
    delta = sum_k pi_k ||mu_k - mu_bar||^2          collapse loss           (eq. 5)
    T = W + delta                                                           (eq. 6)

The identity holds for ANY labelling, provided mu_k are the means of the final clusters and
mu_bar is the mean of x~, so both are recomputed here, in float64, from the final labels over
all rows (``within_between``). The labels themselves come from the fast, approximate K-means of
``shellvae.kmeans`` (float32 matrix products, restarts and the auto-K search on a subset, warm
starts, early stopping): a worse partition can only narrow the region, never make it wrong.

The feasible region [W, delta) is non-empty iff W < delta. A constant decoder output a has
cluster-aware loss delta + ||a - mu_bar||^2 >= delta, so a model with L_clu < delta is not
collapsed; if W >= delta no model can certify itself that way, and we say so.

``n_clusters="auto"`` is one search (``search_k``): on a seeded subset of ``sweep_samples``
rows, one chain of K-means fits along ``AUTO_K_GRID``, each warm-started from the previous K's
centres, stopping at the first K whose region is at least ``auto_margin`` T wide; that K is then
fitted on all rows, warm-started from its subset centres. ``diagnose`` prints the same search's
table (the whole grid).

Data larger than memory (a memory-mapped array, or a ``shell.ShellView`` of one) is clustered
by streaming: K-means on a seeded subset of ``stream_init_samples`` rows gives the starting
centres, then Lloyd passes over all rows, ``chunk_rows`` at a time, move them (each pass:
assign every row to its nearest centre with ``kmeans_lib.assign``, accumulate counts and float64
sums, take the means). The last pass's labels and the means of those clusters are the result,
and T, W, delta, mu_bar and lambda_max come from per-chunk sums (counts, sums, sum of squared
norms, X^T X), so eq. 6 holds exactly as in memory. Only the labels (4 bytes a row) and a chunk
are ever held.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans
from threadpoolctl import threadpool_limits

from shellvae import kmeans as kmeans_lib
from shellvae.validation import (CHUNK_ROWS, check_array, check_distinct_count, check_distinct_rows, check_scalar,
                                row_chunks, row_hashes)
from shellvae.errors import EmptyFeasibleRegionWarning, ShellVAEError
from shellvae.shell import ShellView

#: K values of the auto-K search, for ``n_clusters="auto"`` and ``diagnose`` alike (roughly x1.5
#: steps: few fits, fine enough near small K)
AUTO_K_GRID = (2, 3, 4, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)

#: the K-means restarts and the auto-K search run on a seeded subset of at most this many rows,
#: then the chosen centres are refined on all rows
SWEEP_SAMPLES = 20_000

#: ``kmeans="auto"`` streams data that is not in memory (a memmap, a ShellView) when its float64
#: rows would take more than this; smaller such data is read into memory and clustered there
STREAM_BYTES = 2**30


def within_between(X: np.ndarray, labels: np.ndarray, n_clusters: int):
    """T, W, delta, centres, weights, mu_bar from labels alone (float64). Empty clusters get weight 0."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    centers = cluster_sums(X, labels, n_clusters) / np.maximum(counts, 1.0)[:, None]
    weights = counts / len(X)
    mu_bar = X.mean(axis=0)
    T = _mean_squared_distance(X, lambda rows: mu_bar)
    W = _mean_squared_distance(X, lambda rows: centers[labels[rows]])
    delta = float(np.sum(weights * np.sum((centers - mu_bar) ** 2, axis=1)))
    return T, W, delta, centers, weights, mu_bar


def cluster_sums(X: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per-cluster sums of X's rows (float64; ``index_add_``: np.add.at is ten times slower)."""
    sums = torch.zeros(n_clusters, X.shape[1], dtype=torch.float64)
    sums.index_add_(0, torch.from_numpy(np.asarray(labels, dtype=np.int64)), kmeans_lib.as_tensor(X))
    return sums.numpy()


def _mean_squared_distance(X: np.ndarray, targets) -> float:
    """(1/N) sum_i ||x_i - targets(rows)_i||^2, a block of rows at a time (no (N, D) temporaries)."""
    total = 0.0
    for start, block in _blocks(X):
        diff = block - targets(slice(start, start + len(block)))
        total += float(np.einsum("ij,ij->", diff, diff))
    return total / len(X)


#: passes over rows in memory (exact sums, the covariance, Lloyd refinement) take blocks of about
#: this many bytes: large temporaries are slow to allocate (fresh pages) and fall out of cache
BLOCK_BYTES = 4 * 2**20


def _blocks(X: np.ndarray):
    """(start, rows) for consecutive blocks of X's rows (views), each about ``BLOCK_BYTES`` of float64."""
    step = max(1, BLOCK_BYTES // (8 * max(X.shape[1], 1)))
    return ((start, X[start:start + step]) for start in range(0, len(X), step))


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


def collapse_floor(centers: np.ndarray, counts: np.ndarray) -> float:
    """min over constant outputs a of (1/N) sum_i ||a - mu_c(i)||^2 over samples of which ``counts[k]``
    belong to the cluster with centre ``centers[k]``: the spread of their own centres.

    Any collapsed (constant) decoder has L_clu >= this value on the same samples. It equals
    delta on the training data; on held-out data it is the exact bar to beat.
    """
    weights = np.asarray(counts, dtype=np.float64) / np.sum(counts)
    c = np.asarray(centers, dtype=np.float64)
    return float(weights @ np.sum((c - weights @ c) ** 2, axis=1))


def covariance(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (1/N normalisation, float64) of X's rows.

    The centred Gram matrix is summed a block of rows at a time (no centred copy of X), as
    ``c.T @ c``, which NumPy hands to BLAS' syrk (half a general product's work); BLAS is held
    to torch's thread count meanwhile, like the rest of the K-means (extra BLAS threads on a
    busy machine were measured to slow it down, not up).
    """
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    gram = np.zeros((X.shape[1], X.shape[1]))
    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        for _, block in _blocks(X):
            centred = block - mean
            gram += centred.T @ centred
    return mean, gram / len(X)


def largest_eigenvalue(X: np.ndarray) -> float:
    """lambda_max of the covariance (1/N normalisation, consistent with T = trace of it)."""
    return principal_space(X, None)[1]


def principal_space(X: np.ndarray, dims: int | None) -> tuple[np.ndarray, float, torch.Tensor | None]:
    """X's mean, lambda_max, and its top ``dims`` principal axes (float32, (D, dims)), where
    K-means searches; None for the axes when X has at most ``dims`` features, or ``dims`` is None."""
    mean, cov = covariance(X)
    if dims is None or cov.shape[0] <= dims:
        return mean, float(torch.linalg.eigvalsh(torch.from_numpy(cov))[-1]), None
    values, vectors = torch.linalg.eigh(torch.from_numpy(cov))  # ascending
    return mean, float(values[-1]), vectors[:, -dims:].to(torch.float32).contiguous()


@dataclass
class KSearch:
    """The auto-K search: one row (K, W, delta, width) per K fitted, and the chosen fit.

    ``geometry`` is ``exact_geometry``'s dict for the chosen K on the search rows (the last K
    fitted when none met the margin, ``met`` False; the widest when no margin was asked).
    """

    rows: list[dict]
    geometry: dict
    met: bool


def exact_geometry(X: np.ndarray, labels: np.ndarray, k: int) -> dict:
    """``within_between`` of the labels as the dict the fits pass around (T, W, delta, centres, ...)."""
    T, W, delta, centers, weights, mu_bar = within_between(X, labels, k)
    return dict(K=k, T=T, W=W, delta=delta, labels=labels, centers=centers, weights=weights, mu_bar=mu_bar)


def search_grid(k_grid, n_rows: int, max_k: int | None = None) -> list[int]:
    """The K values of ``k_grid`` that ``n_rows`` rows (``max_k`` of them distinct) can take, in increasing order."""
    grid = list(AUTO_K_GRID if k_grid is None else k_grid)
    bad = [k for k in grid if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 2]
    if not grid or bad:
        raise ShellVAEError(f"k_grid={grid}: give integers >= 2 (bad: {bad}).")
    usable = sorted({int(k) for k in grid if k < n_rows and (max_k is None or k <= max_k)})
    if not usable:
        raise ShellVAEError(f"k_grid={grid} with {n_rows} rows: every K needs fewer clusters than rows "
                            f"(and at least 3 rows for K=2).")
    return usable


def search_k(X: np.ndarray, k_grid=None, *, margin: float | None = None, max_k: int | None = None,
             n_init: int = 3, random_state: int = 0, max_iter: int = kmeans_lib.MAX_ITER,
             tol: float = kmeans_lib.TOL, search_dims: int | None = kmeans_lib.SEARCH_DIMS) -> KSearch:
    """The K table of X (float64 rows in memory, e.g. a subset): one chain of K-means fits, K rising along the grid.

    Each K runs in X's top ``search_dims`` principal directions (``kmeans`` module docstring):
    Lloyd iterations from a warm start (the previous K's centres, plus k-means++ seeds for the
    new ones) and from ``n_init`` fresh k-means++ seedings; the lowest objective is kept and
    warm-starts the next K. (Warm starts alone were measured to get stuck: on the GMM at K below
    its 8 components, the region came out up to 0.08 T narrower than with restarts.) T, W and
    delta are then exact for the kept labels on X in full dimension. With ``margin``, the search
    stops at the first K whose width (delta - W) / T reaches it; without, it fits the whole grid
    (what ``diagnose`` prints). The same rows and settings give the same table, whoever asks.
    """
    grid = search_grid(k_grid, len(X), max_k)
    mean, _, axes = principal_space(X, search_dims)
    Z = kmeans_lib.project(_blocks(X), len(X), mean, axes)
    z_sq = kmeans_lib.squared_norms(Z)
    rng = np.random.default_rng(random_state)
    rows, centers, chosen = [], None, None
    for k in grid:
        warm = kmeans_lib.seed_centers(Z, z_sq, k, rng, start=centers)
        fresh = [kmeans_lib.seed_centers(Z, z_sq, k, rng) for _ in range(n_init)]
        fit = kmeans_lib.best_of(Z, z_sq, [warm, *fresh], max_iter, tol)
        centers = fit.centers
        geometry = exact_geometry(X, fit.labels.numpy().astype(np.int32), k)
        width = (geometry["delta"] - geometry["W"]) / geometry["T"]
        rows.append(dict(K=k, W=geometry["W"], delta=geometry["delta"], width=width))
        if margin is not None and width >= margin:
            return KSearch(rows, geometry, met=True)
        if chosen is None or margin is not None or width > chosen[0]:
            chosen = (width, geometry)
    return KSearch(rows, chosen[1], met=margin is None)


class ClusterGeometry:
    """K-means geometry of shell data: T, W, delta and the feasible region [W, delta).

    Parameters
    ----------
    n_clusters : int >= 2, or "auto" for the smallest K on ``k_grid`` with
        (delta - W) / T >= ``auto_margin`` (the region non-empty with a margin), found by one
        warm-started search (``search_k``) on ``sweep_samples`` rows.
    auto_margin : required width of the region, as a share of T, for "auto".
    k_grid : K values tried by "auto" (default ``AUTO_K_GRID``, capped at n_samples - 1).
    sweep_samples : the K-means restarts and the "auto" search run on a seeded subset of this
        many samples (None: all); the result is then refined on all samples, where the region is
        re-checked.
    on_empty : "warn" or "raise" when the fitted region is empty (W >= delta).
    kmeans : "full", "minibatch", "streaming", or "auto". "full": ``shellvae.kmeans`` (float32
        matrix products, restarts on the subset, Lloyd on all rows); "minibatch": scikit-learn's
        ``MiniBatchKMeans`` (batch 4,096); "streaming": Lloyd passes over chunks (module
        docstring). "auto": "full" in memory; data not in memory (memmap, ``ShellView``) streams
        when larger than ``STREAM_BYTES`` as float64, and is read into memory otherwise.
    n_init : k-means++ restarts of a fixed-K fit (each run on the subset; the best goes on);
        random_state : seed.
    max_iter, tol : Lloyd iterations stop after ``max_iter``, when no label changes, or when the
        objective falls by less than ``tol`` of itself in one iteration.
    search_dims : K-means searches in this many top principal directions, then refines the
        labels in full dimension (None: search in full dimension; ``kmeans`` module docstring).
    chunk_rows, stream_init_samples, stream_passes : streaming K-means (module docstring): rows
        per chunk, rows of the subset that seeds the centres, most Lloyd passes over all rows
        (fewer when no label changes or the objective stops falling).

    Notes
    -----
    Learned attributes: ``labels_``, ``centers_`` (K, D), ``weights_``, ``mu_bar_``, ``T_``,
    ``W_``, ``delta_collapse_``, ``feasible_`` (W < delta), ``lambda_max_``, ``n_clusters_``,
    ``sweep_`` (list of dicts K, W, delta, width on the search rows; only for "auto").
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
        max_iter: int = kmeans_lib.MAX_ITER,
        tol: float = kmeans_lib.TOL,
        search_dims: int | None = kmeans_lib.SEARCH_DIMS,
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
        self.max_iter = max_iter
        self.tol = tol
        self.search_dims = search_dims
        self.chunk_rows = chunk_rows
        self.stream_init_samples = stream_init_samples
        self.stream_passes = stream_passes

    def _check_params(self, n_samples: int) -> None:
        if self.on_empty not in ("warn", "raise"):
            raise ShellVAEError(f"on_empty={self.on_empty!r}: choose 'warn' or 'raise'.")
        if self.kmeans not in ("auto", "full", "minibatch", "streaming"):
            raise ShellVAEError(f"kmeans={self.kmeans!r}: choose 'auto', 'full', 'minibatch' or 'streaming'.")
        for name in ("chunk_rows", "stream_init_samples", "stream_passes", "n_init", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ShellVAEError(f"{name}={value!r}: must be a positive integer.")
        if self.search_dims is not None:
            check_scalar(self.search_dims, "search_dims", integer=True, low=1, low_open=False,
                         fix="K-means searches in this many principal directions (None: all features).")
        if self.sweep_samples is not None:
            check_scalar(self.sweep_samples, "sweep_samples", integer=True, low=3, low_open=False,
                         fix="It is the size of the subset K-means searches on (None: all rows).")
        check_scalar(self.tol, "tol", low=0, low_open=False,
                     fix="Lloyd iterations stop once the objective falls by less than tol of itself (0: never).")
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, (int, np.integer)):
            raise ShellVAEError(f"random_state={self.random_state!r}: give an integer seed.")
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

    def _lloyd_options(self) -> dict:
        return dict(random_state=self.random_state, max_iter=self.max_iter, tol=self.tol)

    def _fit_k(self, X: np.ndarray, k: int, init: np.ndarray | None = None, space=None) -> dict:
        """K-means on X in memory, then the exact geometry of its labels.

        ``init``: centres (float64, X's coordinates) to warm-start from; ``space``:
        ``principal_space(X, search_dims)`` if already computed. The search runs in the
        projection (restarts on ``sweep_samples`` rows, then all rows), then Lloyd passes over X
        in full dimension refine it (``kmeans.refine``).
        """
        if self.kmeans == "minibatch":
            km = MiniBatchKMeans(k, n_init=self.n_init, random_state=self.random_state, batch_size=4096)
            return exact_geometry(X, km.fit_predict(X), k)
        mean, _, axes = principal_space(X, self.search_dims) if space is None else space
        Z = kmeans_lib.project(_blocks(X), len(X), mean, axes)
        start = None if init is None else kmeans_lib.project([(0, init)], len(init), mean, axes)
        fit = kmeans_lib.fit_kmeans(Z, k, n_init=self.n_init, search_rows=self.sweep_samples, init=start,
                                    **self._lloyd_options())
        del Z
        labels = fit.labels.numpy().astype(np.int32)
        counts = np.bincount(labels, minlength=k)
        centers = cluster_sums(X, labels, k) / np.maximum(counts, 1)[:, None]
        refined = kmeans_lib.refine(lambda: _blocks(X), centers, mean, labels, self.max_iter, self.tol)
        return exact_geometry(X, refined.labels, k)

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
        if stream:
            def fit_k(k, init=None):
                return self._fit_k_streaming(X, k, moments, init)
        else:
            space = principal_space(X, self.search_dims)  # lambda_max, and the axes K-means searches along

            def fit_k(k, init=None):
                return self._fit_k(X, k, init, space)
        if self.n_clusters == "auto":
            fit = self._auto(X, fit_k, stream, max_k=n_distinct)
        else:
            fit = fit_k(int(self.n_clusters))
            self.sweep_ = None
        self.n_clusters_ = fit["K"]
        self.labels_, self.centers_, self.weights_, self.mu_bar_ = (
            fit["labels"], fit["centers"], fit["weights"], fit["mu_bar"]
        )
        self.T_, self.W_, self.delta_collapse_ = fit["T"], fit["W"], fit["delta"]
        self.feasible_ = self.W_ < self.delta_collapse_
        self.lambda_max_ = moments["lambda_max"] if stream else space[1]
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

    def _auto(self, X, fit_k, stream: bool, max_k: int) -> dict:
        """``search_k`` on the seeded subset, then the chosen K on all rows, warm-started from the subset's centres."""
        rows = kmeans_lib.subset_rows(len(X), self.sweep_samples, self.random_state)
        if rows is None and not stream:
            search_X = X
        else:
            search_X = _take(X, np.arange(len(X)) if rows is None else rows)
        search = search_k(search_X, self.k_grid, margin=self.auto_margin, max_k=max_k, n_init=self.n_init,
                          search_dims=self.search_dims, **self._lloyd_options())
        self.sweep_ = search.rows
        fit = search.geometry
        if not search.met:
            warnings.warn(
                f"n_clusters='auto': no K up to {fit['K']} gives a region of width >= {self.auto_margin} T; "
                f"using K={fit['K']}.",
                EmptyFeasibleRegionWarning,
                stacklevel=3,
            )
        if search_X is X:
            return fit
        return fit_k(fit["K"], init=fit["centers"])

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
        return dict(sum_sq=sum_sq, mu_bar=mu_bar, lambda_max=float(np.linalg.eigvalsh(covariance)[-1]),
                    n_distinct=len(np.unique(hashes)))

    def _fit_k_streaming(self, X, k: int, moments: dict, init: np.ndarray | None = None) -> dict:
        """Starting centres (``init``, or K-means on a seeded subset in memory), then Lloyd passes
        over all rows in chunks (``kmeans.refine``, as in memory), and the geometry from their sums."""
        n = len(X)
        if init is None:
            rows = kmeans_lib.subset_rows(n, self.stream_init_samples, self.random_state)
            init = self._fit_k(_take(X, np.arange(n) if rows is None else rows), k)["centers"]
        labels = np.full(n, -1, dtype=np.int32)
        last = kmeans_lib.refine(lambda: _chunks(X, self.chunk_rows), init, moments["mu_bar"], labels,
                                 self.stream_passes, self.tol)
        T, W, delta, centers, weights, mu_bar = within_between_from_sums(last.counts, last.sums, moments["sum_sq"], n)
        return dict(K=k, T=T, W=W, delta=delta, labels=last.labels, centers=centers, weights=weights, mu_bar=mu_bar)

    # -- use on new data ----------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Nearest fitted centre for each sample (how held-out data gets its cluster)."""
        if not hasattr(self, "centers_"):
            raise ShellVAEError("This ClusterGeometry is not fitted yet: call fit(X) first.")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ShellVAEError(f"X has shape {X.shape}; the geometry was fitted on {self.n_features_in_} features.")
        return nearest_center(X, self.centers_)

    def state_dict(self) -> dict:
        state = {k: getattr(self, k) for k in (
            "labels_", "centers_", "weights_", "mu_bar_", "T_", "W_", "delta_collapse_", "feasible_",
            "lambda_max_", "n_clusters_", "n_features_in_",
        )}
        state["params"] = dict(n_clusters=self.n_clusters, auto_margin=self.auto_margin, on_empty=self.on_empty,
                               sweep_samples=self.sweep_samples, kmeans=self.kmeans, n_init=self.n_init,
                               random_state=self.random_state, max_iter=self.max_iter, tol=self.tol,
                               search_dims=self.search_dims, chunk_rows=self.chunk_rows,
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

