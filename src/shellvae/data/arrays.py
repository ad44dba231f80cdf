"""Load a user's own data matrix from a .npy, .npz or .csv file.

Formats:
- ``.npy``: NumPy's array format (NEP 1, https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
  magic ``\\x93NUMPY``, a version, a header dict (descr, fortran_order, shape), then the raw data.
- ``.npz``: a zip archive of ``.npy`` members, one per array name (``np.savez``/``savez_compressed``).
- ``.csv``: comma-separated numbers, one sample per line (RFC 4180 quoting), with an optional
  header row of column names.

Pickled object arrays are never loaded (``allow_pickle=False``): a data file must not be able to
run code. Array headers are checked against the bytes actually present before NumPy allocates
what they claim. Rows are samples; (N, H, W) and (N, C, H, W) arrays are images and are flattened,
keeping their shape in ``Dataset.image_shape``. Values are used as stored (not rescaled).
Every failure is a ``DataError`` naming the file.

``load_array(path, mmap=True)`` (``.npy`` only) memory-maps the file instead of reading it
(``np.load(mmap_mode="r")``): ``X_train`` and ``X_test`` are ``np.memmap`` views of the leading and
trailing rows, validated chunk by chunk, and training reads them batch by batch
(``train.MemmapTrainData``), for data larger than memory.
"""

from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path

import numpy as np

from shellvae.data.base import Dataset, train_test_split
from shellvae.base.validation import check_array, first_bad_value, row_chunks
from shellvae.errors import DataError

_NPY_FORMAT = np.lib.format
_MAX_DEFLATE_RATIO = 1032  # DEFLATE expands at most ~1032:1 (see idx.py)


# --------------------------------------------------------------------------- .npy / .npz
def _check_npy_header(fp, available: int, where: str) -> None:
    """Validate an .npy header at ``fp`` against the ``available`` bytes of the whole .npy stream."""
    try:
        version = _NPY_FORMAT.read_magic(fp)
        if version == (1, 0):
            shape, _fortran, dtype = _NPY_FORMAT.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _fortran, dtype = _NPY_FORMAT.read_array_header_2_0(fp)
        else:
            raise DataError(f"{where}: .npy format version {version} is not supported (only 1.0 and 2.0 hold plain numeric arrays).")
    except DataError:
        raise
    except Exception as exc:  # NumPy's header parser raises ValueError, SyntaxError, ...
        raise DataError(f"{where}: not a valid .npy array ({type(exc).__name__}: {exc}).") from exc
    if any(d < 0 for d in shape):
        raise DataError(f"{where}: not a valid .npy array (negative dimension in shape {shape}).")
    if dtype.hasobject:
        raise DataError(
            f"{where}: the array holds Python objects (dtype {dtype}), which can only be loaded by "
            "unpickling; shellvae does not unpickle data files. Save a numeric array instead."
        )
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    actual = available - fp.tell()
    if actual != expected:
        problem = "truncated" if actual < expected else "trailing bytes"
        raise DataError(
            f"{where}: {problem}: the header declares shape {shape} of {dtype} = {expected} data bytes "
            f"but {actual} are present. Re-create the file with np.save."
        )


def _load_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        _check_npy_header(f, os.fstat(f.fileno()).st_size, f"'{path}'")
        f.seek(0)
        return _NPY_FORMAT.read_array(f, allow_pickle=False)


def _load_npy_mmap(path: Path) -> np.memmap:
    """The .npy file as a read-only memory map (header validated first; nothing is read into memory)."""
    with open(path, "rb") as f:
        _check_npy_header(f, os.fstat(f.fileno()).st_size, f"'{path}'")
    A = np.load(path, mmap_mode="r", allow_pickle=False)
    if not isinstance(A, np.memmap):  # a 0-byte array: NumPy returns a plain array
        raise DataError(f"'{path}' holds no data to memory-map (shape {A.shape}).")
    if A.ndim > 1 and not A.flags.c_contiguous:
        raise DataError(f"'{path}' is stored in Fortran order; memory-mapped rows must be contiguous. Re-save it with "
                        "np.save(path, np.ascontiguousarray(A)), or load it without mmap.")
    return A


def _check_rows_chunked(path: Path, X: np.ndarray) -> None:
    """``check_array``'s finiteness and float32-range checks, a chunk of rows at a time (no full copy)."""
    for start, chunk in row_chunks(X, dtype=None):
        bad = first_bad_value(chunk, max_abs=float(np.finfo(np.float32).max))
        if bad is not None:
            value = chunk[bad]
            what = "is beyond float32's range" if np.isfinite(value) else "is NaN or infinite"
            raise DataError(f"'{path}': the value at row {start + bad[0]}, column {bad[1]} ({value:.3g}) {what}; "
                            "fix the data before training.")


def _load_npz(path: Path, key: str | None) -> np.ndarray:
    with zipfile.ZipFile(path) as zf:
        members = {info.filename[: -len(".npy")]: info for info in zf.infolist() if info.filename.endswith(".npy")}
        if not members:
            raise DataError(f"'{path}' is a zip archive with no .npy arrays in it; save it with np.savez.")
        if key is None:
            if len(members) != 1:
                raise DataError(f"'{path}' holds {len(members)} arrays {sorted(members)}; pass key= to choose one.")
            key = next(iter(members))
        if key not in members:
            raise DataError(f"'{path}' has no array named {key!r}; it holds {sorted(members)}.")
        info = members[key]
        where = f"'{path}' (array {key!r})"
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise DataError(f"{where}: corrupt zip entry (stored sizes {info.compress_size} != {info.file_size}).")
        if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
            raise DataError(f"{where}: corrupt zip entry (claims {info.file_size} bytes from {info.compress_size} compressed).")
        with zf.open(info) as member:
            _check_npy_header(member, info.file_size, where)
        with zf.open(info) as member:  # reading to the end also makes zipfile check the CRC
            return _NPY_FORMAT.read_array(member, allow_pickle=False)


# --------------------------------------------------------------------------- .csv
def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _first_bad_cell(lines: list[str], start: int) -> str:
    """Locate the first ragged row or non-numeric cell (the slow path, only after a failure)."""
    width = None
    for lineno, row in enumerate(csv.reader(lines[start:], skipinitialspace=True), start=start + 1):
        if not row:
            continue
        if width is None:
            width = len(row)
        if len(row) != width:
            return f"line {lineno} has {len(row)} columns but earlier rows have {width}"
        for col, cell in enumerate(row):
            if not _is_number(cell):
                what = "an empty cell" if not cell.strip() else f"{cell!r} is not a number"
                return f"line {lineno}, column {col}: {what}"
    return "unparseable content"


def _load_csv(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Return (values, header or None). The first line is a header when none of its cells is a number."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"'{path}' is not UTF-8 text ({exc}); save the CSV as UTF-8.") from exc
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        raise DataError(f"'{path}' holds no data (only blank lines).")
    first = next(csv.reader([lines[start]], skipinitialspace=True))
    numeric = [_is_number(cell) for cell in first]
    header = None
    if not any(numeric):
        header = [cell.strip() for cell in first]
        start += 1
    elif not all(numeric):  # a typo in the first data row must not silently become a header
        bad = numeric.index(False)
        raise DataError(
            f"'{path}': line {start + 1} mixes numbers and text (column {bad}: {first[bad]!r}), so it is neither "
            "a header row (all names) nor a data row (all numbers). Fix that line."
        )
    if not any(line.strip() for line in lines[start:]):
        raise DataError(f"'{path}' has a header row but no data rows.")
    try:
        values = np.loadtxt(lines[start:], delimiter=",", quotechar='"', comments=None, ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise DataError(
            f"'{path}': {_first_bad_cell(lines, start)}. Every data row needs the same number of numeric "
            "cells: remove text columns and fill in missing values."
        ) from exc
    if header is not None and len(header) != values.shape[1]:
        raise DataError(f"'{path}': the header has {len(header)} columns but the data rows have {values.shape[1]}.")
    return values, header


# --------------------------------------------------------------------------- public loader
def _split_labels(path: Path, X: np.ndarray, label_column, header):
    """Cut ``label_column`` (index or header name) out of X and return (X, integer labels)."""
    if isinstance(label_column, str):
        if header is None:
            raise DataError(f"label_column={label_column!r} is a column name but '{path}' has no header row; pass its index.")
        if label_column not in header:
            raise DataError(f"'{path}' has no column named {label_column!r}; its columns are {header}.")
        index = header.index(label_column)
    else:
        index = int(label_column)
        if not -X.shape[1] <= index < X.shape[1]:
            raise DataError(f"label_column={index} is out of range for '{path}', which has {X.shape[1]} columns.")
        index %= X.shape[1]
    if X.shape[1] < 2:
        raise DataError(f"'{path}' has a single column; with it used as labels no features would remain.")
    labels = np.asarray(X[:, index], dtype=np.float64)
    if not (np.isfinite(labels).all() and (labels == np.round(labels)).all() and (np.abs(labels) < 2**31).all()):
        raise DataError(f"label column {label_column!r} of '{path}' holds non-integer values; labels must be class ids.")
    return np.delete(X, index, axis=1), labels.astype(np.int64)


def _check_float32_range(path: Path, X: np.ndarray) -> None:
    """Finite values too large for float32 would silently become inf in the float32 model input."""
    if X.dtype.kind != "f" or X.dtype.itemsize <= 4:
        return
    limit = np.finfo(np.float32).max
    with np.errstate(invalid="ignore"):
        too_big = np.isfinite(X) & (np.abs(X) > limit)
    if too_big.any():
        row, col = np.argwhere(too_big)[0]
        raise DataError(
            f"'{path}' holds {int(too_big.sum())} value(s) beyond float32's range of +-{limit:.3g} "
            f"(first at row {row}, column {col}: {X[row, col]:.3g}); rescale the data."
        )


def _to_matrix(path: Path, A: np.ndarray):
    """Flatten image stacks to (N, features) and return (matrix, image_shape or None)."""
    if A.ndim == 2:
        return A, None
    if A.ndim < 2:
        raise DataError(
            f"'{path}' holds an array of shape {A.shape}; reshape it to (n_samples, n_features), "
            "e.g. A.reshape(-1, 1) for one feature."
        )
    flat = A.reshape(A.shape[0], int(np.prod(A.shape[1:])))  # explicit: reshape(0, -1) is ambiguous
    if A.ndim == 3:  # (N, H, W) grayscale images
        return flat, (1, A.shape[1], A.shape[2])
    if A.ndim == 4:  # (N, C, H, W)
        if A.shape[1] not in (1, 3):
            raise DataError(
                f"'{path}' has shape {A.shape}; 4-D arrays are read as images (N, C, H, W) with C = 1 or 3 "
                "channels. If yours are (N, H, W, C), use A.transpose(0, 3, 1, 2)."
            )
        return flat, tuple(int(d) for d in A.shape[1:])
    raise DataError(
        f"'{path}' holds an array of shape {A.shape}; expected (N, D) samples, (N, H, W) or (N, C, H, W) images."
    )


def read_array(path: str | os.PathLike, *, key: str | None = None, label_column: int | str | None = None):
    """The whole data matrix of a ``.npy``, ``.npz`` or ``.csv`` file, unsplit: ``(X, y, image_shape)``
    (``y``: the ``label_column``'s integer labels, or None), checked as ``load_array`` checks it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".csv"):
        raise DataError(f"'{path}': unknown file type {suffix or '(none)'!r}; shellvae reads .npy, .npz and .csv.")
    if not path.is_file():
        raise DataError(f"'{path}' does not exist (or is not a file).")
    if path.stat().st_size == 0:
        raise DataError(f"'{path}' is empty.")
    return _read(path, key, label_column)


def _read(path: Path, key, label_column):
    header, suffix = None, path.suffix.lower()
    try:
        if suffix == ".npy":
            A = _load_npy(path)
        elif suffix == ".npz":
            A = _load_npz(path, key)
        else:
            A, header = _load_csv(path)
    except DataError:
        raise
    except Exception as exc:  # zipfile/zlib/OS errors from a damaged file: many types, one meaning
        raise DataError(f"'{path}' could not be read ({type(exc).__name__}: {exc}); the file may be damaged.") from exc
    if A.dtype.kind == "c":
        raise DataError(f"'{path}' holds complex numbers (dtype {A.dtype}); shellvae needs real values.")
    if A.dtype.kind not in "biuf":
        raise DataError(f"'{path}' holds dtype {A.dtype}; expected a numeric array.")

    y = None
    X, image_shape = _to_matrix(path, A)
    if label_column is not None:
        if image_shape is not None:
            raise DataError(f"label_column applies to 2-D tables; '{path}' holds images of shape {A.shape}.")
        X, y = _split_labels(path, X, label_column, header)
    _check_float32_range(path, X)
    with np.errstate(invalid="ignore", over="ignore"):  # casting a NaN warns; check_array reports it properly
        X = check_array(X, name=f"'{path}'")
    return X, y, image_shape


def load_array(
    path: str | os.PathLike,
    *,
    key: str | None = None,
    label_column: int | str | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    name: str | None = None,
    mmap: bool = False,
) -> Dataset:
    """Load a data matrix from ``.npy``, ``.npz`` or ``.csv`` and split it into train/test.

    ``key`` picks the array in an ``.npz`` (optional when it holds exactly one).
    ``label_column`` (an index, negative allowed, or a CSV header name) is removed from a 2-D
    matrix and returned as integer labels. The split is ``train_test_split(test_size, seed)``.
    Values are kept as stored (no rescaling). Raises ``DataError`` naming the file on any problem.

    ``mmap=True`` (``.npy`` only, no ``label_column``): memory-map the file instead of reading it.
    ``X_train`` / ``X_test`` are then ``np.memmap`` views and the split is *contiguous*: the last
    ``round(n * test_size)`` rows are held out (a random split would copy the data), so the rows
    of the file should be in random order. Values are validated a chunk of rows at a time.
    """
    path = Path(path)
    is_index = isinstance(label_column, (int, np.integer)) and not isinstance(label_column, bool)
    if not (label_column is None or isinstance(label_column, str) or is_index):
        raise DataError(f"label_column must be a column index or a header name, got {label_column!r} (loading '{path}').")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".csv"):
        raise DataError(f"'{path}': unknown file type {suffix or '(none)'!r}; load_array reads .npy, .npz and .csv.")
    if not path.is_file():
        raise DataError(f"'{path}' does not exist (or is not a file).")
    if path.stat().st_size == 0:
        raise DataError(f"'{path}' is empty.")
    if key is not None and suffix != ".npz":
        raise DataError(f"key={key!r} only applies to .npz archives, not '{path}'.")
    if mmap:
        return _load_mmap(path, label_column, test_size, seed, name)
    X, y, image_shape = _read(path, key, label_column)
    try:
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size, seed)
    except DataError as exc:
        raise DataError(f"'{path}': {exc}") from exc
    label_note = f", labels from column {label_column!r}" if label_column is not None else ""
    return Dataset(
        name=name or path.stem,
        X_train=X_train,
        X_test=X_test,
        y_train=y_train,
        y_test=y_test,
        image_shape=image_shape,
        description=(
            f"{len(X)} samples x {X.shape[1]} features from {path}{label_note}; values as stored "
            f"(not rescaled), split {len(X_train)} train / {len(X_test)} test (test_size={test_size}, seed={seed})."
        ),
        info={"source": str(path.absolute()), "key": key, "label_column": label_column, "test_size": test_size, "seed": seed},
    )


def _load_mmap(path: Path, label_column, test_size: float, seed: int, name: str | None) -> Dataset:
    """``load_array(..., mmap=True)``: a Dataset whose X_train / X_test stay memory-mapped."""
    if path.suffix.lower() != ".npy":
        raise DataError(f"'{path}': mmap=True reads .npy files only (an .npz or .csv cannot be memory-mapped).")
    if label_column is not None:
        raise DataError(f"'{path}': label_column needs a copy of the data; it cannot be used with mmap=True.")
    try:
        A = _load_npy_mmap(path)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"'{path}' could not be memory-mapped ({type(exc).__name__}: {exc}).") from exc
    if A.dtype.kind == "c" or A.dtype.kind not in "biuf":
        raise DataError(f"'{path}' holds dtype {A.dtype}; expected a real numeric array.")
    X, image_shape = _to_matrix(path, A)
    if not isinstance(X, np.memmap):  # reshape kept the map for contiguous data; anything else copied
        raise DataError(f"'{path}': shape {A.shape} cannot be viewed as rows without a copy; load it without mmap.")
    if len(X) < 2 or X.shape[1] == 0:
        raise DataError(f"'{path}' has shape {A.shape}; need at least 2 samples and 1 feature.")
    _check_rows_chunked(path, X)
    if not 0.0 < test_size < 1.0:
        raise DataError(f"test_size={test_size} must lie strictly between 0 and 1.")
    n_test = round(len(X) * test_size)
    if n_test < 1 or len(X) - n_test < 1:
        raise DataError(f"'{path}': cannot split {len(X)} samples with test_size={test_size}: each side needs one.")
    X_train, X_test = X[:len(X) - n_test], X[len(X) - n_test:]
    return Dataset(
        name=name or path.stem,
        X_train=X_train,
        X_test=X_test,
        image_shape=image_shape,
        description=(
            f"{len(X)} samples x {X.shape[1]} features memory-mapped from {path}; values as stored (not rescaled), "
            f"contiguous split {len(X_train)} train (first rows) / {len(X_test)} test (last rows)."
        ),
        info={"source": str(path.absolute()), "mmap": True, "test_size": test_size, "seed": seed},
    )
