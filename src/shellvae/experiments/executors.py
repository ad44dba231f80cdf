"""Where cells train: this process, a local process pool, or a Ray cluster; one interface for all.

An executor takes a cell function ``fn(cell, out, data) -> record`` (``cells.run_cell``), the cells
and, optionally, the data they train on (``{data_id(cell): Dataset}``), and yields ``(cell, record)``
as cells finish, in any order. It never writes a cell file: ``cells.run_cells`` (the driver) stores
each record atomically as it comes back, so a run interrupted at any point resumes from the cells
already stored, and a worker on another machine needs no shared file system.

- ``LocalExecutor(jobs)``: ``jobs == 1`` trains in this process; more, in a pool of that many spawned
  processes with one torch thread each. The data goes to each worker once (the pool's initializer),
  not with every cell. A cell that raises stops the run (its error is the user's to see), as before.
  A worker process that dies (killed, out of memory) breaks the whole pool, and the pool cannot say
  which cell killed it: the cells it did not return are run again one at a time, each in a fresh
  process, so a death is the cell's own; a cell whose process dies there too is reported failed
  (``CellFailed``) and the others still finish and are stored.
- ``RayExecutor(address)``: each cell is a Ray task declaring ``num_cpus=1`` and training with one
  torch thread; ``address="auto"`` (or ``"HOST:PORT"``) joins a running cluster, ``None`` starts a
  local instance for the run. Each data set is put into Ray's object store once (``ray.put``) and
  every task gets the reference: a node fetches it once, however many of its cells use it. A task
  whose worker dies (killed, out of memory, node lost) is retried once by Ray (``max_retries=1``);
  if it fails again, or the cell raises, that cell comes back as a failure (``CellFailed``) and
  the others still finish and are stored.

Results do not depend on the executor: a cell's seed fixes everything it computes, and every
executor trains with one torch thread (``LocalExecutor(1)``: the caller's thread setting).
"""

from __future__ import annotations

import _thread
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shellvae.errors import ShellVAEError

#: the line that installs the optional Ray dependency (errors and docs quote it)
RAY_INSTALL = 'pip install "shellvae[ray]"'
#: what ``--executor`` accepts
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class CellFailed:
    """A cell that did not come back (its worker died twice, or it raised on a Ray worker)."""

    error: str


def data_id(cell) -> str:
    """Which data a cell trains on: a hash of its data spec (for a user's array, the spec holds the
    array's SHA-256, so two arrays never share an id)."""
    text = json.dumps(cell.data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class Executor:
    """Runs cell functions; see the module docstring. ``name`` is what ``--executor`` calls it."""

    name = ""

    def run(self, fn: Callable, cells: list, out: Path, data: dict | None = None) -> Iterator[tuple]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


# -- local ---------------------------------------------------------------------------------------------
_WORKER_DATA: dict = {}  # a pool worker's data sets, set once by its initializer


def _worker_init(threads: int, parent: int) -> None:
    torch.set_num_threads(threads)
    # a worker of a background job inherits an ignored SIGINT, which would make the watchdog's interrupt a no-op
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _exit_with_parent(parent)


def _exit_with_parent(parent: int, every: float = 1.0, grace: float = 3.0) -> None:
    """End this cell worker once the process that started it is gone (a killed ``reproduce``, a closed
    session): an orphan would go on training, unseen, and race a rerun for the same cell. The main
    thread gets a KeyboardInterrupt first, so writes in progress clean up after themselves (its
    checkpoint keeps the last finished epoch); a worker that has not ended ``grace`` seconds later
    is stopped outright. POSIX: the parent's death shows as a new parent pid (not on Windows)."""
    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        _thread.interrupt_main()
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _pool_init(threads: int, parent: int, data: dict | None) -> None:
    _worker_init(threads, parent)
    _WORKER_DATA.clear()
    _WORKER_DATA.update(data or {})


def _pool_task(fn: Callable, cell, out: str | None):
    return fn(cell, None if out is None else Path(out), _WORKER_DATA.get(data_id(cell)))


class LocalExecutor(Executor):
    """This machine: ``jobs`` processes (1: this one). Cells write their cluster geometries and
    per-epoch checkpoints under ``out`` (one file system), so an interrupted cell resumes mid-training."""

    name = "local"

    def __init__(self, jobs: int = 1):
        if jobs < 1:
            raise ShellVAEError(f"jobs={jobs}: need at least 1.")
        self.jobs = jobs

    def describe(self) -> str:
        return f"local, {self.jobs} process{'es' if self.jobs > 1 else ''}"

    def run(self, fn, cells, out, data=None):
        cells = list(cells)
        if self.jobs <= 1 or len(cells) <= 1:
            for cell in cells:
                yield cell, fn(cell, out, (data or {}).get(data_id(cell)))
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # cells of one dataset together, so each worker's data and K-means caches are reused
        cells.sort(key=lambda c: (c.dataset, c.seed))
        used = {data_id(c) for c in cells}
        shipped = {k: v for k, v in (data or {}).items() if k in used}
        from concurrent.futures.process import BrokenProcessPool

        def pool(jobs: int):
            return ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_pool_init,
                                       initargs=(1, os.getpid(), shipped))

        orphans = []  # cells a dead worker took down with the pool (its own cell among them)
        with pool(self.jobs) as workers:
            futures = {workers.submit(_pool_task, fn, c, None if out is None else str(out)): c for c in cells}
            for future in as_completed(futures):
                try:
                    record = future.result()
                except BrokenProcessPool:
                    orphans.append(futures[future])
                    continue
                yield futures[future], record
        for cell in orphans:  # alone in a fresh process each: a death now is this cell's (its second try)
            with pool(1) as worker:
                try:
                    record = worker.submit(_pool_task, fn, cell, None if out is None else str(out)).result()
                except BrokenProcessPool:
                    record = CellFailed("its worker process died twice (killed, or out of memory?)")
            yield cell, record


# -- Ray ---------------------------------------------------------------------------------------------------
def import_ray():
    """``ray``, or a ShellVAEError with the line that installs it."""
    try:
        import ray
    except ImportError:
        raise ShellVAEError(f"the Ray executor needs Ray, which is not installed: {RAY_INSTALL} "
                            "(or use --executor local).") from None
    return ray


_RAY_DATA: dict = {}  # a Ray worker's writable copy of the data set its last cell used (workers are reused)


def _ray_task(fn: Callable, cell, boxed: list):
    """One cell on a Ray worker: one torch thread (the task declares one CPU), no files (out=None).

    ``boxed``: ``[ObjectRef]`` (a list, so Ray passes the reference instead of resolving it) or ``[]``.
    The object store's arrays are read-only (zero-copy); torch warns on those, and the warning would
    enter the cell's record, so a worker copies the data once and keeps it for its next cells."""
    import ray

    torch.set_num_threads(1)
    data = None
    if boxed:
        key = boxed[0].hex()
        if key not in _RAY_DATA:
            _RAY_DATA.clear()
            _RAY_DATA[key] = _writable(ray.get(boxed[0]))
        data = _RAY_DATA[key]
    return fn(cell, None, data)


def _writable(data):
    """A Dataset whose arrays this process owns (copies of the object store's read-only views)."""
    from dataclasses import fields, replace

    return replace(data, **{f.name: np.array(getattr(data, f.name)) for f in fields(data)
                            if isinstance(getattr(data, f.name), np.ndarray)})


class RayExecutor(Executor):
    """A Ray cluster (``address``: "auto", "HOST:PORT" or "ray://HOST:PORT") or, with ``address=None``
    and no Ray already initialised in this process, a local instance of ``num_cpus`` CPUs (None: all)
    started for the run and shut down after it. Workers get no output folder: a cell fits its own
    geometry (the same, from the same seed) and keeps no per-epoch checkpoint; resuming is per cell."""

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, max_retries: int = 1):
        self.ray = import_ray()  # refused at once, before any data is read, when Ray is missing
        self.address, self.num_cpus, self.max_retries = address, num_cpus, max_retries

    def describe(self) -> str:
        return f"ray ({self.address or 'local instance'})"

    def _connect(self) -> bool:
        """Initialise Ray unless it already is; True when this call started it (and must shut it down)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        options = {"include_dashboard": False, "log_to_driver": True}
        if self.address is None:
            options["num_cpus"] = self.num_cpus
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"--address {self.address}" if self.address else "a local Ray instance"
            raise ShellVAEError(f"could not start or join {where} ({type(exc).__name__}: {exc}). For a cluster, run "
                                "`ray start --head` on one machine first, then pass --address auto there.") from None
        return True

    def run(self, fn, cells, out, data=None):
        ray = self.ray
        cells = list(cells)
        if not cells:
            return
        started = self._connect()
        try:
            # each data set once into the object store; tasks get references, resolved on their node
            refs = {key: ray.put(value) for key, value in (data or {}).items()
                    if key in {data_id(c) for c in cells}}
            task = ray.remote(_ray_task).options(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)
            pending = {task.remote(fn, c, [refs[data_id(c)]] if data_id(c) in refs else []): c for c in cells}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell = pending.pop(ref)
                    try:
                        yield cell, ray.get(ref)
                    except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError,
                            ray.exceptions.RayError) as exc:
                        yield cell, CellFailed(_short_error(exc))
        finally:
            if started:
                ray.shutdown()


def _short_error(exc: BaseException) -> str:
    """A Ray error's first useful line (its traceback is long; the cell's name says where)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


def make_executor(executor: str | Executor = "local", *, jobs: int = 1, address: str | None = None) -> Executor:
    """``"local"`` -> ``LocalExecutor(jobs)``; ``"ray"`` -> ``RayExecutor(address)`` (``jobs`` is then the
    CPUs of a local instance, when one is started); an ``Executor`` is returned as it is."""
    if isinstance(executor, Executor):
        return executor
    if executor == "local":
        if address is not None:
            raise ShellVAEError("address is for the Ray executor: add executor='ray' (--executor ray), or drop it.")
        return LocalExecutor(jobs)
    if executor == "ray":
        return RayExecutor(address, num_cpus=None if address is not None or jobs <= 1 else jobs)
    raise ShellVAEError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}.")

