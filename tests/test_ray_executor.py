"""The Ray executor on a local 2-CPU Ray instance: the same cell results as the local executor, a
killed worker's cell retried, a cell failing twice reported failed while the others come back.
Skipped where Ray is not installed (`pip install "shellvae[ray]"`)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from shellvae.base.storage import data_fingerprint
from shellvae.experiments.cells import cell_path, load_cell, run_cell, run_cells
from shellvae.experiments.executors import LocalExecutor, RayExecutor, data_id
from shellvae.experiments.recommend_data import make_cells, recommend, split

TINY = {"methods": ["vanilla", "shell"], "seeds": 2, "epochs": 2, "latent_dim": 2, "encoder_hidden": (16,),
        "decoder_hidden": (16,), "batch_size": 64, "progress": False}
#: what differs between two runs of the same cell: timings
TIMING = {"fit_seconds", "seconds_per_epoch"}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module: 2 CPUs, no dashboard; shut down after."""
    # the cell functions below travel by value: Ray's workers need not import this test module
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 4, size=(3, 6))
    y = rng.integers(0, 3, size=240)
    return (centers[y] + rng.normal(size=(240, 6))).astype(np.float32), y


def untimed(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in TIMING}
    out["history"] = [{k: v for k, v in row.items() if not k.endswith("_time_s")} for row in record["history"]]
    return out


def test_ray_gives_the_local_executors_cell_results(local_ray, blobs, tmp_path):
    X, y = blobs
    local = recommend(X, y, out=tmp_path / "local", executor="local", **TINY)
    on_ray = recommend(X, y, out=tmp_path / "ray", executor="ray", **TINY)  # Ray is up: it joins it
    assert not on_ray.failed and len(on_ray.records) == 4
    for a, b in zip(local.records, on_ray.records):
        assert a["key"] == b["key"]
        assert untimed(a) == untimed(b)  # bit-identical: every number, the history, the certificates
    assert on_ray.verdict["ranking"] == local.verdict["ranking"] and on_ray.sentence == local.sentence
    # only the driver wrote files: the cells, no geometry or checkpoint from a worker
    assert len(list((tmp_path / "ray" / "cells").glob("*.json"))) == 4
    assert not (tmp_path / "ray" / "geometries").exists()


def grid(X, y, methods=("vanilla", "shell"), seeds=1):
    data = split(X, y, "blobs")
    cells = make_cells(data, data_fingerprint(X, y), list(methods), seeds, epochs=1, sigma2_ratio=2.0, beta=1.0,
                       condition="test", latent_dim=2, encoder_hidden=(16,), decoder_hidden=(16,), batch_size=64)
    return cells, {data_id(cells[0]): data}


def crash(markers: str, crash_times: int, method: str, cell, out, data):
    """``run_cell``, but the worker running ``method``'s cell dies (os._exit: no exception, no cleanup)
    on its first ``crash_times`` attempts; each attempt leaves a marker file."""
    if cell.method == method:
        attempt = len(list(Path(markers).glob(f"{cell.key}.*"))) + 1
        (Path(markers) / f"{cell.key}.{attempt}").touch()
        if attempt <= crash_times:
            os._exit(1)
    return run_cell(cell, out, data)


def test_a_killed_workers_cell_is_retried(local_ray, blobs, tmp_path):
    cells, data = grid(*blobs)
    fn = functools.partial(crash, str(tmp_path), 1, "vanilla")
    records = run_cells(cells, tmp_path / "out", executor=RayExecutor(), data=data, fn=fn, progress=False)
    assert [r["status"] for r in records] == ["ok", "ok"]
    vanilla = next(c for c in cells if c.method == "vanilla")
    assert len(list(tmp_path.glob(f"{vanilla.key}.*"))) == 2  # died once, succeeded on the retry
    reference = run_cell(vanilla, None, data[data_id(vanilla)])
    assert untimed(load_cell(tmp_path / "out", vanilla)) == untimed(reference)


def test_a_cell_failing_twice_is_reported_and_the_others_come_back(local_ray, blobs, tmp_path):
    cells, data = grid(*blobs)
    fn = functools.partial(crash, str(tmp_path), 2, "vanilla")
    records = run_cells(cells, tmp_path / "out", executor=RayExecutor(), data=data, fn=fn, progress=False)
    by_method = {r["cell"]["method"]: r for r in records}
    assert by_method["vanilla"]["status"] == "failed"
    assert "WorkerCrashedError" in by_method["vanilla"]["error"]  # the worker died: Ray's error, named
    assert by_method["shell"]["status"] == "ok"
    vanilla = next(c for c in cells if c.method == "vanilla")
    assert len(list(tmp_path.glob(f"{vanilla.key}.*"))) == 2  # tried twice, no more
    assert not cell_path(tmp_path / "out", vanilla).exists()  # not stored: a rerun retries it
    shell = next(c for c in cells if c.method == "shell")
    assert cell_path(tmp_path / "out", shell).is_file()
    # the rerun trains the failed cell only (here it succeeds: a third attempt)
    again = run_cells(cells, tmp_path / "out", executor=RayExecutor(), data=data, fn=fn, progress=False)
    assert [r["status"] for r in again] == ["ok", "ok"]


def test_the_local_pool_gives_the_same_results(blobs, tmp_path):
    """LocalExecutor(2) (spawned processes, data sent once per worker) against this process."""
    cells, data = grid(*blobs)
    pooled = run_cells(cells, tmp_path / "pool", executor=LocalExecutor(2), data=data, progress=False)
    here = run_cells(cells, tmp_path / "here", executor=LocalExecutor(1), data=data, progress=False)
    assert [untimed(r) for r in pooled] == [untimed(r) for r in here]


def test_reproduce_cells_of_a_registered_dataset_run_on_ray_as_locally(local_ray, tmp_path):
    """`reproduce --executor ray`'s path: the driver loads a registered dataset once and ships it; the shell
    cell at K = 8 also certifies at the auto-K geometry, fitted on the worker instead of read from OUT."""
    from shellvae.experiments import get_profile
    from shellvae.experiments.common import RunContext

    run = RunContext("table1", get_profile("test"), ["synthetic"], [0], tmp_path)
    cells = [run.cell("synthetic", "moderate", m, 0) for m in ("vanilla", "shell")]
    here = run_cells(cells, tmp_path / "local", executor=LocalExecutor(1), progress=False)
    on_ray = run_cells(cells, tmp_path / "ray", executor=RayExecutor(), progress=False)
    assert [untimed(r) for r in on_ray] == [untimed(r) for r in here]
    assert on_ray[1]["certificate_auto"] != on_ray[1]["certificate"]  # K = 8 and the auto K: two geometries
