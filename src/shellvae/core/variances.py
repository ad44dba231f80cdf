"""The variances of a clustering, exact in float64 (docs/method.md §2; paper eqs. 3-6).

For any labels c(i) of rows x~_i, with mu_k the means of the clusters and mu_bar the mean of
all rows: T (eq. 3), W (eq. 4) and delta (eq. 5), with T = W + delta (eq. 6) exactly; the same
from per-cluster sums for data read a chunk at a time; the collapse floor of a set of rows; and
the covariance, its largest eigenvalue and principal directions, which the K-means search uses.
"""

from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from shellvae.core import kmeans as kmeans_lib

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
