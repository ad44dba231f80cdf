"""Data larger than memory: chunked checks and shell fit, streaming K-means, ``fit(geometry=...)``.

A memory-mapped ``.npy`` must go through ``ShellVAE.fit`` without any step holding the whole
array: every read of its rows is counted here (a spy on the shell transform, which every read
of shell coordinates goes through) and must stay within the chunk sizes asked for.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from shellvae import ClusterGeometry, ShellVAE, SphericalShell, make_gmm
from shellvae.base.validation import check_array
from shellvae.errors import DataError, ShellVAEError
from shellvae.core.variances import largest_eigenvalue, within_between, within_between_from_sums
from shellvae.core.shell import ShellView
from shellvae.training.batches import MemmapTrainData

STREAM = {"kmeans": "streaming", "chunk_rows": 256, "stream_init_samples": 500}


@pytest.fixture(scope="module")
def gmm():
    return make_gmm(2_500, seed=5)  # 2,000 train rows x 32, 8 well-separated clusters


@pytest.fixture
def mapped(gmm, tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, gmm.X_train)
    return np.load(path, mmap_mode="r")


class CountingShell(SphericalShell):
    """A shell whose transform records how many rows each call reads."""

    reads: list

    def transform(self, X):
        self.reads.append(len(X))
        return super().transform(X)


def counting(shell: SphericalShell) -> CountingShell:
    spy = CountingShell.from_state_dict(shell.state_dict())
    spy.__class__, spy.reads = CountingShell, []
    return spy


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 60), d=st.integers(1, 6), k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_sums_give_the_same_geometry_as_the_rows(n, d, k, seed):
    """T, W, delta, centres from per-cluster sums equal the direct formulas, for any labelling."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10) + rng.normal(size=d)
    labels = rng.integers(0, k, n)
    sums = np.zeros((k, d))
    np.add.at(sums, labels, X)
    direct = within_between(X, labels, k)
    streamed = within_between_from_sums(np.bincount(labels, minlength=k), sums, float((X**2).sum()), n)
    for a, b in zip(direct[:3], streamed[:3]):  # T, W, delta
        assert b == pytest.approx(a, rel=1e-9, abs=1e-9 * direct[0])
    for a, b in zip(direct[3:], streamed[3:]):  # centres, weights, mu_bar
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_memmap_is_checked_in_chunks_and_stays_mapped(gmm, tmp_path):
    X = gmm.X_train.copy()
    np.save(tmp_path / "ok.npy", X)
    ok = np.load(tmp_path / "ok.npy", mmap_mode="r")
    assert check_array(ok, dtype=None) is ok  # not converted, not loaded
    X[1_717, 3] = np.inf
    np.save(tmp_path / "bad.npy", X)
    with pytest.raises(DataError, match="row 1717, column 3"):
        check_array(np.load(tmp_path / "bad.npy", mmap_mode="r"), dtype=None)
    np.save(tmp_path / "flat.npy", np.ones((100, 4), dtype=np.float32))
    with pytest.raises(DataError, match="constant"):
        check_array(np.load(tmp_path / "flat.npy", mmap_mode="r"), dtype=None, allow_constant=False)


def test_shell_fit_is_the_same_from_a_memmap_and_from_memory(gmm, mapped):
    for radius in ("minmax", "rank"):
        a, b = SphericalShell(radius=radius).fit(gmm.X_train), SphericalShell(radius=radius).fit(mapped)
        assert np.array_equal(a.mean_, b.mean_) and a.norm_min_ == b.norm_min_ and a.norm_max_ == b.norm_max_
        view = ShellView(mapped, b)
        assert view.shape == gmm.X_train.shape and len(view) == len(gmm.X_train)
        np.testing.assert_array_equal(np.asarray(view), a.transform(gmm.X_train))
        idx = np.array([1_999, 3, 1_000, 3])
        np.testing.assert_array_equal(view.take(idx), a.transform(gmm.X_train[idx]))  # any order, repeats


def test_streaming_kmeans_matches_in_memory_kmeans_reading_chunks_only(gmm, mapped):
    shell = SphericalShell().fit(mapped)
    spy = counting(shell)
    streamed = ClusterGeometry(8, **STREAM).fit(ShellView(mapped, spy))
    assert max(spy.reads) <= 500 and sum(spy.reads) > 3 * len(mapped)  # chunks and the init subset, many passes
    X_shell = shell.transform(gmm.X_train)
    full = ClusterGeometry(8).fit(X_shell)
    # well-separated clusters: the same partition, so the same geometry
    assert adjusted_rand_score(full.labels_, streamed.labels_) == 1.0
    assert streamed.W_ == pytest.approx(full.W_, rel=1e-9)
    assert streamed.delta_collapse_ == pytest.approx(full.delta_collapse_, rel=1e-9)
    assert streamed.lambda_max_ == pytest.approx(largest_eigenvalue(X_shell), rel=1e-9)
    # its own labels: T = W + delta, centres the means of the clusters
    T, W, delta, centers, _, mu_bar = within_between(X_shell, streamed.labels_, 8)
    assert streamed.T_ == pytest.approx(T, rel=1e-12) and streamed.W_ == pytest.approx(W, rel=1e-9)
    assert abs(streamed.T_ - streamed.W_ - streamed.delta_collapse_) <= 1e-12
    np.testing.assert_allclose(streamed.centers_, centers, atol=1e-12)
    np.testing.assert_allclose(streamed.mu_bar_, mu_bar, atol=1e-15)


def test_streaming_auto_k_sweeps_a_subset_then_fits_all(gmm, mapped):
    shell = SphericalShell().fit(mapped)
    geo = ClusterGeometry("auto", sweep_samples=600, **STREAM).fit(ShellView(mapped, shell))
    assert geo.sweep_ and geo.n_clusters_ == geo.sweep_[-1]["K"] and len(geo.labels_) == len(mapped)
    assert (geo.delta_collapse_ - geo.W_) / geo.T_ > 0  # a region that exists, on all rows


def test_streaming_counts_distinct_rows(tmp_path):
    X = np.repeat(np.eye(3), 50, axis=0)  # 150 rows, 3 distinct
    np.save(tmp_path / "rep.npy", X)
    view = np.load(tmp_path / "rep.npy", mmap_mode="r")
    with pytest.raises(DataError, match="only 3 distinct row"):
        ClusterGeometry(4, **STREAM).fit(view)


def test_estimator_fits_a_memmap_without_loading_it(gmm, mapped, monkeypatch):
    """The whole fit (checks, shell, streaming K-means, training) on a memmap reads at most 500 rows at a time."""
    from shellvae.estimators import shell_vae as estimator  # its ShellView is spied on

    reads: list[int] = []
    original = estimator.ShellView

    def spying_view(source, shell, rows=None):
        spy = counting(shell)
        spy.reads = reads
        return original(source, spy, rows)

    monkeypatch.setattr(estimator, "ShellView", spying_view)
    monkeypatch.setattr("shellvae.core.region.ShellView", spying_view)
    monkeypatch.setattr("shellvae.training.batches.ShellView", spying_view)
    build = MemmapTrainData.build.__func__
    monkeypatch.setattr(MemmapTrainData, "build", classmethod(lambda cls, *a, **k: build(cls, *a, **k, read_rows=256)))
    params = {"n_clusters": 8, "epochs": 2, "batch_size": 128, "random_state": 0}
    streamed = ShellVAE("shell", **params).fit(mapped, X_val=gmm.X_test, geometry=ClusterGeometry(8, **STREAM))
    assert reads and max(reads) <= 500
    in_memory = ShellVAE("shell", **params).fit(gmm.X_train, X_val=gmm.X_test)
    assert streamed.W_ == pytest.approx(in_memory.W_, rel=1e-9)  # the same clusters (see above)
    assert streamed.certify(gmm.X_test).certified == in_memory.certify(gmm.X_test).certified


def test_fit_reuses_a_fitted_geometry_and_refuses_a_foreign_one(gmm):
    X = gmm.X_train
    geometry = ClusterGeometry(8).fit(SphericalShell().fit_transform(X))
    est = ShellVAE("vanilla", n_clusters=8, epochs=1).fit(X, geometry=geometry)
    assert est.geometry_ is geometry  # used as it is: no second K-means
    with pytest.raises(ShellVAEError, match="row for row"):
        ShellVAE("vanilla", n_clusters=8, epochs=1).fit(X[:1_000], geometry=geometry)
    with pytest.raises(ShellVAEError, match="n_clusters=8 but this model has n_clusters='auto'"):
        ShellVAE("vanilla", n_clusters="auto", epochs=1).fit(X, geometry=ClusterGeometry(8))
    with pytest.raises(ShellVAEError, match="give a ClusterGeometry"):
        ShellVAE("vanilla", n_clusters=8, epochs=1).fit(X, geometry="kmeans")


def test_evaluation_is_batched_and_does_not_depend_on_the_batch_size(gmm, mapped, tmp_path):
    """evaluate() holds one batch of rows (and the (N, d) latents): a memory map is read batch by
    batch, and every metric equals the one-batch result to float rounding, but the importance-weighted
    bounds, whose Monte Carlo draws are made batch by batch."""
    from shellvae.evaluation.metrics import evaluate

    est = ShellVAE("shell", n_clusters=8, epochs=2, random_state=0).fit(gmm.X_train)
    np.save(tmp_path / "test.npy", gmm.X_test)
    test_map = np.load(tmp_path / "test.npy", mmap_mode="r")
    whole = est.evaluate(gmm.X_test)
    X_shell = est.shell_.transform(gmm.X_test)
    spy = counting(est.shell_)
    small = evaluate(est.model_, ShellView(test_map, spy), est.region_, sigma2=est.sigma2_, iw_samples=2,
                     batch_size=64)
    assert max(spy.reads) == 64 and sum(spy.reads) == 2 * len(gmm.X_test)  # two passes, 64 rows at a time
    monte_carlo = {"nll_iw", "nll_iw_data", "outside_norm_range"}  # (the last needs data-space rows)
    for metrics in (small, evaluate(est.model_, X_shell, est.region_, sigma2=est.sigma2_, iw_samples=2, batch_size=7)):
        for key, value in whole.items():
            if value is not None and key not in monte_carlo:
                assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    mapped_metrics = est.evaluate(test_map)  # the estimator maps it through a ShellView
    # metrics that do not apply are None; pytest >= 9.2's approx refuses None inside a dict, so compare them apart
    assert {k for k, v in mapped_metrics.items() if v is None} == {k for k, v in whole.items() if v is None}
    assert {k: v for k, v in mapped_metrics.items() if v is not None} == pytest.approx(
        {k: v for k, v in whole.items() if v is not None}, rel=1e-6
    )
    np.testing.assert_allclose(est.transform(test_map), est.transform(gmm.X_test), rtol=1e-6, atol=1e-6)
