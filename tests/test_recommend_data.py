"""`shellvae.recommend` / `shellvae recommend` on a user's own array, with the local executor: the
outputs, resuming from stored cells, the data in the cell key, and bad inputs refused with the fix.
(The Ray executor: tests/test_ray_executor.py.)"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import shellvae
from shellvae import ShellVAE
from shellvae.cli import main
from shellvae.errors import DataError, ShellVAEError
from shellvae.experiments.recommend_data import recommend

#: a tiny grid: seconds, numbers meaningless
TINY = {"methods": ["vanilla", "shell"], "seeds": 2, "epochs": 2, "latent_dim": 2, "encoder_hidden": (16,),
        "decoder_hidden": (16,), "batch_size": 64, "progress": False}


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 4, size=(3, 6))
    y = rng.integers(0, 3, size=240)
    return (centers[y] + rng.normal(size=(240, 6))).astype(np.float32), y


def count_fits(monkeypatch) -> list:
    """ShellVAE.fit, counting its calls (the local executor with jobs=1 trains in this process)."""
    calls, fit = [], ShellVAE.fit

    def counted(self, *args, **kwargs):
        calls.append(self.method)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(ShellVAE, "fit", counted)
    return calls


def test_recommend_writes_the_ranked_table_and_resumes_from_stored_cells(blobs, tmp_path, monkeypatch):
    X, y = blobs
    calls = count_fits(monkeypatch)
    result = shellvae.recommend(X, y, out=tmp_path, command="shellvae recommend ...", **TINY)
    assert len(calls) == 4 and not result.failed
    assert {row["method"] for _, row in result.ranking} == {"vanilla", "shell"}
    md = (tmp_path / "recommend.md").read_text()
    assert "shellvae recommend ..." in md and "**Recommendation.**" in md and result.sentence in md
    verdict = json.loads((tmp_path / "recommend.json").read_text())
    assert verdict["recommendation"] == result.sentence and verdict["seeds"] == 2
    csv = (tmp_path / "recommend.csv").read_text().splitlines()
    assert csv[0].startswith("rank,method,n_seeds,nll_iw_mean") and len(csv) == 3
    assert len(list((tmp_path / "cells").glob("*.json"))) == 4
    again = recommend(X, y, out=tmp_path, **TINY)  # every cell stored: nothing trains
    assert len(calls) == 4 and again.verdict["ranking"] == result.verdict["ranking"]
    more = recommend(X, y, out=tmp_path, **{**TINY, "seeds": 3})  # one more seed: only its cells train
    assert len(calls) == 6 and len(more.records) == 6


def test_the_data_is_part_of_the_cell_key(blobs, tmp_path, monkeypatch):
    X, y = blobs
    calls = count_fits(monkeypatch)
    recommend(X, y, out=tmp_path, **{**TINY, "methods": ["vanilla"], "seeds": 1})
    recommend(X, y, out=tmp_path, **{**TINY, "methods": ["vanilla"], "seeds": 1})
    assert len(calls) == 1
    changed = X.copy()
    changed[0, 0] += 1.0  # one value differs: another data set, trained again
    recommend(changed, y, out=tmp_path, **{**TINY, "methods": ["vanilla"], "seeds": 1})
    assert len(calls) == 2 and len(list((tmp_path / "cells").glob("*.json"))) == 2


def test_without_out_nothing_is_kept(blobs):
    X, _ = blobs
    result = recommend(X, **{**TINY, "methods": ["vanilla"], "seeds": 1})
    assert result.files == [] and len(result.records) == 1


@pytest.mark.parametrize("kwargs, error, words", [
    ({"methods": ["vanilla", "nosuch"]}, ShellVAEError, "unknown method 'nosuch'"),
    ({"methods": []}, ShellVAEError, "at least one"),
    ({"seeds": 0}, ShellVAEError, "seeds=0"),
    ({"executor": "dask"}, ShellVAEError, "unknown executor 'dask'"),
    ({"address": "auto"}, ShellVAEError, "executor='ray'"),
    ({"y": np.zeros(5)}, DataError, "labels have 5 entries but X has 240 rows"),
    ({"y": np.full(240, 0.5)}, DataError, "integer class ids"),
])
def test_bad_input_is_refused_with_the_fix(blobs, kwargs, error, words, monkeypatch):
    X, y = blobs
    count_fits(monkeypatch)
    args = {**TINY, "y": y, **kwargs}
    with pytest.raises(error, match=words.replace("(", r"\(")):
        recommend(X, **args)


@pytest.mark.parametrize("X, words", [(np.zeros(20), "expected 2 dimensions"), (np.zeros((5, 3)), "at least 10"),
                                      (np.full((20, 3), np.nan), "NaN")])
def test_bad_arrays_are_refused(X, words):
    with pytest.raises(DataError, match=words):
        recommend(X, **TINY)


def test_without_ray_the_ray_executor_names_the_install_line(monkeypatch, blobs):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    with pytest.raises(ShellVAEError, match=r'pip install "shellvae\[ray\]"'):
        recommend(blobs[0], executor="ray", **TINY)
    result = CliRunner().invoke(main, ["recommend", "--data", "synthetic", "--executor", "ray", "--out", "x"])
    assert result.exit_code == 1 and 'pip install "shellvae[ray]"' in result.output
    result = CliRunner().invoke(main, ["reproduce", "table1", "--executor", "ray", "--out", "x"])
    assert result.exit_code == 1 and 'pip install "shellvae[ray]"' in result.output


def test_the_command_line_end_to_end_and_its_bad_inputs(blobs, tmp_path):
    X, y = blobs
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.savetxt(tmp_path / "y.csv", y[:-1], fmt="%d")
    out = tmp_path / "out"
    base = ["recommend", "--data", str(tmp_path / "X.npy"), "--methods", "vanilla,shell", "--seeds", "2", "--epochs",
            "1", "--quiet"]
    result = CliRunner().invoke(main, [*base, "--labels", str(tmp_path / "y.npy"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Recommendation." in result.output and (out / "recommend.csv").is_file()
    assert "--labels" in (out / "recommend.md").read_text()
    for args, words in [
        (["--labels", str(tmp_path / "y.csv")], "239"),  # one label short
        (["--methods", "vanilla,nosuch"], "unknown method 'nosuch'"),
        (["--address", "auto"], "--executor ray"),
        (["--executor", "spark"], "--executor"),
    ]:
        bad = CliRunner().invoke(main, [*base, *args, "--out", str(tmp_path / "bad")])
        errors = [line for line in bad.output.splitlines() if line.startswith("Error")]
        assert bad.exit_code in (1, 2) and len(errors) == 1 and words in bad.output, bad.output
        assert not (tmp_path / "bad").exists()
    missing = CliRunner().invoke(main, ["recommend", "--data", str(tmp_path / "nope.npy"), "--out", str(out)])
    assert missing.exit_code == 1 and "no such file" in missing.output
