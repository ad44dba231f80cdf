"""Choosing K: one search along a grid of K, shared by ``n_clusters="auto"`` and ``diagnose``.

On a seeded subset of rows, one chain of K-means fits along ``AUTO_K_GRID``, each the best of a
warm start from the previous K's centres and ``n_init`` fresh restarts, stopping at the first K
whose feasible region is at least ``margin`` T wide (docs/method.md §2, beyond the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shellvae.core import kmeans as kmeans_lib
from shellvae.errors import ShellVAEError
from shellvae.core.variances import _blocks, principal_space, within_between

#: K values of the auto-K search, for ``n_clusters="auto"`` and ``diagnose`` alike (roughly x1.5
#: steps: few fits, fine enough near small K)
AUTO_K_GRID = (2, 3, 4, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


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
    its 8 components, the region came out up to 0.075 T narrower than with restarts.) T, W and
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
