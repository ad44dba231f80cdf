"""Cluster geometry of the shell data (docs/method.md §2; paper eqs. 3-6).

K-means on the shell data x~ gives labels c(i), centres mu_k, weights pi_k = N_k / N and the
overall mean mu_bar. Then

    T     = (1/N) sum_i ||x~_i - mu_bar||^2          total variance          (eq. 3)
    W     = (1/N) sum_i ||x~_i - mu_c(i)||^2         within-cluster variance (eq. 4)
    delta = sum_k pi_k ||mu_k - mu_bar||^2          collapse loss           (eq. 5)
    T = W + delta                                                           (eq. 6)

The identity holds for ANY labelling, provided mu_k are the means of the final clusters and
mu_bar is the mean of x~, so both are recomputed here, in float64, from the final labels over
all rows (``within_between``). The labels themselves come from the fast K-means of
``shellvae.core.kmeans`` (float32 matrix products in the top principal directions, restarts on a
subset, warm starts, early stopping, then Lloyd passes in full dimension): a worse partition
can only narrow the region, never make it wrong.

The feasible region [W, delta) is non-empty iff W < delta. A constant decoder output a has
cluster-aware loss delta + ||a - mu_bar||^2 >= delta, so a model with L_clu < delta is not
collapsed; if W >= delta no model can certify itself that way, and we say so.

``n_clusters="auto"`` is one search (``search_k``): on a seeded subset of ``sweep_samples``
rows, one chain of K-means fits along ``AUTO_K_GRID``, each the best of a warm start from the
previous K's centres and ``n_init`` restarts, stopping at the first K whose region is at least
``auto_margin`` T wide; that K is then fitted on all rows, warm-started from its subset
centres. ``diagnose`` prints the same search's table (the whole grid).

Data larger than memory (a memory-mapped array, or a ``shell.ShellView`` of one) is clustered
by streaming: K-means on a seeded subset of ``stream_init_samples`` rows gives the starting
centres, then Lloyd passes over all rows, ``chunk_rows`` at a time, move them (each pass:
assign every row to its nearest centre, accumulate counts and float64 sums, take the means;
``kmeans.refine``, the in-memory path's last stage too). The last pass's labels and the means
of those clusters are the result, and T, W, delta, mu_bar and lambda_max come from per-chunk
sums (counts, sums, sum of squared norms, X^T X), so eq. 6 holds exactly as in memory. Only the
labels (4 bytes a row) and a chunk are ever held.
"""

from __future__ import annotations

import inspect

import warnings

import numpy as np
from sklearn.cluster import MiniBatchKMeans

from shellvae.base.caller import user_stacklevel
from shellvae.core import kmeans as kmeans_lib
from shellvae.core.autok import exact_geometry, search_k
from shellvae.base.validation import (CHUNK_ROWS, check_array, check_distinct_count, check_distinct_rows, check_scalar,
                                row_chunks, row_hashes)
from shellvae.errors import EmptyFeasibleRegionWarning, NotFittedError, ShellVAEError
from shellvae.core.shell import ShellView
from shellvae.core.variances import _blocks, cluster_sums, nearest_center, principal_space, within_between_from_sums

#: the default number of clusters (the paper's K for the image datasets; its synthetic mixture has 8)
N_CLUSTERS = 10

#: the K-means restarts and the auto-K search run on a seeded subset of at most this many rows,
#: then the chosen centres are refined on all rows
SWEEP_SAMPLES = 20_000

#: ``kmeans="auto"`` streams data that is not in memory (a memmap, a ShellView) when its float64
#: rows would take more than this; smaller such data is read into memory and clustered there
STREAM_BYTES = 2**30


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
    kmeans : "full", "minibatch", "streaming", or "auto". "full": ``shellvae.core.kmeans`` (float32
        matrix products, restarts on the subset, Lloyd on all rows); "minibatch": scikit-learn's
        ``MiniBatchKMeans`` (batch 4,096); "streaming": Lloyd passes over chunks (module
        docstring). "auto": "full" in memory; data not in memory (memmap, ``ShellView``) streams
        when larger than ``STREAM_BYTES`` as float64, and is read into memory otherwise.
    n_init : k-means++ restarts (on the subset; the best goes on to all rows); in the auto-K
        search, restarts beside the warm start at each K. random_state : seed (None: unseeded).
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
        n_clusters: int | str = N_CLUSTERS,
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
        if self.random_state is not None and (isinstance(self.random_state, bool)
                                              or not isinstance(self.random_state, (int, np.integer))):
            raise ShellVAEError(f"random_state={self.random_state!r}: give an integer seed (or None: unseeded).")
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
            warnings.warn(msg, EmptyFeasibleRegionWarning, stacklevel=user_stacklevel())
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
        cov = gram / len(X) - np.outer(mu_bar, mu_bar)
        return dict(sum_sq=sum_sq, mu_bar=mu_bar, lambda_max=float(np.linalg.eigvalsh(cov)[-1]),
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
            raise NotFittedError("This ClusterGeometry is not fitted yet: call fit(X) first.")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ShellVAEError(f"X has shape {X.shape}; the geometry was fitted on {self.n_features_in_} features.")
        return nearest_center(X, self.centers_)

    def state_dict(self) -> dict:
        state = {k: getattr(self, k) for k in (
            "labels_", "centers_", "weights_", "mu_bar_", "T_", "W_", "delta_collapse_", "feasible_",
            "lambda_max_", "n_clusters_", "n_features_in_",
        )}
        state["params"] = self.get_params()
        state["sweep_"] = self.sweep_
        return state

    def get_params(self) -> dict:
        """The constructor's arguments, as scikit-learn's ``get_params`` (read from the signature,
        so a saved geometry keeps every setting, ``k_grid`` included)."""
        return {name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters
                if name != "self"}

    @classmethod
    def from_state_dict(cls, state: dict) -> "ClusterGeometry":
        params = dict(state["params"])
        if params.get("k_grid") is not None:
            params["k_grid"] = [int(k) for k in params["k_grid"]]
        geo = cls(**params)
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

