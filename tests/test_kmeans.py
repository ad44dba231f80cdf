"""shellvae.core.kmeans: the assignment, seeding, Lloyd's fixed point and early stop, warm starts,
the projection, the refinement passes, and the objective against scikit-learn."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans

from shellvae import ClusterGeometry, SphericalShell, make_gmm
from shellvae.core import kmeans as km
from shellvae.core.variances import principal_space, within_between, within_between_from_sums


def blobs(n=600, d=5, k=4, seed=0, spread=0.3):
    """k well-separated Gaussian blobs in d dims (float64), and their true labels."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    return rng.normal(size=(k, d))[truth] * 10 + spread * rng.normal(size=(n, d)), truth


def tensors(X):
    Z = km.centred_float32(X, X.mean(axis=0))
    return Z, km.squared_norms(Z)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 8), k=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_assign_is_the_nearest_centre(n, d, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    C = rng.normal(size=(k, d)).astype(np.float32)
    labels, d2 = km.assign(torch.from_numpy(X), torch.from_numpy(C), km.squared_norms(torch.from_numpy(X)))
    exact = ((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_allclose(d2.numpy(), exact.min(1), rtol=1e-4, atol=1e-4)
    # the chosen centre is the nearest, up to float32 rounding of near-ties
    chosen = exact[np.arange(n), labels.numpy()]
    assert np.all(chosen <= exact.min(1) + 1e-4 * (1 + exact.min(1)))


def test_assign_works_in_blocks(monkeypatch):
    X, _ = blobs(n=1000)
    Z, z_sq = tensors(X)
    C = Z[:7].clone()
    whole = km.assign(Z, C, z_sq)
    monkeypatch.setattr(km, "ASSIGN_ROWS", 64)
    blocked = km.assign(Z, C, z_sq)
    assert torch.equal(whole[0], blocked[0]) and torch.allclose(whole[1], blocked[1])


def test_kmeans_plusplus_picks_distinct_rows_and_continues_from_given_centres():
    X, truth = blobs()
    Z, z_sq = tensors(X)
    seeds = km.kmeans_plusplus(Z, z_sq, 4, np.random.default_rng(0))
    rows = [int(torch.nonzero((Z == c).all(1))[0]) for c in seeds]  # every seed is a row of Z
    assert len(set(truth[rows])) == 4  # D^2 sampling puts one seed in each separated blob
    more = km.kmeans_plusplus(Z, z_sq, 6, np.random.default_rng(1), seeds)
    assert more.shape == (6, 5) and torch.equal(more[:4], seeds)  # the warm start's centres kept first
    again = km.kmeans_plusplus(Z, z_sq, 4, np.random.default_rng(0))
    assert torch.equal(again, seeds)  # seeded


def test_lloyd_ends_at_a_fixed_point_with_falling_objective():
    X, _ = blobs(n=800, k=5, spread=2.0)  # overlapping enough to need several iterations
    Z, z_sq = tensors(X)
    start = km.kmeans_plusplus(Z, z_sq, 5, np.random.default_rng(3))
    objectives = [km.lloyd(Z, z_sq, start.clone(), max_iter=i, tol=0.0).objective for i in range(1, 8)]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(objectives, objectives[1:]))
    fit = km.lloyd(Z, z_sq, start.clone(), max_iter=300, tol=0.0)
    labels, _ = km.assign(Z, fit.centers, z_sq)
    assert torch.equal(labels, fit.labels)  # converged: the labels are the final centres' assignment
    means, _ = km._means(Z, fit.labels, 5)
    torch.testing.assert_close(fit.centers, means)  # and the centres the means of the labels


def test_early_stop_on_the_objective():
    X, _ = blobs(n=2000, k=8, spread=4.0)
    Z, z_sq = tensors(X)
    start = km.kmeans_plusplus(Z, z_sq, 8, np.random.default_rng(0))
    exact = km.lloyd(Z, z_sq, start.clone(), max_iter=300, tol=0.0)
    loose = km.lloyd(Z, z_sq, start.clone(), max_iter=300, tol=1e9)  # any fall counts as too small
    capped = km.lloyd(Z, z_sq, start.clone(), max_iter=2, tol=0.0)
    assert exact.n_iter > 3 and loose.n_iter == 2 and capped.n_iter == 2  # the 2nd iteration is the first compared
    assert exact.objective <= loose.objective


def test_warm_start_from_converged_centres_stops_at_once():
    X, _ = blobs(n=1000, k=4)
    Z, _ = tensors(X)
    cold = km.fit_kmeans(Z, 4, n_init=2, search_rows=300, random_state=0)
    warm = km.fit_kmeans(Z, 4, init=cold.centers)
    assert warm.n_iter == 2 and torch.equal(warm.labels, cold.labels)  # one assignment, one check


def test_fit_kmeans_is_seeded_and_its_restarts_keep_the_best():
    X, _ = blobs(n=1500, k=6, spread=3.0, seed=4)
    Z, _ = tensors(X)
    a = km.fit_kmeans(Z, 6, n_init=3, search_rows=500, random_state=7)
    b = km.fit_kmeans(Z, 6, n_init=3, search_rows=500, random_state=7)
    assert torch.equal(a.labels, b.labels)
    one = km.fit_kmeans(Z, 6, n_init=1, search_rows=None, random_state=7)
    five = km.fit_kmeans(Z, 6, n_init=5, search_rows=None, random_state=7)  # its first seeding is one's
    assert five.objective <= one.objective


def test_empty_clusters_move_to_the_farthest_rows():
    X, _ = blobs(n=300, k=3)
    Z, z_sq = tensors(X)
    start = torch.cat([Z[:3], torch.full((1, Z.shape[1]), 1e4)])  # the 4th centre owns no row
    fit = km.lloyd(Z, z_sq, start, max_iter=50, tol=0.0)
    assert torch.bincount(fit.labels, minlength=4).min() > 0


def test_projection_keeps_distances_in_the_principal_subspace():
    X, _ = blobs(n=400, d=12, k=3)
    mean, lam, axes = principal_space(X, 4)
    assert axes.shape == (12, 4)
    torch.testing.assert_close(axes.T @ axes, torch.eye(4), atol=1e-5, rtol=0)
    Z = km.project([(0, X[:200]), (200, X[200:])], len(X), mean, axes)
    centred = X - mean
    np.testing.assert_allclose(Z.numpy(), centred @ axes.double().numpy(), rtol=1e-4, atol=1e-4)
    assert lam == pytest.approx(np.linalg.eigvalsh(np.cov(X.T, bias=True))[-1], rel=1e-12)
    assert principal_space(X, 12)[2] is None and principal_space(X, None)[2] is None  # nothing to drop
    np.testing.assert_allclose(km.project([(0, X)], len(X), mean, None).numpy(), centred, rtol=1e-6, atol=1e-5)


def test_refine_passes_give_exact_sums_and_the_geometry():
    X, _ = blobs(n=900, d=6, k=5, spread=2.5)
    labels = np.full(len(X), -1, dtype=np.int32)
    blocks = lambda: ((s, X[s:s + 128]) for s in range(0, len(X), 128))  # noqa: E731
    last = km.refine(blocks, X[:5], X.mean(axis=0), labels, max_passes=50, tol=0.0)
    assert last.changed == 0 and last.labels is labels  # converged, labels filled in place
    counts = np.bincount(labels, minlength=5)
    sums = np.zeros((5, 6))
    np.add.at(sums, labels, X)
    np.testing.assert_array_equal(last.counts, counts)
    np.testing.assert_allclose(last.sums, sums, rtol=1e-12, atol=1e-12)
    from_sums = within_between_from_sums(last.counts, last.sums, float((X**2).sum()), len(X))
    direct = within_between(X, labels, 5)
    for a, b in zip(direct[:3], from_sums[:3]):
        assert b == pytest.approx(a, rel=1e-9)


@pytest.mark.filterwarnings("ignore::shellvae.errors.EmptyFeasibleRegionWarning")
@pytest.mark.parametrize("k", [4, 8, 12])
def test_objective_close_to_scikit_learn(k):
    X = SphericalShell().fit_transform(make_gmm(4_000, seed=3).X_train)
    ours = ClusterGeometry(k, random_state=0).fit(X)
    labels = KMeans(k, n_init=3, random_state=0).fit_predict(X)
    sklearn_W = within_between(X, labels, k)[1]
    assert ours.W_ <= 1.03 * sklearn_W


def test_stalled():
    assert km.stalled(1.0, 0.99995, 1e-4) and not km.stalled(1.0, 0.9, 1e-4)
    assert km.stalled(1.0, 1.1, 0.0)  # a rise stops too (float rounding at a fixed point)
    assert km.subset_rows(10, None, 0) is None and km.subset_rows(10, 10, 0) is None
    rows = km.subset_rows(100, 10, 0)
    assert len(rows) == 10 and np.all(np.diff(rows) > 0) and np.array_equal(rows, km.subset_rows(100, 10, 0))
