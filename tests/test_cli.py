"""The command line: train writes its outputs, demo prints the comparison, errors are clean."""

import json

import numpy as np
from click.testing import CliRunner

from shellvae.cli import DEMO_COLUMNS, main
from shellvae.reporting.tables import markdown_table

REQUIRED_KEYS = {"method", "kl", "active_units", "recon_mse", "feasible_coverage", "norm_satisfaction", "l_clu", "W",
                 "delta", "lambda_max", "sigma2", "certified"}


def test_train_synthetic_writes_outputs(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", "synthetic", "--n-train", "2000", "--n-test", "500",
                                       "--epochs", "2", "--n-clusters", "8", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert REQUIRED_KEYS <= set(metrics)
    assert metrics["n_train"] == 2000 and metrics["n_test"] == 500
    assert metrics["sigma2"] == metrics["lambda_max"] * 2.0
    assert (out / "history.csv").read_text().count("\n") == 3  # header + 2 epochs
    assert (out / "model.pt").exists()


def test_train_on_npy_file_with_auto_k(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 0.3, size=(300, 6)) for c in (-2, 0, 2)]).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "x.npy"), "--method", "vanilla",
                                       "--n-clusters", "auto", "--epochs", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_test"] == 900 and metrics["k_sweep"]


def test_train_memory_maps_an_npy_file(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 0.3, size=(300, 6)) for c in (-2, 0, 2)]).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    args = ["train", "--data", str(tmp_path / "x.npy"), "--n-clusters", "3", "--epochs", "2", "--quiet"]
    a = CliRunner().invoke(main, [*args, "--mmap", "--out", str(tmp_path / "mapped")])
    b = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "read")])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    mapped, read = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("mapped", "read"))
    assert mapped["data_spec"]["mmap"] is True and "memory-mapped" in mapped["data_description"]
    # a contiguous split (last rows held out) instead of a random one: other rows, the same kind of result
    assert mapped["n_train"] == read["n_train"] and mapped["certified"] == read["certified"]
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    bad = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "x.csv"), "--mmap", "--out", str(tmp_path / "z")])
    assert bad.exit_code != 0 and "--mmap memory-maps .npy files" in bad.output


def test_bad_input_gives_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["train", "--n-clusters", "many", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "integer >= 2 or 'auto'" in result.output
    result = CliRunner().invoke(main, ["train", "--sigma2", "-1", "--n-train", "500", "--n-test", "100",
                                       "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2 and "--sigma2: sigma2=-1.0" in result.output and "Traceback" not in result.output


def test_demo_prints_what_it_wrote(tmp_path):
    """The demo's table and verdicts are those of the records it writes (whatever the seed makes of the shell
    VAE in 3 epochs: tests/test_collapse.py checks that outcome on a longer run); vanilla collapses, as theory
    says at sigma^2 = 2 lambda_max, for any seed."""
    result = CliRunner().invoke(main, ["demo", "--epochs", "3", "--n-samples", "3000", "--quiet", "--seed", "1",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for method in ("vanilla", "shell"):
        record = json.loads((tmp_path / method / "metrics.json").read_text())
        row = markdown_table([record], DEMO_COLUMNS).splitlines()[-1]  # the record, as the demo tables it
        assert row in result.output and f"| {method} |" in row
        verdict = "CERTIFIED non-collapsed" if record["certified"] else "NOT certified"
        assert f"{method}: {verdict}" in result.output
    vanilla = json.loads((tmp_path / "vanilla" / "metrics.json").read_text())
    assert vanilla["kl"] < 0.05 and not vanilla["certified"]


def test_summarize_tables_runs(tmp_path):
    runner = CliRunner()
    for method in ("vanilla", "shell"):
        result = runner.invoke(main, ["train", "--method", method, "--n-train", "1500", "--n-test", "300", "--epochs",
                                      "2", "--n-clusters", "8", "--out", str(tmp_path / method), "--quiet"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["summarize", str(tmp_path / "vanilla"), str(tmp_path / "shell" / "metrics.json"),
                                  "--out", str(tmp_path / "table.md")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("| dataset | method |") and len(lines) == 4
    assert "| synthetic | vanilla |" in lines[2] and "| synthetic | shell |" in lines[3]
    assert (tmp_path / "table.md").read_text().strip() == result.output.strip()
    bad = runner.invoke(main, ["summarize", str(tmp_path)])
    assert bad.exit_code == 1 and "no metrics.json" in bad.output
