"""The local executor's process pool when a worker dies: its cells are run again one at a time, a cell
whose process dies again is reported failed, and the others come back. (Ray's side:
tests/test_ray_executor.py.)"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from shellvae.base.storage import data_fingerprint
from shellvae.experiments.cells import cell_path, load_cell, run_cell, run_cells
from shellvae.experiments.executors import LocalExecutor, data_id
from shellvae.experiments.recommend_data import make_cells, split

TIMING = {"fit_seconds", "seconds_per_epoch"}


@pytest.fixture(scope="module")
def grid():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=240)
    X = (rng.normal(0, 4, size=(3, 6))[y] + rng.normal(size=(240, 6))).astype(np.float32)
    data = split(X, y, "blobs")
    cells = make_cells(data, data_fingerprint(X, y), ["vanilla", "shell"], 1, epochs=1, sigma2_ratio=2.0, beta=1.0,
                       condition="test", latent_dim=2, encoder_hidden=(16,), decoder_hidden=(16,), batch_size=64)
    return cells, {data_id(cells[0]): data}


def untimed(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in TIMING}
    out["history"] = [{k: v for k, v in row.items() if not k.endswith("_time_s")} for row in record["history"]]
    return out


def crash(markers: str, crash_times: int, method: str, cell, out, data):
    """``run_cell``, but the process running ``method``'s cell dies (os._exit: no exception, no cleanup)
    on its first ``crash_times`` attempts; each attempt leaves a marker file."""
    if cell.method == method:
        attempt = len(list(Path(markers).glob(f"{cell.key}.*"))) + 1
        (Path(markers) / f"{cell.key}.{attempt}").touch()
        if attempt <= crash_times:
            os._exit(1)
    return run_cell(cell, out, data)


@pytest.mark.parametrize("crash_times", [1, 2])
def test_a_dead_workers_cell_is_retried_alone_then_reported(grid, tmp_path, crash_times):
    cells, data = grid
    markers = tmp_path / "markers"
    markers.mkdir()
    fn = functools.partial(crash, str(markers), crash_times, "vanilla")
    records = run_cells(cells, tmp_path / "out", executor=LocalExecutor(2), data=data, fn=fn, progress=False)
    by_method = {r["cell"]["method"]: r for r in records}
    vanilla = next(c for c in cells if c.method == "vanilla")
    shell = next(c for c in cells if c.method == "shell")
    assert len(list(markers.glob(f"{vanilla.key}.*"))) == 2  # died once, tried once more, no more
    assert by_method["shell"]["status"] == "ok" and cell_path(tmp_path / "out", shell).is_file()
    if crash_times == 1:  # the retry succeeds, with the record an undisturbed run gives
        assert by_method["vanilla"]["status"] == "ok"
        assert untimed(load_cell(tmp_path / "out", vanilla)) == untimed(run_cell(vanilla, None, data[data_id(vanilla)]))
    else:  # dead twice: failed, not stored (a rerun retries it), the other cell kept
        assert by_method["vanilla"]["status"] == "failed" and "died twice" in by_method["vanilla"]["error"]
        assert not cell_path(tmp_path / "out", vanilla).exists()
