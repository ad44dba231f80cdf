"""ClusterGeometry (docs/method.md §2-3): T = W + delta, the feasible region, auto-K, collapse floor."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shellvae import ClusterGeometry, EmptyFeasibleRegionWarning, ShellVAEError, SphericalShell
from shellvae.geometry import collapse_floor, largest_eigenvalue, within_between


@settings(max_examples=40, deadline=None)
@given(
    X=arrays(np.float64, st.tuples(st.integers(6, 60), st.integers(1, 6)), elements=st.floats(-100, 100)),
    k=st.integers(2, 5),
    seed=st.integers(0, 10),
)
def test_identity_total_equals_within_plus_between(X, k, seed):
    labels = np.random.default_rng(seed).integers(0, k, len(X))  # any labelling, not only K-means'
    T, W, delta, *_ = within_between(X, labels, k)
    assert abs(T - (W + delta)) <= 1e-10 * max(T, 1e-300) + 1e-12


def test_identity_after_kmeans_on_shell_data(small_gmm):
    Xs = SphericalShell().fit_transform(small_gmm.X_train)
    geo = ClusterGeometry(8).fit(Xs)
    assert abs(geo.T_ - (geo.W_ + geo.delta_collapse_)) <= 1e-10 * geo.T_
    # centres are the means of the final clusters, weights sum to one, mu_bar is the data mean
    np.testing.assert_allclose(geo.centers_[3], Xs[geo.labels_ == 3].mean(0), atol=1e-12)
    assert geo.weights_.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(geo.mu_bar_, Xs.mean(0), atol=1e-15)
    assert geo.feasible_ and geo.W_ < geo.delta_collapse_


def test_constant_output_scores_delta_plus_offset(rng):
    """The theorem: for any constant a, (1/N) sum ||a - mu_c(i)||^2 = delta + ||a - mu_bar||^2 >= delta."""
    X = rng.normal(size=(500, 5)) + 3 * rng.integers(0, 3, (500, 1))
    geo = ClusterGeometry(3).fit(X)
    for a in [geo.mu_bar_, geo.mu_bar_ + 0.3, rng.normal(size=5)]:
        l_clu = np.mean(np.sum((a - geo.centers_[geo.labels_]) ** 2, axis=1))
        assert l_clu == pytest.approx(geo.delta_collapse_ + np.sum((a - geo.mu_bar_) ** 2), rel=1e-12)
    assert collapse_floor(geo.centers_[geo.labels_]) == pytest.approx(geo.delta_collapse_, rel=1e-12)


def test_lambda_max_matches_numpy(rng):
    X = rng.normal(size=(400, 7)) * np.arange(1, 8)
    assert largest_eigenvalue(X) == pytest.approx(np.linalg.eigvalsh(np.cov(X.T, bias=True))[-1], rel=1e-12)


def test_homogeneous_data_has_empty_region_and_warns(rng):
    X = SphericalShell().fit_transform(rng.normal(size=(2000, 20)))
    with pytest.warns(EmptyFeasibleRegionWarning, match="guarantee does not apply"):
        geo = ClusterGeometry(2).fit(X)
    assert not geo.feasible_
    with pytest.raises(ShellVAEError, match="empty"):
        ClusterGeometry(2, on_empty="raise").fit(X)


def test_auto_picks_smallest_k_with_margin(rng):
    X = SphericalShell().fit_transform(rng.normal(size=(1500, 6)))
    geo = ClusterGeometry("auto", auto_margin=0.1).fit(X)
    widths = [row["width"] for row in geo.sweep_]
    assert widths[-1] >= 0.1 and all(w < 0.1 for w in widths[:-1])
    assert geo.n_clusters_ == geo.sweep_[-1]["K"] and geo.feasible_
    # W falls and delta rises with K along the sweep (K-means optimum, allowing restarts' noise)
    Ws = [row["W"] for row in geo.sweep_]
    assert Ws[-1] < Ws[0]


def test_predict_nearest_centre(small_gmm):
    Xs = SphericalShell().fit_transform(small_gmm.X_train)
    geo = ClusterGeometry(8).fit(Xs)
    np.testing.assert_array_equal(geo.predict(Xs), geo.labels_)


@pytest.mark.parametrize("k", [1, 0, 11, "many", 2.5, True])
def test_bad_n_clusters(k, rng):
    with pytest.raises(ShellVAEError, match="n_clusters"):
        ClusterGeometry(k).fit(rng.normal(size=(10, 2)))


def test_seeded_and_deterministic(small_gmm):
    Xs = SphericalShell().fit_transform(small_gmm.X_train)
    a, b = ClusterGeometry(8, random_state=3).fit(Xs), ClusterGeometry(8, random_state=3).fit(Xs)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.W_ == b.W_


def test_auto_sweeps_a_subset_then_fits_all(rng):
    X = SphericalShell().fit_transform(rng.normal(size=(1200, 6)) + 4 * rng.integers(0, 4, (1200, 1)))
    sub = ClusterGeometry("auto", sweep_samples=300).fit(X)
    full = ClusterGeometry("auto", sweep_samples=None).fit(X)
    assert len(sub.labels_) == 1200  # the chosen K is fitted on every sample
    assert sub.n_clusters_ == full.n_clusters_
    assert abs(sub.T_ - (sub.W_ + sub.delta_collapse_)) <= 1e-10 * sub.T_
