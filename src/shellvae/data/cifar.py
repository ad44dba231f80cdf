"""CIFAR-10 loader (grayscale), reading the "python version" batches safely.

Data format (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html): the directory
``cifar-10-batches-py`` holds ``data_batch_1`` .. ``data_batch_5`` (training, 10000 images each)
and ``test_batch`` (10000). Each is a pickle (written by Python 2) of a dict with
- ``b"data"``: uint8 array (10000, 3072); a row is 1024 red, then 1024 green, then 1024 blue
  values, each a row-major 32 x 32 image;
- ``b"labels"``: list of 10000 ints in 0..9.

Pickle can run arbitrary code, so the files are read with a restricted unpickler: the only
globals it resolves are the handful NumPy uses to pickle an ndarray, and even those are replaced
by stand-ins that validate their arguments and build the array with ``np.frombuffer`` instead of
running NumPy's own ``__setstate__`` on untrusted input (pickle protocols 2 to 5 are understood). Anything else is refused (``DataError``).

Images are converted to grayscale with the ITU-R BT.601 luma, Y = 0.299 R + 0.587 G + 0.114 B,
and scaled to [0, 1] by dividing by 255. shellvae never downloads CIFAR-10.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
from pathlib import Path

import numpy as np

from shellvae.data.base import Dataset, register_dataset, take_subset
from shellvae.errors import DataError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
IMAGE_SHAPE = (1, 32, 32)
N_CLASSES = 10
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BT601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights for R, G, B
_PLAIN_DTYPE = re.compile(r"[biuf][1248]")  # numeric dtypes only: no objects, strings or records


class _BadPickle(Exception):
    """A pickle that is well-formed but not a plain CIFAR batch (converted to DataError with the path)."""


def _text(value) -> str:
    """Python 2 pickles read with encoding="bytes" give bytes where Python 3 ones give str."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


class _DtypeStub:
    """Stand-in for ``numpy.dtype(typestr, align, copy)``; BUILD then sets the byte order."""

    __slots__ = ("dtype",)

    def __init__(self, typestr, *_flags):
        typestr = _text(typestr)
        if not isinstance(typestr, str) or not _PLAIN_DTYPE.fullmatch(typestr):
            raise _BadPickle(f"refused dtype {typestr!r}: only plain numeric dtypes are allowed")
        self.dtype = np.dtype(typestr)

    def __setstate__(self, state):
        # state = (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) < 5 or any(s is not None for s in state[2:5]):
            raise _BadPickle("refused dtype state: only plain numeric dtypes are allowed")
        order = _text(state[1])
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)
        elif order not in ("|", "="):
            raise _BadPickle(f"bad dtype byte order {order!r}")


class _ArrayStub:
    """Stand-in for ``_reconstruct(ndarray, (0,), b"b")``; BUILD's state carries the actual array."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        # state = ([version,] shape, dtype, is_fortran, rawdata), as in ndarray.__reduce__
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise _BadPickle("bad ndarray state")
        shape, dtype, fortran, raw = state
        self.array = _build_array(raw, dtype, shape, "F" if fortran else "C")


def _build_array(raw, dtype, shape, order) -> np.ndarray:
    """Validate what a pickle says an array is, then build it from the raw bytes (no NumPy setstate)."""
    if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
        raise _BadPickle(f"bad ndarray shape {shape!r}")
    if not isinstance(dtype, _DtypeStub) or not isinstance(raw, (bytes, bytearray)) or order not in ("C", "F"):
        raise _BadPickle("bad ndarray state (dtype, data or order of the wrong type)")
    expected = int(np.prod(shape, dtype=object)) * dtype.dtype.itemsize
    if len(raw) != expected:
        raise _BadPickle(f"ndarray of shape {shape} needs {expected} bytes of data but the pickle holds {len(raw)}")
    return np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order=order)


class _NdarrayMarker:
    """Answers the global ``numpy.ndarray``: only usable as ``_reconstruct``'s first argument."""

    __slots__ = ()


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only the globals an ndarray pickle needs, each to a validating stand-in."""

    def __init__(self, file, path):
        super().__init__(file, encoding="bytes")
        self._path = path
        self._ndarray = _NdarrayMarker()
        # Bound methods and per-load objects: a malicious BUILD cannot re-point shared state.
        self._allowed = {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.numeric", "_frombuffer"): self._frombuffer,  # pickle protocol 5
            ("numpy.core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy", "ndarray"): self._ndarray,
            ("numpy", "dtype"): self._dtype,
            ("_codecs", "encode"): self._encode,
        }

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise DataError(
                f"CIFAR batch '{self._path}': refused to unpickle the global {module}.{name}; a CIFAR-10 "
                "batch only holds a NumPy array and a list of labels. The file is not a genuine "
                "CIFAR-10 batch and may be malicious."
            ) from None

    def _reconstruct(self, cls, shape, typecode):
        if cls is not self._ndarray:
            raise _BadPickle("refused _reconstruct of something other than numpy.ndarray")
        return _ArrayStub()

    def _frombuffer(self, buf, dtype, shape, order, axis_order=None):
        if axis_order is not None:
            raise _BadPickle("refused _frombuffer with an axis order")
        return _build_array(buf, dtype, shape, _text(order))

    def _dtype(self, *args):
        return _DtypeStub(*args)

    def _encode(self, obj, encoding="utf-8", errors="strict"):
        # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, "latin1").
        if not isinstance(obj, str) or _text(encoding).lower() not in ("latin1", "latin-1"):
            raise _BadPickle("refused _codecs.encode other than str -> latin1 bytes")
        return obj.encode("latin-1")


def _check_opcodes(raw: bytes) -> None:
    """Walk the opcode stream in pure Python before the C unpickler trusts it.

    The C unpickler allocates what a length field or memo index says before reading: a flipped
    byte in BYTEARRAY8's length or a LONG_BINPUT index of 2**28 costs gigabytes. ``genops`` only
    returns bytes that are really there, so lengths are checked against the file here, and memo
    indices are bounded by the number of opcodes (a real pickle numbers its memo entries in order).
    """
    for n_ops, (op, arg, _pos) in enumerate(pickletools.genops(raw), start=1):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and not (isinstance(arg, int) and 0 <= arg <= n_ops):
            raise _BadPickle(f"memo index {arg!r} out of range")


def _unpickle(path: Path) -> object:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"CIFAR batch '{path}' cannot be read ({exc}).") from exc
    if not raw:
        raise DataError(f"CIFAR batch '{path}' is empty.")
    try:
        _check_opcodes(raw)
        # From memory: a read past the end returns what is there instead of allocating the claim.
        return _SafeUnpickler(io.BytesIO(raw), path).load()
    except DataError:
        raise
    except _BadPickle as exc:
        raise DataError(f"CIFAR batch '{path}': {exc}; the file is not a genuine CIFAR-10 batch.") from exc
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... : all mean "corrupt"
        raise DataError(
            f"CIFAR batch '{path}' is corrupt or truncated ({type(exc).__name__}: {exc}). "
            "Re-extract cifar-10-python.tar.gz."
        ) from exc


def _get(batch: dict, key: str):
    for k in (key.encode(), key):  # Python 2 pickles give b"data"; a Python 3 re-save may give "data"
        if k in batch:
            return batch[k]
    return None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle and validate one batch; return (uint8 (N, 3072), int64 labels (N,))."""
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR batch '{path}' holds a {type(batch).__name__}, not the expected dict.")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        raise DataError(f"CIFAR batch '{path}' lacks the keys b'data' and/or b'labels' (it has {sorted(map(repr, batch))}).")
    if isinstance(data, _ArrayStub):
        data = data.array
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) == 0:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"CIFAR batch '{path}': b'data' is a {desc}; expected a uint8 array (N, 3072).")
    if isinstance(labels, _ArrayStub):
        labels = labels.array
    try:
        y = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    except (ValueError, OverflowError):
        y = None
    if y is None or y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"CIFAR batch '{path}': b'labels' must be a list of integers, got {type(labels).__name__}.")
    if len(y) != len(data):
        raise DataError(f"CIFAR batch '{path}' has {len(data)} images but {len(y)} labels.")
    if y.min() < 0 or y.max() >= N_CLASSES:
        raise DataError(f"CIFAR batch '{path}' has labels outside 0..9 (min {y.min()}, max {y.max()}).")
    return data, y.astype(np.int64)


def _to_gray(data: np.ndarray) -> np.ndarray:
    """uint8 (N, 3072) RGB planes -> float32 (N, 1024) BT.601 luma scaled to [0, 1]."""
    rgb = data.reshape(len(data), 3, 1024)
    w = np.asarray(BT601, dtype=np.float32) / np.float32(255.0)
    gray = w[0] * rgb[:, 0].astype(np.float32)
    gray += w[1] * rgb[:, 1]
    gray += w[2] * rgb[:, 2]
    return np.clip(gray, 0.0, 1.0, out=gray)  # the weights sum to 1; clip float32 rounding at white


def _locate(data_dir) -> Path:
    directory = Path(data_dir).expanduser().absolute()
    if not (directory / TEST_FILE).is_file() and (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"  # the parent of the extracted folder also works
    missing = [name for name in (*TRAIN_FILES, TEST_FILE) if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 batch file(s) missing from '{directory}': {', '.join(missing)}. shellvae cannot "
            "download CIFAR-10: download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
            "extract it, and pass the resulting directory cifar-10-batches-py as data_dir."
        )
    return directory


@register_dataset("cifar10", "the python batches in --data-dir, as grayscale (cannot be downloaded by shellvae)",
                  arch="conv", aliases=("cifar-10",))
def load_cifar10(data_dir, *, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """Load CIFAR-10 from ``cifar-10-batches-py`` as grayscale float32 rows (N, 1024) in [0, 1].

    Grayscale is the ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B, divided by 255 (not
    rounded to integers); ``image_shape`` is (1, 32, 32). ``n_train``/``n_test`` take seeded random
    subsets. The pickled batches are read with a restricted unpickler (see the module docstring).
    """
    if data_dir is None:
        raise DataError("cifar10 needs --data-dir: the folder 'cifar-10-batches-py' with the python batches "
                        "(CIFAR-10 cannot be downloaded by shellvae).")
    directory = _locate(data_dir)
    train = [_read_batch(directory / name) for name in TRAIN_FILES]
    test = _read_batch(directory / TEST_FILE)
    data_train = np.concatenate([d for d, _ in train])
    y_train = np.concatenate([y for _, y in train])
    full = (len(data_train), len(test[0]))
    data_train, y_train = take_subset(data_train, y_train, n_train, seed, what="n_train")
    data_test, y_test = take_subset(*test, n_test, seed, what="n_test")
    subset = (len(data_train), len(data_test)) != full
    note = f" Random subset (seed {seed}) of the {full[0]} / {full[1]} images." if subset else ""
    return Dataset(
        name="cifar10",
        X_train=_to_gray(data_train),
        X_test=_to_gray(data_test),
        y_train=y_train,
        y_test=y_test,
        image_shape=IMAGE_SHAPE,
        description=(
            f"CIFAR-10 (Krizhevsky 2009), {len(data_train)} train / {len(data_test)} test 32x32 images converted "
            "to grayscale with the ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B and scaled to [0, 1] "
            f"(divided by 255), read from {directory}.{note}"
        ),
        info={
            "source": str(directory),
            "subset": subset,
            "n_available": full,
            "seed": seed,
            "grayscale": "ITU-R BT.601 luma",
            "label_names": LABEL_NAMES,
        },
    )
