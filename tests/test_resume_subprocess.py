"""Interrupted runs and determinism, across real processes.

A ``shellvae train`` process is killed hard (SIGKILL: no cleanup, no ``finally``) right after
its epoch-2 checkpoint is written; ``shellvae train ... --resume`` must then reach bit-identical
parameters, metrics and history to an uninterrupted run in another process. Two uninterrupted
runs with the same seed (one in a subprocess, one here) must write identical metrics.json and
history.csv (timings aside). Only the runs that must be separate processes are (importing torch
costs seconds): the killed run and the reference; the resume and the second run use CliRunner.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from shellvae import ShellVAE

from shellvae.base import storage
from shellvae.cli import main

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

ARGS = ["train", "--data", "synthetic", "--n-train", "1500", "--n-test", "300", "--epochs", "4", "--n-clusters", "8",
        "--method", "shell", "--seed", "3", "--quiet"]
KILL_AFTER = 2  # checkpoints written before the process dies

#: runs the CLI with shellvae.training.checkpoint.save wrapped: after the KILL_AFTER-th checkpoint, SIGKILL itself
CHILD = f"""
import os, signal, sys
import torch
torch.set_num_threads(1)
import shellvae.training.checkpoint as checkpoint
original, calls = checkpoint.save, []
def save_then_die(*args, **kwargs):
    original(*args, **kwargs)
    calls.append(1)
    if len(calls) == {KILL_AFTER}:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save = save_then_die
from shellvae.cli import main
main(sys.argv[1:])
"""

TIMING = ("fit_seconds", "seconds_per_epoch", "train_time_s", "eval_time_s")


def start(*args: str) -> subprocess.Popen:
    """A fresh Python process on one thread (as the tests in this process), so runs compare bit for bit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(proc: subprocess.Popen, expect: int = 0) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == expect, f"exit {proc.returncode}, expected {expect}:\n{out}"
    return out


def metrics(folder: Path) -> dict:
    return {k: v for k, v in json.loads((folder / "metrics.json").read_text()).items() if k not in TIMING}


def history(folder: Path) -> list[dict]:
    with open(folder / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


def test_killed_run_resumes_to_the_uninterrupted_result_and_runs_are_deterministic(tmp_path):
    a, b, killed = tmp_path / "a", tmp_path / "b", tmp_path / "killed"
    reference = start("-m", "shellvae", *ARGS, "--out", str(a))
    doomed = start("-c", CHILD, *ARGS, "--out", str(killed))
    cli(*ARGS, "--out", str(b))  # meanwhile, the second uninterrupted run
    finish(reference)
    finish(doomed, expect=-signal.SIGKILL)

    # the killed run left its manifest and a complete epoch-2 checkpoint, nothing else: no results, no temp files
    assert sorted(p.name for p in killed.iterdir()) == ["checkpoint.pt", "run.json"]
    assert storage.load(killed / "checkpoint.pt", kind="checkpoint")["epoch"] == KILL_AFTER

    cli(*ARGS, "--out", str(killed), "--resume")
    resumed, reference = ShellVAE.load(killed / "model.pt"), ShellVAE.load(a / "model.pt")
    ref_state = reference.model_.state_dict()
    for name, tensor in resumed.model_.state_dict().items():
        assert torch.equal(tensor, ref_state[name]), f"{name} differs after resume"
    assert metrics(killed) == metrics(a) and history(killed) == history(a)
    assert len(history(killed)) == 4

    # determinism: the same seed, two processes, identical results (timings aside)
    assert metrics(a) == metrics(b) and history(a) == history(b)
    b_state = ShellVAE.load(b / "model.pt").model_.state_dict()
    assert all(torch.equal(t, b_state[k]) for k, t in ref_state.items())
