"""ClusterGeometry (docs/method.md §2-3): T = W + delta, the feasible region, auto-K, collapse floor."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shellvae import ClusterGeometry, EmptyFeasibleRegionWarning, ShellVAEError, SphericalShell
from shellvae.core import kmeans as kmeans_lib
from shellvae.core.autok import AUTO_K_GRID, search_k
from shellvae.core.variances import collapse_floor, largest_eigenvalue, within_between


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
    counts = np.bincount(geo.labels_, minlength=3)
    assert collapse_floor(geo.centers_, counts) == pytest.approx(geo.delta_collapse_, rel=1e-12)


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
    # independently: the returned partition's region is >= 10% of T wide (from its labels, by the
    # definitions), and at every smaller K of the grid scikit-learn's K-means (10 restarts) finds no
    # partition that wide, so no smaller K qualifies
    from sklearn.cluster import KMeans

    mu = X.mean(axis=0)
    own = np.stack([X[geo.labels_ == j].mean(axis=0) for j in range(geo.n_clusters_)])
    T = np.mean(np.sum((X - mu) ** 2, axis=1))
    W = np.mean(np.sum((X - own[geo.labels_]) ** 2, axis=1))
    assert (T - 2 * W) / T >= 0.1 and geo.feasible_  # width = (delta - W) / T with delta = T - W
    for k in (row["K"] for row in geo.sweep_ if row["K"] < geo.n_clusters_):
        labels = KMeans(k, n_init=10, random_state=0).fit(X).labels_
        centres = np.stack([X[labels == j].mean(axis=0) for j in range(k)])
        W_k = np.mean(np.sum((X - centres[labels]) ** 2, axis=1))
        assert (T - 2 * W_k) / T < 0.1, k
    # every sweep row is an exact geometry of one partition of the same data: T = W + delta, the width
    # is (delta - W) / T; and on this seeded run W falls and delta rises with K at every step
    for row in geo.sweep_:
        assert row["W"] + row["delta"] == pytest.approx(geo.T_, rel=1e-9)
        assert row["width"] == pytest.approx((row["delta"] - row["W"]) / geo.T_, rel=1e-9)
    Ws, deltas = [row["W"] for row in geo.sweep_], [row["delta"] for row in geo.sweep_]
    assert all(a > b for a, b in zip(Ws, Ws[1:])) and all(a < b for a, b in zip(deltas, deltas[1:]))


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
    # and the seed is used: on data without clear clusters, other seeds reach other local optima
    blob = SphericalShell().fit_transform(np.random.default_rng(0).normal(size=(1500, 6)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyFeasibleRegionWarning)
        others = {ClusterGeometry(8, random_state=s).fit(blob).W_ for s in (0, 1, 2, 3)}
    assert len(others) == 4


def test_auto_sweeps_a_subset_then_fits_all(rng):
    X = SphericalShell().fit_transform(rng.normal(size=(1200, 6)) + 4 * rng.integers(0, 4, (1200, 1)))
    sub = ClusterGeometry("auto", sweep_samples=300).fit(X)
    full = ClusterGeometry("auto", sweep_samples=None).fit(X)
    assert len(sub.labels_) == 1200  # the chosen K is fitted on every sample
    assert sub.n_clusters_ == full.n_clusters_
    assert abs(sub.T_ - (sub.W_ + sub.delta_collapse_)) <= 1e-10 * sub.T_


@settings(max_examples=25, deadline=None)
@given(
    X=arrays(np.float64, st.tuples(st.integers(8, 80), st.integers(1, 5)), elements=st.floats(-50, 50), unique=True),
    k=st.integers(2, 6),
    seed=st.integers(0, 5),
)
def test_fit_is_exact_for_its_own_labels(X, k, seed):
    """Whatever partition the fast K-means finds, T, W, delta, centres and weights are its exact geometry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyFeasibleRegionWarning)
        geo = ClusterGeometry(k, random_state=seed).fit(X)
    T, W, delta, centers, weights, mu_bar = within_between(X, geo.labels_, k)
    assert geo.T_ == pytest.approx(T, rel=1e-12, abs=1e-12) and geo.W_ == pytest.approx(W, rel=1e-12, abs=1e-12)
    assert abs(geo.T_ - (geo.W_ + geo.delta_collapse_)) <= 1e-10 * max(geo.T_, 1e-300) + 1e-12
    np.testing.assert_allclose(geo.centers_, centers, rtol=1e-12, atol=1e-12)
    assert set(np.unique(geo.labels_)) <= set(range(k)) and geo.weights_.sum() == pytest.approx(1.0)


def test_fit_reaches_a_lloyd_fixed_point(small_gmm):
    """On separated clusters the refinement ends where no label changes: each row's nearest centre is its own."""
    Xs = SphericalShell().fit_transform(small_gmm.X_train)
    geo = ClusterGeometry(8, search_dims=4).fit(Xs)  # a projection much narrower than the 32 features
    np.testing.assert_array_equal(geo.predict(Xs), geo.labels_)


def test_projection_does_not_cost_objective(small_gmm):
    Xs = SphericalShell().fit_transform(small_gmm.X_train)
    projected, full = ClusterGeometry(8, search_dims=8).fit(Xs), ClusterGeometry(8, search_dims=None).fit(Xs)
    assert projected.W_ <= 1.01 * full.W_


def test_auto_is_deterministic_and_its_sweep_is_search_k(rng):
    X = SphericalShell().fit_transform(rng.normal(size=(900, 6)) + 3 * rng.integers(0, 5, (900, 1)))
    a = ClusterGeometry("auto", random_state=4).fit(X)
    b = ClusterGeometry("auto", random_state=4).fit(X)
    assert a.sweep_ == b.sweep_ and np.array_equal(a.labels_, b.labels_)
    search = search_k(X, margin=0.05, random_state=4)
    assert search.rows == a.sweep_ and search.met
    assert [row["K"] for row in a.sweep_] == list(AUTO_K_GRID[:len(a.sweep_)])
    table = search_k(X, random_state=4)  # no margin: the whole grid (what diagnose prints), same prefix
    assert table.rows[:len(a.sweep_)] == a.sweep_ and len(table.rows) == len([k for k in AUTO_K_GRID if k < 900])


def test_auto_refits_the_chosen_k_on_all_rows_from_its_subset_centres(rng, monkeypatch):
    X = SphericalShell().fit_transform(rng.normal(size=(3000, 6)) + 4 * rng.integers(0, 4, (3000, 1)))
    starts = []
    fit_kmeans = kmeans_lib.fit_kmeans
    monkeypatch.setattr(kmeans_lib, "fit_kmeans",
                        lambda Z, k, **kw: starts.append(kw["init"]) or fit_kmeans(Z, k, **kw))
    geo = ClusterGeometry("auto", sweep_samples=500).fit(X)
    search = search_k(X[np.sort(np.random.default_rng(0).permutation(3000)[:500])], margin=0.05)
    assert geo.sweep_ == search.rows and geo.n_clusters_ == search.geometry["K"] and len(geo.labels_) == 3000
    # one fit on all rows, warm-started from the subset clusters' means (6 features: no projection, only centring)
    assert len(starts) == 1
    np.testing.assert_allclose(starts[0].numpy(), search.geometry["centers"] - X.mean(axis=0), atol=1e-6)


@pytest.mark.filterwarnings("ignore:The feasible region is empty")
def test_auto_without_a_wide_enough_region_warns_and_keeps_the_last_k(rng):
    X = SphericalShell().fit_transform(rng.normal(size=(400, 8)))
    with pytest.warns(EmptyFeasibleRegionWarning, match="no K up to 4"):
        geo = ClusterGeometry("auto", k_grid=(2, 3, 4), auto_margin=0.9).fit(X)
    assert geo.n_clusters_ == 4 and [row["K"] for row in geo.sweep_] == [2, 3, 4]


@pytest.mark.parametrize("param, value, message", [
    ("n_init", 0, "n_init=0: must be a positive integer"),
    ("max_iter", 0, "max_iter=0: must be a positive integer"),
    ("tol", -1e-3, "tol=-0.001: must be a finite number >= 0"),
    ("tol", float("nan"), "tol=nan"),
    ("search_dims", 0, "search_dims=0: must be an integer >= 1"),
    ("sweep_samples", 2, "sweep_samples=2: must be an integer >= 3"),
    ("random_state", "seed", "random_state='seed': give an integer seed"),
    ("k_grid", (2, 1), r"k_grid=\[2, 1\]: give integers >= 2 \(bad: \[1\]\)"),
])
def test_bad_kmeans_parameters(param, value, message, rng):
    n_clusters = "auto" if param == "k_grid" else 3
    with pytest.raises(ShellVAEError, match=message):
        ClusterGeometry(n_clusters, **{param: value}).fit(rng.normal(size=(50, 3)))


@pytest.mark.filterwarnings("ignore::shellvae.errors.EmptyFeasibleRegionWarning")
def test_state_dict_keeps_the_kmeans_settings(small_gmm):
    Xs = SphericalShell().fit_transform(small_gmm.X_train[:1000])
    settings = dict(auto_margin=0.1, k_grid=[2, 4, 8], sweep_samples=500, on_empty="raise", kmeans="full",
                    n_init=2, random_state=5, max_iter=50, tol=1e-3, search_dims=8, chunk_rows=256,
                    stream_init_samples=300, stream_passes=3)
    assert set(settings) | {"n_clusters"} == set(ClusterGeometry().get_params())  # every setting is tried
    geo = ClusterGeometry(8, **settings).fit(Xs)  # (feasible at K = 8)
    back = ClusterGeometry.from_state_dict(geo.state_dict())
    assert back.get_params() == geo.get_params() == {"n_clusters": 8, **settings}
    np.testing.assert_array_equal(back.labels_, geo.labels_)


def test_minibatch_option_still_gives_an_exact_geometry(small_gmm):
    Xs = SphericalShell().fit_transform(small_gmm.X_train)
    geo = ClusterGeometry(8, kmeans="minibatch").fit(Xs)
    T, W, delta, *_ = within_between(Xs, geo.labels_, 8)
    assert geo.W_ == pytest.approx(W, rel=1e-12) and abs(geo.T_ - geo.W_ - geo.delta_collapse_) <= 1e-10 * geo.T_
