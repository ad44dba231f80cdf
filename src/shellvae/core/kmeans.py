"""Fast K-means for the cluster geometry (docs/method.md §2; paper eqs. 3-6).

The certificate does not need the best partition. For ANY labelling c(i), W (eq. 4) and delta
(eq. 5) computed exactly from it satisfy T = W + delta (eq. 6), and a constant decoder still
scores >= delta; a better partition only widens the region [W, delta). So the *search* for the
labels may be approximate and cheap, as long as ``variances.within_between`` then computes T, W
and delta exactly (float64) from the final labels over all rows. The search here:

1. **Projection.** Rows are centred and projected onto the top ``SEARCH_DIMS`` principal axes
   of the data (float32). K-means there costs D / SEARCH_DIMS less (12x on MNIST) and, on the
   data measured (docs/performance.md), finds partitions as good as in full dimension; the
   continuous relaxation of K-means is itself PCA (Ding & He 2004).
2. **Restarts on a subset.** ``n_init`` greedy k-means++ seedings (Arthur & Vassilvitskii
   2007, with scikit-learn's 2 + log K candidates per centre), each followed by Lloyd
   iterations, on a seeded subset of rows; the best goes on to Lloyd iterations on all rows.
3. **Refinement in full dimension** (``refine``): Lloyd passes over the original float64 rows,
   a block at a time, from the means of the projected partition's clusters; usually a few
   passes. Streaming K-means (data larger than memory) is the same passes, over chunks.

Every Lloyd loop stops after ``max_iter`` iterations, when no label changes, or when the
objective (mean squared distance to the nearest centre) falls by less than ``tol`` of itself.
The assignment is one matrix product per block of rows,
argmin_k ||x - c_k||^2 = argmin_k (||c_k||^2 - 2 x.c_k) (``torch.addmm``), in float32 on
centred rows (centring keeps float32 accurate for data far from the origin); torch runs it on
its own threads (``torch.set_num_threads``). Cluster sums for the centres are float64.

A warm start is a set of centres to begin from instead of seeds: the auto-K search
(``autok.search_k``) continues k-means++ from the previous K's centres (beside ``n_init``
fresh seedings), and fits the chosen K on all rows from its subset centres. Empty clusters in
the in-memory Lloyd loop move to the rows farthest from their centres, as scikit-learn does; in
``refine`` an empty cluster keeps its centre. Everything is seeded: the same data, parameters
and torch thread count give the same labels.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

#: rows per matrix product in the assignment step: bounds the (rows, K) distance block in memory
ASSIGN_ROWS = 8_192

#: Lloyd iterations stop after this many at most ...
MAX_ITER = 300
#: ... or once the objective falls by less than this share of itself in one iteration
TOL = 1e-4

#: K-means searches in the top this-many principal directions (data with at most this many
#: features is only centred); the labels it finds are then refined in full dimension
SEARCH_DIMS = 64

#: k-means++ draws its seeds from a seeded subset of at most max(SEED_ROWS, SEED_ROWS_PER_CLUSTER
#: * K) rows: each new seed reads those rows once
SEED_ROWS = 20_000
SEED_ROWS_PER_CLUSTER = 64

#: (start row, float64 block of rows) pairs covering the data once, in order
Blocks = Iterable[tuple[int, np.ndarray]]


@dataclass
class KMeansFit:
    """Lloyd's result on the rows it ran on: labels, the means of their clusters (float32, in
    the coordinates of the rows), the objective before the last update, and the iterations."""

    centers: torch.Tensor
    labels: torch.Tensor
    objective: float
    n_iter: int


@dataclass
class Pass:
    """One Lloyd pass over all rows (``refine``): labels, float64 cluster counts and sums, the
    objective of the assignment, and how many labels changed."""

    labels: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    objective: float
    changed: int


# -- small tools -------------------------------------------------------------------------------
def subset_rows(n: int, size: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded subset of ``size`` of ``n`` rows, or None if that is all of them."""
    if size is None or size >= n:
        return None
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def as_tensor(X: np.ndarray) -> torch.Tensor:
    """A tensor sharing X's memory, read-only arrays included (nothing here writes to it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.asarray(X))


def centred_float32(X: np.ndarray, mean: np.ndarray) -> torch.Tensor:
    """X - mean in float32, without a float64 temporary."""
    out = np.empty(np.shape(X), dtype=np.float32)
    np.subtract(X, mean, out=out, casting="same_kind")
    return torch.from_numpy(out)


def squared_norms(X: torch.Tensor) -> torch.Tensor:
    """||x||^2 of each row (``vector_norm`` then square: several times faster than einsum or (X * X).sum(1))."""
    return torch.linalg.vector_norm(X, dim=1).square_()


def stalled(previous: float, objective: float, tol: float) -> bool:
    """The early stop: the objective fell by less than ``tol`` of itself (or rose) in one iteration."""
    return previous - objective <= tol * objective


# -- projection --------------------------------------------------------------------------------
def project(blocks: Blocks, n: int, mean: np.ndarray, axes: torch.Tensor | None) -> torch.Tensor:
    """(N, dims) float32 coordinates of the centred rows along ``axes`` (D, dims), orthonormal
    principal axes (``variances.principal_space``); the centred rows themselves if None."""
    out = None
    for start, block in blocks:
        rows = centred_float32(block, mean)
        rows = rows if axes is None else rows @ axes
        if out is None:
            out = torch.empty(n, rows.shape[1], dtype=torch.float32)
        out[start:start + len(rows)] = rows
    return out


# -- in-memory Lloyd (float32 rows, e.g. the projection) ----------------------------------------
def assign(X: torch.Tensor, centers: torch.Tensor, x_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each row and its squared distance (clamped at 0), ``ASSIGN_ROWS`` rows at a time."""
    c_sq = squared_norms(centers)
    labels = torch.empty(len(X), dtype=torch.int64)
    d2 = torch.empty(len(X), dtype=X.dtype)
    for start in range(0, len(X), ASSIGN_ROWS):
        stop = start + ASSIGN_ROWS
        # ||c||^2 - 2 x.c: one GEMM; ||x||^2 does not change the argmin and is added after
        best, labels[start:stop] = torch.addmm(c_sq, X[start:stop], centers.T, alpha=-2).min(dim=1)
        d2[start:stop] = (best + x_sq[start:stop]).clamp_(min=0)
    return labels, d2


def kmeans_plusplus(X: torch.Tensor, x_sq: torch.Tensor, k: int, rng: np.random.Generator,
                    centers: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding of ``k`` centres among X's rows, keeping ``centers`` (if given) as the first ones.

    Each new centre is the best, by the resulting objective, of 2 + log(k) rows drawn with
    probability proportional to their squared distance to the nearest centre so far.
    """
    n = len(X)
    trials = 2 + int(math.log(k))
    if centers is None or len(centers) == 0:
        first = int(rng.integers(n))
        chosen = [X[first]]
        closest = (x_sq - 2 * X @ X[first] + x_sq[first]).clamp_(min=0)
    else:
        chosen = list(centers)
        closest = assign(X, centers, x_sq)[1]
    while len(chosen) < k:
        cumulative = torch.cumsum(closest, 0, dtype=torch.float64).numpy()
        if cumulative[-1] <= 0:  # every row sits on a centre (fewer distinct rows than k): any row
            candidates = rng.integers(n, size=trials)
        else:
            candidates = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right")
            candidates = np.minimum(candidates, n - 1)
        index = torch.from_numpy(candidates)
        cand = X[index]
        # squared distances of every row to each candidate: one GEMM, as in ``assign``
        dist = torch.addmm(x_sq.expand(trials, n), cand, X.T, alpha=-2).add_(x_sq[index][:, None]).clamp_(min=0)
        new_closest = torch.minimum(closest[None, :], dist, out=dist)
        best = int(new_closest.sum(1, dtype=torch.float64).argmin())
        chosen.append(cand[best])
        closest = new_closest[best]
    return torch.stack(chosen).clone()


def seed_centers(X: torch.Tensor, x_sq: torch.Tensor, k: int, rng: np.random.Generator,
                 start: torch.Tensor | None = None) -> torch.Tensor:
    """k-means++ seeds on a random subset of X's rows (see ``SEED_ROWS``), keeping ``start`` as the first centres."""
    size = max(SEED_ROWS, SEED_ROWS_PER_CLUSTER * k)
    if size < len(X):
        rows = torch.from_numpy(np.sort(rng.choice(len(X), size, replace=False)))
        X, x_sq = X[rows], x_sq[rows]
    return kmeans_plusplus(X, x_sq, k, rng, start)


def _means(X: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    counts = torch.bincount(labels, minlength=k)
    sums = torch.zeros(k, X.shape[1], dtype=X.dtype).index_add_(0, labels, X)
    return sums / counts.clamp(min=1).to(X.dtype)[:, None], counts


def _fill_empty(centers: torch.Tensor, counts: torch.Tensor, X: torch.Tensor, d2: torch.Tensor) -> None:
    """Move the centres of empty clusters onto the rows farthest from their own centres (in place)."""
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty):
        centers[empty] = X[torch.topk(d2, len(empty)).indices]


def lloyd(X: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor, max_iter: int, tol: float) -> KMeansFit:
    """Lloyd iterations from ``centers`` until no label changes, the objective falls by less than
    ``tol`` of itself, or ``max_iter`` iterations; the returned centres are the means of the returned labels."""
    k = len(centers)
    labels, previous, objective, n_iter = None, math.inf, math.inf, 0
    for n_iter in range(1, max_iter + 1):
        new_labels, d2 = assign(X, centers, x_sq)
        objective = float(d2.double().mean())
        unchanged = labels is not None and torch.equal(new_labels, labels)
        labels = new_labels
        centers, counts = _means(X, labels, k)
        _fill_empty(centers, counts, X, d2)
        if unchanged or stalled(previous, objective, tol):
            break
        previous = objective
    if bool((torch.bincount(labels, minlength=k) == 0).any()):
        labels, _ = assign(X, centers, x_sq)  # a refilled centre owns at least its own row now
        centers, _ = _means(X, labels, k)
    return KMeansFit(centers, labels, objective, n_iter)


def best_of(X: torch.Tensor, x_sq: torch.Tensor, starts: Iterable[torch.Tensor], max_iter: int,
            tol: float) -> KMeansFit:
    """Lloyd iterations from each set of starting centres; the fit with the lowest objective (the first on a tie)."""
    best = None
    for centers in starts:
        fit = lloyd(X, x_sq, centers, max_iter, tol)
        if best is None or fit.objective < best.objective:
            best = fit
    return best


def fit_kmeans(X: torch.Tensor, k: int, *, n_init: int = 3, search_rows: int | None = 20_000,
               max_iter: int = MAX_ITER, tol: float = TOL, random_state: int = 0,
               init: torch.Tensor | None = None) -> KMeansFit:
    """K-means on all rows of X (float32, e.g. ``project``'s): ``n_init`` k-means++ restarts, each
    followed by Lloyd iterations on a seeded subset of ``search_rows`` rows; the best (lowest
    objective) is continued on all rows. ``init``: centres to start from instead (a warm start)."""
    x_sq = squared_norms(X)
    if init is not None:
        return lloyd(X, x_sq, init.clone(), max_iter, tol)
    # the restarts need a few rows per cluster, however small a subset was asked for
    rows = subset_rows(len(X), None if search_rows is None else max(search_rows, 4 * k), random_state)
    S, s_sq = (X, x_sq) if rows is None else (X[torch.from_numpy(rows)], x_sq[torch.from_numpy(rows)])
    rng = np.random.default_rng(random_state)
    best = best_of(S, s_sq, (seed_centers(S, s_sq, k, rng) for _ in range(n_init)), max_iter, tol)
    return best if rows is None else lloyd(X, x_sq, best.centers, max_iter, tol)


# -- Lloyd passes over the original rows (refinement in memory, streaming) ----------------------
def lloyd_pass(blocks: Blocks, centers: torch.Tensor, mean: np.ndarray, labels: np.ndarray) -> Pass:
    """Assign every row to its nearest centre (``centers``: float32, centred on ``mean``), updating
    ``labels`` in place, and sum each cluster's rows in float64."""
    k, d = centers.shape
    counts, sums = np.zeros(k), torch.zeros(k, d, dtype=torch.float64)
    objective, changed = 0.0, 0
    for start, block in blocks:
        rows = centred_float32(block, mean)
        new, d2 = assign(rows, centers, squared_norms(rows))
        objective += float(d2.double().sum())
        new_np = new.numpy()
        old = labels[start:start + len(block)]
        changed += int(np.count_nonzero(new_np != old))
        old[:] = new_np
        counts += np.bincount(new_np, minlength=k)
        sums.index_add_(0, new, as_tensor(block))
    return Pass(labels, counts, sums.numpy(), objective / len(labels), changed)


def refine(blocks: Callable[[], Blocks], centers: np.ndarray, mean: np.ndarray, labels: np.ndarray,
           max_passes: int, tol: float) -> Pass:
    """Lloyd passes over all rows (``blocks()`` yields them afresh each pass), from ``centers`` (float64,
    in the rows' coordinates) and the current ``labels`` (-1 for none), until no label changes, the
    objective stalls (``tol``) or ``max_passes``. An empty cluster keeps its centre for the next pass.

    The result's labels are the last assignment and its counts and sums those of these labels, so
    the final geometry can be computed from them exactly (``within_between_from_sums``).
    """
    current = centred_float32(centers, mean)
    previous = math.inf
    for _ in range(max_passes):
        result = lloyd_pass(blocks(), current, mean, labels)
        means = result.sums / np.maximum(result.counts, 1.0)[:, None]
        current = torch.where(torch.from_numpy(result.counts > 0)[:, None], centred_float32(means, mean), current)
        if result.changed == 0 or stalled(previous, result.objective, tol):
            break
        previous = result.objective
    return result
