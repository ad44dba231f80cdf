"""`diagnose`: the collapse prediction and the K sweep, before any training."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from shellvae import ClusterGeometry, SphericalShell
from shellvae.cli import main
from shellvae.evaluation.diagnose import diagnose
from shellvae.core.autok import AUTO_K_GRID


def test_prediction_flips_at_lambda_max(small_gmm):
    above = diagnose(small_gmm.X_train, sigma2_ratio=2.0, k_grid=(2, 8))
    below = diagnose(small_gmm.X_train, sigma2_ratio=0.5, k_grid=(2, 8))
    assert above.predicted_collapse and above.linear_kl == 0.0 and above.linear_active_units == 0
    assert not below.predicted_collapse and below.linear_kl > 0 and below.linear_active_units >= 1
    assert above.collapse_threshold == pytest.approx(above.lambda_max)
    assert diagnose(small_gmm.X_train, sigma2_ratio=0.75, beta=2.0, k_grid=(8,)).predicted_collapse  # beta sigma^2


def test_sweep_reports_the_region(small_gmm):
    d = diagnose(small_gmm.X_train, k_grid=(2, 8, 16))
    assert [row["K"] for row in d.sweep] == [2, 8, 16]
    for row in d.sweep:
        assert row["feasible"] == (row["W"] < row["delta"])
        assert row["W"] + row["delta"] == pytest.approx(d.T, rel=1e-6)
    assert d.smallest_feasible_k() == 8  # 8 true components: K=2 lumps them, W > delta
    assert "EMPTY" in str(d) and "smallest K with a non-empty region: 8" in str(d)


def test_sweep_is_the_auto_k_search(rng):
    """diagnose's table and n_clusters="auto" come from one search: same subset, same rows of the table."""
    X = (rng.normal(size=(3000, 6)) + 4 * rng.integers(0, 5, (3000, 1))).astype(np.float32)  # as diagnose reads it
    d = diagnose(X, max_samples=800, seed=3)
    geo = ClusterGeometry("auto", sweep_samples=800, random_state=3).fit(SphericalShell().fit_transform(X))
    strip = [{key: row[key] for key in ("K", "W", "delta", "width")} for row in d.sweep]
    assert strip[:len(geo.sweep_)] == geo.sweep_  # auto stops at its K; the table goes on
    assert [row["K"] for row in d.sweep] == [k for k in AUTO_K_GRID if k < 800]  # one grid for both
    assert d.smallest_feasible_k(margin=0.05 - 1e-12) == geo.n_clusters_


def test_subsampling_is_stated(rng):
    X = rng.normal(size=(500, 4)) + 5 * rng.integers(0, 2, (500, 1))
    d = diagnose(X, k_grid=(2,), max_samples=200)
    assert d.n_used == 200 and "subset of 200" in str(d)


def test_cli(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32))
    result = CliRunner().invoke(main, ["diagnose", "--data", str(tmp_path / "x.npy"), "--k-grid", "2,4",
                                       "--out", str(tmp_path / "d.json")])
    assert result.exit_code == 0, result.output
    assert "collapse threshold" in result.output
    assert json.loads((tmp_path / "d.json").read_text())["sweep"][0]["K"] == 2
    bad = CliRunner().invoke(main, ["diagnose", "--k-grid", "two"])
    assert bad.exit_code == 2 and "integers separated by commas" in bad.output
