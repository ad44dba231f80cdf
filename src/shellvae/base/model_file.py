"""Model files are checked and inert.

``storage.load`` reads a file without running code; this module adds what that cannot see:

- the archive's own checksums (``torch.save`` writes a zip with a CRC-32 per record, which
  ``torch.load`` does not verify): a flipped byte inside a tensor is refused, not loaded;
- the path names a regular file (a folder, or a device such as ``/dev/zero``, is named as such);
- every field of a loaded model is validated as the constructor and ``fit`` validate it: its
  parameters (``check_params``), the method's hyperparameters, the shell and the cluster geometry
  (finite numbers, labels within K, norm range ordered), and layer sizes no larger than the weights
  the file holds (``encoder_hidden=[10**12]`` would otherwise try to allocate terabytes);
- a loaded model is inert: where the run that trained it checkpointed (``checkpoint``, ``resume``)
  is not carried into it, so its refit writes nothing but where it is told.
"""

from __future__ import annotations

import math
import stat
import zipfile
from pathlib import Path

import numpy as np

from shellvae.errors import ShellVAEError

#: settings of the run that trained a model, not of the model: a loaded model does not inherit them
RUN_ONLY = {"checkpoint": None, "resume": False}


def check_path(path, kind: str) -> Path:
    """``path`` names an existing regular file, or a ShellVAEError says what it is instead."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ShellVAEError(f"{path}: no such file.") from None
    except (OSError, ValueError) as exc:
        raise ShellVAEError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc}).") from None
    if stat.S_ISDIR(info.st_mode):
        raise ShellVAEError(f"{path} is a folder, not a {kind} file; give the file inside it (e.g. "
                            f"{path / 'model.pt'}).")
    if not stat.S_ISREG(info.st_mode):
        via = " (through a link)" if path.is_symlink() else ""
        raise ShellVAEError(f"{path} is not a regular file{via}: a device, pipe or socket; give a shellvae {kind} "
                            "file.")
    return path


def verify_archive(path, kind: str) -> None:
    """Check every record of a ``torch.save`` zip against its CRC-32; refuse the file if one differs.
    Files that are not zips are left to ``torch.load``, which names what it finds."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ShellVAEError(f"{path}: not a readable shellvae {kind} file (a damaged archive: {exc}). It was "
                            "truncated, tampered with or corrupted; retrain the model or restore the file.") from None
    if bad is not None:
        raise ShellVAEError(f"{path}: the {kind} file is corrupted: its record {bad.split('/')[-1]!r} fails its "
                            "checksum (CRC-32), so a stored value changed after it was written. Retrain the model or "
                            "restore the file from a copy.")


def inert(params: dict) -> dict:
    """A saved model's parameters without the settings of the run that trained it (``RUN_ONLY``)."""
    return {**params, **{key: value for key, value in RUN_ONLY.items() if key in params}}


def _finite(value, name: str, low: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number) or (low is not None and number < low):
        raise ValueError(f"{name}={value!r} is not a finite number" + (f" >= {low:g}" if low is not None else ""))
    return number


def _finite_array(value, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def check_hidden_sizes(params: dict, weights: dict) -> None:
    """Layer sizes that could not hold the saved weights: refused before building (and allocating) them."""
    stored = sum(int(np.prod(tuple(t.shape))) for t in weights.values() if hasattr(t, "shape"))
    for key in ("encoder_hidden", "decoder_hidden"):
        sizes = params.get(key)
        if sizes is None:
            continue
        if not isinstance(sizes, (list, tuple)) or not all(isinstance(s, int) and s >= 1 for s in sizes):
            raise ValueError(f"{key}={sizes!r}: layer sizes must be positive integers")
        if sum(sizes) > stored:
            raise ValueError(f"{key}={sizes!r}: layers larger than the {stored} weights the file holds")


def check_shell(shell) -> None:
    mean = _finite_array(shell.mean_, "shell mean_")
    low, high = _finite(shell.norm_min_, "shell norm_min_", 0.0), _finite(shell.norm_max_, "shell norm_max_", 0.0)
    if low > high:
        raise ValueError(f"shell norm_min_={low:g} > norm_max_={high:g}")
    if mean.ndim != 1:
        raise ValueError(f"shell mean_ of shape {mean.shape}, not a vector")


def check_geometry(geometry) -> None:
    k = geometry.n_clusters_
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"geometry n_clusters_={k!r} is not a positive integer")
    for name in ("T_", "W_", "delta_collapse_", "lambda_max_"):
        _finite(getattr(geometry, name), f"geometry {name}", 0.0)
    centers = _finite_array(geometry.centers_, "geometry centers_")
    if centers.ndim != 2 or len(centers) != k:
        raise ValueError(f"geometry centers_ of shape {centers.shape} for K={k}")
    labels = np.asarray(geometry.labels_)
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"geometry labels_ outside 0..{k - 1} (K={k})")


def check_fitted(est) -> None:
    """A loaded ``ShellVAE``'s fitted state, as fit leaves it (``ValueError``: ``storage.reading`` names the file)."""
    _finite(est.sigma2_, "sigma2_", 0.0)
    if not est.sigma2_ > 0:
        raise ValueError(f"sigma2_={est.sigma2_!r} is not positive")
    if not isinstance(est.n_features_in_, (int, np.integer)) or est.n_features_in_ < 1:
        raise ValueError(f"n_features_in_={est.n_features_in_!r} is not a positive integer")
    check_shell(est.shell_)
    check_geometry(est.geometry_)


def checked(build, *args, **kwargs):
    """``build(*args, **kwargs)`` (e.g. ``get_method``, which range-checks a method's hyperparameters), its
    ShellVAEError as a ValueError, which ``storage.reading`` reports naming the file."""
    try:
        return build(*args, **kwargs)
    except ShellVAEError as exc:
        raise ValueError(str(exc)) from None


def check_params(est) -> None:
    """The constructor's checks, as a ValueError that ``storage.reading`` turns into an error naming the file."""
    try:
        est.check_params()
    except ShellVAEError as exc:
        raise ValueError(str(exc)) from None
