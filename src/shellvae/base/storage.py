"""Atomic, code-free file writes and reads for checkpoints, models and results.

Writes go to a temporary file in the target directory, are flushed to disk, then renamed over
the target (``os.replace`` is atomic on POSIX and Windows): a crash leaves the old file or the
new one, never half of one. Model files are read with ``torch.load(weights_only=True)``, which
refuses to run code, and carry a format name and version checked on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from shellvae.errors import ShellVAEError

FORMAT = "shellvae"
FORMAT_VERSION = 1


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask can only be read by setting it


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    If the body raises (or the process dies), ``path`` keeps its previous content and the
    temporary file is removed (a killed process can leave a ``.NAME.*.tmp`` file, never a
    half-written ``path``). The file gets the usual permissions (0666 minus the umask).
    """
    path = Path(path)
    if path.is_dir():
        raise ShellVAEError(f"{path} is a folder; cannot write a file there. Give a file path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX). Best effort: some systems cannot sync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except (AttributeError, OSError):  # no O_DIRECTORY (Windows), or not allowed
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable_folder(path) -> Path:
    """Make sure ``path`` is a folder this process can write to, creating it (and its parents) if
    needed; a path under a file, or one that cannot be created or written, is refused by name
    (and any folder made on the way is removed again)."""
    path = Path(path)
    problem = _folder_problem(path)
    if problem is not None:
        raise ShellVAEError(f"cannot write the output folder {path}: {problem}. Choose another path.")
    return path


def check_writable_file(path) -> Path:
    """Make sure a file can be written at ``path`` the way ``atomic_path`` writes it (its folder is
    created if needed); refuse a folder, or a path whose folder or name cannot be written, by name."""
    path = Path(path)
    try:
        folder = str(path) in ("", ".") or path.is_dir()
    except (OSError, ValueError):
        folder = False  # e.g. a name too long: the probe below names the problem
    if folder:
        raise ShellVAEError(f"{path} is a folder; cannot write a file there. Give a file path.")
    problem = _folder_problem(path.parent, probe_prefix=f".{path.name}.")
    if problem is not None:
        raise ShellVAEError(f"cannot write {path}: {problem}. Choose another path.")
    return path


def _folder_problem(path: Path, probe_prefix: str = ".write-check.") -> str | None:
    """Why ``path`` cannot be a writable folder (None if it is one now: it is created if needed). The
    probe is a temporary file named like ``atomic_path``'s (``probe_prefix``), removed at once."""
    try:
        missing = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
        for parent in (path, *path.parents):
            if parent.exists() and not parent.is_dir():
                return f"{parent} is a file, not a folder"
    except (OSError, ValueError) as exc:  # e.g. a name too long, or a NUL byte
        return getattr(exc, "strerror", None) or str(exc)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=probe_prefix, suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        for folder in missing:  # made here: remove them again, deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        return exc.strerror or str(exc)
    return None


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_safe(obj):
    """NumPy arrays -> tensors, NumPy scalars -> Python scalars, so ``weights_only`` loading accepts them."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_safe(v) for v in obj)
    return obj


def from_safe(obj):
    """Inverse of ``to_safe``: tensors -> NumPy arrays."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_safe(v) for v in obj)
    return obj


def save(path, payload: dict, kind: str) -> None:
    """Atomically save ``payload`` (tensors, numbers, strings, containers) tagged with format and kind."""
    record = {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind, **payload}
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


@contextlib.contextmanager
def reading(path, kind: str = "model"):
    """Around the code that rebuilds an object from a loaded record: a missing key or a value of the
    wrong type (an altered or damaged file) becomes one ``ShellVAEError`` naming the file."""
    try:
        yield
    except ShellVAEError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ShellVAEError(f"{path}: the {kind} file is incomplete or inconsistent ({type(exc).__name__}: {exc}); "
                            "it was altered or damaged. Retrain the model or restore the file.") from None


def load(path, kind: str) -> dict:
    """Load a file written by ``save``, without executing code; clear errors for anything else."""
    from shellvae.base import model_file  # its checks: the path, then the archive's checksums

    path = model_file.check_path(path, kind)
    model_file.verify_archive(path, kind)
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc).strip()
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if refused:
            raise ShellVAEError(
                f"{path}: refused to load: it asks to run code or build objects ({refused.group(1)}), which a shellvae "
                f"{kind} file never does. It was tampered with or is not a shellvae file; do not load it with "
                "weights_only=False."
            ) from None
        unpickler = re.search(r"WeightsUnpickler error:\s*(.+)", text)  # torch's detail, past its advice
        detail = unpickler.group(1) if unpickler else re.split(r"(?<=\.)\s", text)[0]  # else the first sentence
        raise ShellVAEError(
            f"{path}: not a readable shellvae {kind} file ({type(exc).__name__}: {detail[:200]}). "
            "It may be truncated, tampered with, or not a shellvae file."
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ShellVAEError(f"{path}: not a shellvae file (no '{FORMAT}' format tag).")
    if record.get("kind") != kind:
        raise ShellVAEError(f"{path}: holds a shellvae {record.get('kind')!r}, expected a {kind!r}.")
    if record.get("version") != FORMAT_VERSION:
        raise ShellVAEError(
            f"{path}: written by file format version {record.get('version')}, this shellvae reads version "
            f"{FORMAT_VERSION}. Use the shellvae release that wrote it, or retrain."
        )
    return record


def data_fingerprint(*arrays) -> str:
    """SHA-256 of the arrays' shapes, dtypes and values, read in chunks of rows (a memory-mapped file
    is never loaded whole)."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        shape, dtype = np.shape(array), str(np.asarray(array[:0]).dtype)
        digest.update(f"{shape}|{dtype}|".encode())
        step = max(1, (8 << 20) // max(1, int(np.prod(shape[1:], dtype=np.int64)) * 8))
        for start in range(0, shape[0] if shape else 0, step):
            digest.update(np.ascontiguousarray(np.asarray(array[start:start + step])).tobytes())
    return "sha256:" + digest.hexdigest()
