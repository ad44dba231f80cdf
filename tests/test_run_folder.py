"""Nothing lost, nothing mixed (issue 25): run folders are owned, model files are checked and inert.

- a run writes its manifest (run.json) first; ``--resume`` refuses a folder whose run differs in
  anything but ``--epochs``, naming each difference;
- a folder holding a run is not replaced without ``--overwrite``, and a file the run did not write
  is never replaced; a second run on a folder that a run is writing is refused, the first intact;
- ``summarize``/``diagnose --out`` never replace a model, checkpoint or data file;
- a model file with one flipped byte is refused; a loaded model carries no checkpoint path, so its
  refit writes nothing outside the folder it is given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from shellvae import ShellVAE, ShellVAEError, make_gmm
from shellvae.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:The feasible region is empty")  # K=2 keeps the runs short

FAST = ["--epochs", "1", "--n-clusters", "2", "--latent-dim", "2", "--batch-size", "64", "--quiet"]


def cli(*args, expect: int = 0) -> str:
    result = CliRunner().invoke(main, ["--threads", "1", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == expect, result.output
    return result.output


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def data(tmp_path) -> Path:
    np.save(tmp_path / "ok.npy", make_gmm(300, n_features=6, seed=0).X_train)
    np.save(tmp_path / "other.npy", make_gmm(300, n_features=6, seed=1).X_train)  # the same width, other data
    return tmp_path


def train(data: Path, out: Path, *extra, expect: int = 0) -> str:
    return cli("train", "--data", data / "ok.npy", *FAST, "--out", out, *extra, expect=expect)


# --------------------------------------------------------------------------- manifest and resume
def test_a_run_writes_its_manifest_naming_what_it_is(data):
    train(data, data / "run", "--seed", "5")
    record = json.loads((data / "run" / "run.json").read_text())
    assert record["method"] == "shell" and record["seed"] == 5 and record["params"]["lr"] == 1e-3
    assert record["data_fingerprint"].startswith("sha256:") and record["code_version"]
    assert {"model.pt", "checkpoint.pt", "metrics.json"} <= set(record["files"])


@pytest.mark.parametrize("change, named", [
    (["--method", "vanilla"], "method: 'shell' in the folder's run, 'vanilla' now"),
    (["--data", "{other}"], "the data (fingerprint"),
    (["--lr", "0.01"], "params.lr: 0.001 in the folder's run, 0.01 now"),
    (["--seed", "7"], "seed: 0 in the folder's run, 7 now"),
    (["--sigma2", "0.5"], "params.sigma2"),
])
def test_resume_into_another_run_is_refused_naming_the_differences(data, change, named):
    out = data / "run"
    train(data, out, "--epochs", "2")
    before = snapshot(out)
    change = [str(data / "other.npy") if a == "{other}" else a for a in change]
    output = train(data, out, "--epochs", "3", "--resume", *change, expect=1)
    assert "Error: --resume" in output and named in output
    assert snapshot(out) == before  # nothing written


def test_resume_with_more_epochs_continues_the_same_run(data):
    out = data / "run"
    train(data, out, "--epochs", "2")
    train(data, out, "--epochs", "3", "--resume")
    assert len(ShellVAE.load(out / "model.pt").history_) == 3


def test_resume_of_a_folder_without_manifest_is_refused(data):
    out = data / "run"
    train(data, out, "--epochs", "2")
    (out / "run.json").unlink()  # e.g. a checkpoint that came from elsewhere
    assert "no run.json" in train(data, out, "--epochs", "3", "--resume", expect=1)


# --------------------------------------------------------------------------- overwriting
def test_a_folder_holding_a_run_is_not_replaced_without_overwrite(data):
    out = data / "run"
    train(data, out)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    output = train(data, out, "--method", "vanilla", expect=1)
    assert "holds a 'shell' run" in output and "--overwrite" in output
    assert snapshot(out) == before
    train(data, out, "--method", "vanilla", "--overwrite")
    assert json.loads((out / "metrics.json").read_text())["method"] == "vanilla"
    assert json.loads((out / "run.json").read_text())["method"] == "vanilla"
    assert (out / "notes.txt").read_text() == "mine"  # not the run's file: never touched


def test_a_file_of_the_run_by_name_but_not_by_a_run_is_not_replaced(data):
    out = data / "mine"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": true}')
    assert "metrics.json" in train(data, out, expect=1)
    assert (out / "metrics.json").read_text() == '{"mine": true}'


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes read-only files")
def test_overwrite_refuses_a_read_only_model(data):
    out = data / "run"
    train(data, out)
    (out / "model.pt").chmod(0o444)
    before = snapshot(out)
    assert "read-only" in train(data, out, "--overwrite", expect=1)
    assert snapshot(out) == before


def test_overwrite_checks_read_only_files_before_any_work(data, monkeypatch):
    out = data / "run"
    train(data, out)
    monkeypatch.setattr(os, "access", lambda path, mode: not str(path).endswith("model.pt"))
    before = snapshot(out)
    assert "read-only" in train(data, out, "--overwrite", expect=1)
    assert snapshot(out) == before


def test_train_text_owns_its_folder_as_train_does(tmp_path):
    """train-text (token sequences) writes its manifest first and replaces a run only with --overwrite; it keeps
    no checkpoint, so its refusal offers no --resume."""
    (tmp_path / "t.txt").write_text("\n".join(f"the cat sat on mat {i % 4}" for i in range(40)) + "\n")
    out = tmp_path / "run"
    args = ["train-text", "--data", tmp_path / "t.txt", "--epochs", "1", "--quiet", "--latent-dim", "2",
            "--embed-dim", "8", "--hidden-dim", "8", "--no-language-model", "--out", out]
    cli(*args)
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "train-text" and set(record["files"]) == {"metrics.json", "history.csv", "model.pt"}
    before = snapshot(out)
    output = cli(*args, "--seed", "3", expect=1)
    assert "--overwrite" in output and "--resume" not in output and snapshot(out) == before
    cli(*args, "--seed", "3", "--overwrite")
    assert json.loads((out / "run.json").read_text())["seed"] == 3


def test_a_run_that_fails_before_writing_leaves_no_manifest(data):
    out = data / "run"
    output = train(data, out, "--sigma2", "1e-300", expect=1)  # diverges in the first epoch
    assert "Error:" in output and not (out / "run.json").exists()


# --------------------------------------------------------------------------- concurrent runs
#: a real `shellvae train` that, once its manifest is written, says so and waits for a go
CHILD = """
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from shellvae.cli import run_folder
started, go = Path(sys.argv[1]), Path(sys.argv[2])
original = run_folder.Claim.begin
def begin_then_wait(self, record):
    original(self, record)
    started.write_text("manifest written")
    while not go.exists():
        time.sleep(0.05)
run_folder.Claim.begin = begin_then_wait
from shellvae.cli import main
main(sys.argv[3:])
"""


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_second_run_on_a_folder_being_written_is_refused_and_the_first_is_intact(data):
    out, started, go = data / "run", data / "started", data / "go"
    args = ["--threads", "1", "train", "--data", str(data / "ok.npy"), *FAST, "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-c", CHILD, str(started), str(go), *args],
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.05)
        assert (out / "run.json").exists() and not (out / "model.pt").exists()  # the manifest comes first
        for extra in ([], ["--overwrite"], ["--resume"]):
            output = train(data, out, "--method", "vanilla", *extra, expect=1)
            assert "another shellvae run is writing to this folder" in output
        go.write_text("")
        output, _ = first.communicate(timeout=300)
    finally:
        go.write_text("")
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output
    assert json.loads((out / "metrics.json").read_text())["method"] == "shell"
    assert json.loads((out / "run.json").read_text())["method"] == "shell"
    assert ShellVAE.load(out / "model.pt").method == "shell"


def test_the_lock_is_released_when_the_run_ends(data):
    from shellvae.cli import run_folder

    out = data / "run"
    train(data, out)
    with run_folder.folder_lock(out):  # taken again at once: not left behind by the first run
        pass


# --------------------------------------------------------------------------- single output files
def test_summarize_and_diagnose_never_replace_model_or_data_files(data):
    out = data / "run"
    train(data, out)
    (data / "table.csv").write_text("a,b\n1,2\n")
    before, csv_before = snapshot(out), (data / "table.csv").read_bytes()
    for target in ("model.pt", "checkpoint.pt", "run.json", "history.csv"):
        assert "not replaced" in cli("summarize", out, "--out", out / target, expect=1)
        assert "not replaced" in cli("diagnose", "--data", data / "ok.npy", "--out", out / target, expect=1)
    assert "not replaced" in cli("diagnose", "--data", data / "other.npy", "--out", data / "ok.npy", expect=1)
    assert "not replaced" in cli("diagnose", "--data", data / "ok.npy", "--out", data / "table.csv", expect=1)
    assert snapshot(out) == before and (data / "table.csv").read_bytes() == csv_before
    # their own earlier outputs are replaced as before
    for _ in range(2):
        cli("summarize", out, "--out", data / "summary.md")
        cli("diagnose", "--data", data / "ok.npy", "--k-grid", "2,3", "--out", data / "diagnosis.json")


# --------------------------------------------------------------------------- model files
def flip_one_byte_inside_a_tensor(source: Path, target: Path) -> None:
    blob = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(source, "rb") as f:
        f.seek(record.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
    start = record.header_offset + 30 + int(name_len) + int(extra_len)
    blob[start + record.file_size // 2] ^= 0x01
    target.write_bytes(bytes(blob))


def test_a_model_file_with_one_flipped_byte_is_refused(data):
    train(data, data / "run")
    flip_one_byte_inside_a_tensor(data / "run" / "model.pt", data / "flipped.pt")
    with pytest.raises(ShellVAEError, match="fails its checksum"):
        ShellVAE.load(data / "flipped.pt")
    flip_one_byte_inside_a_tensor(data / "run" / "checkpoint.pt", data / "run" / "checkpoint.pt")
    assert "fails its checksum" in train(data, data / "run", "--epochs", "2", "--resume", expect=1)


def test_a_loaded_model_refits_writing_nothing_outside_the_folder_it_is_given(data, monkeypatch):
    monkeypatch.chdir(data)
    cli("train", "--data", "ok.npy", *FAST, "--epochs", "2", "--out", "rsm")  # a relative checkpoint path
    record = torch.load(data / "rsm" / "model.pt", weights_only=True)
    assert record["params"]["checkpoint"] == str(Path("rsm") / "checkpoint.pt")
    victim = data / "victim.txt"
    victim.write_text("precious")
    record["params"].update(checkpoint=str(victim), resume=True)  # an edited file
    torch.save(record, data / "edited.pt")
    elsewhere = data / "elsewhere"
    (elsewhere / "rsm").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    X = make_gmm(300, n_features=6, seed=2).X_train
    for name in ("rsm/model.pt", "edited.pt"):
        before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
        est = ShellVAE.load(data / name)
        assert est.checkpoint is None and est.resume is False
        est.fit(X)
        assert len(est.history_) == 2  # trained anew, not restored from the old run's checkpoint
        after = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
        assert after == before, "a refit wrote or changed files"
    assert victim.read_text() == "precious"
    out = elsewhere / "given"
    est.set_params(checkpoint=str(out / "ckpt.pt")).fit(X)
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt"]


def test_overwrite_removes_only_files_a_run_writes_even_if_the_manifest_lists_others(data):
    out = data / "run"
    train(data, out)
    (out / "mydata.npy").write_bytes(b"the user's")
    record = json.loads((out / "run.json").read_text())
    record["files"] += ["mydata.npy", "../ok.npy"]  # an edited manifest
    (out / "run.json").write_text(json.dumps(record))
    before = (data / "ok.npy").read_bytes()
    train(data, out, "--overwrite")
    assert (out / "mydata.npy").read_bytes() == b"the user's" and (data / "ok.npy").read_bytes() == before
