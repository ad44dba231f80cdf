"""The Ray executor's overhead: the same Table 1 cells (quick profile) with ``--executor ray`` (a local
Ray instance of ``--jobs`` CPUs) against the local process pool with ``--jobs`` processes, on one machine.

Both train every cell from scratch and do the same work in each cell: the data set comes from the
driver (through the pool's initializer, or Ray's object store), and no cell writes a file (no
per-epoch checkpoint, each cell fits its own cluster geometry: what a Ray worker does; the local
executor in ``reproduce`` also checkpoints every epoch and shares geometries through its folder, work
that would be counted against it here). The script prints each wall time, Ray's start-up apart, the
ratio, and whether the two executors' records are identical (timings aside).
The full quick Table 1 grid (144 cells) takes hours on 2 cores, so by default it runs a subset of
it (synthetic, moderate condition, seed 0: 12 cells at the quick profile's size and epochs) and
says so; ``--datasets``, ``--conditions``, ``--seeds`` widen it (``--all``: the whole quick grid).

    python bench/ray_overhead.py --jobs 2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch

from shellvae.experiments import table1
from shellvae.experiments.cells import load_cell_data, run_cell, run_cells
from shellvae.experiments.common import RunContext
from shellvae.experiments.executors import LocalExecutor, RayExecutor, data_id, import_ray
from shellvae.experiments.profiles import get_profile

TIMING = {"fit_seconds", "seconds_per_epoch"}


def untimed(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in TIMING}
    out["history"] = [{k: v for k, v in row.items() if not k.endswith("_time_s")} for row in record.get("history", [])]
    return out


def without_files(cell, out, data):
    """One cell's training as a Ray worker runs it: no output folder, so no checkpoint and no shared geometry."""
    return run_cell(cell, None, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="local processes, and the CPUs of the Ray instance")
    parser.add_argument("--datasets", default="synthetic")
    parser.add_argument("--conditions", default="moderate")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--all", action="store_true", help="the whole quick Table 1 grid (hours on 2 cores)")
    args = parser.parse_args()
    ray = import_ray()
    torch.set_num_threads(1)
    profile = get_profile("quick")
    datasets = list(table1.DATASETS) if args.all else args.datasets.split(",")
    conditions = table1.CONDITIONS if args.all else tuple(args.conditions.split(","))
    seeds = list(range(profile.seeds if args.all else args.seeds))
    with tempfile.TemporaryDirectory() as tmp:
        run = RunContext("table1", profile, datasets, seeds, tmp)
        cells = [c for c in table1.cells(run) if c.condition in conditions]
        whole = len(table1.cells(RunContext("table1", profile, list(table1.DATASETS), list(range(profile.seeds)), tmp)))
        what = ("the whole quick-profile Table 1 grid" if len(cells) == whole else
                f"a subset of the quick-profile Table 1 grid ({whole} cells): datasets {', '.join(datasets)}, "
                f"conditions {', '.join(conditions)}, seeds {', '.join(map(str, seeds))}")
        print(f"{len(cells)} cells, {what}; profile sizes and epochs: {profile.describe(datasets)}")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
              f"{torch.__version__}, ray {ray.__version__}; --jobs {args.jobs}, one torch thread per cell")
        # the data subsets loaded once, outside both timings, and handed to both executors
        data = {data_id(c): load_cell_data(c.dataset, c.data_dir, c.data["n_train"], c.data["n_test"]) for c in cells}

        t0 = time.perf_counter()
        local = run_cells(cells, f"{tmp}/local", executor=LocalExecutor(args.jobs), data=data, fn=without_files,
                          progress=False)
        t_local = time.perf_counter() - t0

        t0 = time.perf_counter()
        ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False)
        t_start = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            on_ray = run_cells(cells, f"{tmp}/ray", executor=RayExecutor(), data=data, fn=without_files, progress=False)
            t_ray = time.perf_counter() - t0
        finally:
            ray.shutdown()
    same = [untimed(a) == untimed(b) for a, b in zip(local, on_ray)]
    fit = sum(r.get("fit_seconds") or 0.0 for r in local)
    print(f"local executor, {args.jobs} processes: {t_local:.1f} s (sum of the cells' fit_seconds {fit:.1f} s)")
    print(f"ray executor, local instance of {args.jobs} CPUs: {t_ray:.1f} s, plus {t_start:.1f} s to start Ray")
    print(f"ray / local: {t_ray / t_local:.3f} (with Ray's start-up: {(t_ray + t_start) / t_local:.3f})")
    print(f"records identical (timings aside): {sum(same)}/{len(same)}; failed on Ray: "
          f"{sum(r.get('status') == 'failed' for r in on_ray)}")


if __name__ == "__main__":
    main()
