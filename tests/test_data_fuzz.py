"""Seeded fuzzing of every file parser: damaged files must give a valid result or a DataError.

Small valid IDX (raw and gzipped), .npy, .npz, .csv and CIFAR pickle files are damaged at random
(bytes flipped, truncated, bytes inserted or zeroed, header bytes set to 0xFF, chunks duplicated)
and loaded under a time limit. Any other exception, or a load past the limit, fails the test.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import pickle
import random
import signal
import struct
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from shellvae.data import cifar
from shellvae.data.arrays import load_array
from shellvae.data.base import Dataset
from shellvae.data.cifar import load_cifar10
from shellvae.data.idx import read_idx
from shellvae.errors import DataError

N_CASES = 600  # 100 per format
TIME_LIMIT_S = 5.0


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so no loader's ``except Exception`` can swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the body after ``seconds`` (SIGALRM, main thread on Unix); elsewhere only measure."""
    use_alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if use_alarm:

        def on_alarm(signum, frame):
            raise _Hang()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if time.perf_counter() - start > seconds:
        raise _Hang()


# --------------------------------------------------------------------------- valid seeds
def _idx(rng: np.random.Generator) -> bytes:
    images = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    return bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 3, 4, 5) + images.tobytes()


def _npy(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    np.save(buf, rng.standard_normal((6, 3)))
    return buf.getvalue()


def _npz(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=rng.standard_normal((6, 3)))
    return buf.getvalue()


def _csv(rng: np.random.Generator) -> bytes:
    X, labels = rng.standard_normal((6, 2)), rng.integers(0, 10, 6)
    rows = "\n".join(f"{a:.3f},{b:.3f},{c}" for (a, b), c in zip(X, labels))
    return ("a,b,label\n" + rows + "\n").encode()


def _cifar_batch(rng: np.random.Generator, n: int = 4) -> bytes:
    batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
    return pickle.dumps(batch, protocol=int(rng.integers(2, 6)))


FORMATS = {
    "idx": (_idx, ""),
    "idx.gz": (lambda rng: gzip.compress(_idx(rng), mtime=0), ".gz"),
    "npy": (_npy, ".npy"),
    "npz": (_npz, ".npz"),
    "csv": (_csv, ".csv"),
    "cifar": (_cifar_batch, ""),
}


# --------------------------------------------------------------------------- damage
def mutate(blob: bytes, r: random.Random) -> tuple[bytes, str]:
    data = bytearray(blob)
    ops = []
    for _ in range(r.randint(1, 3)):
        op = r.choice(["flip", "truncate", "insert", "zero", "header", "duplicate"])
        if not data:
            break
        pos = r.randrange(len(data))
        if op == "flip":
            data[pos] ^= 1 << r.randrange(8)
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
        elif op == "zero":
            data[pos : pos + r.randint(1, 16)] = bytes(len(data[pos : pos + 16]))[: r.randint(1, 16)]
        elif op == "header":  # the first bytes hold magic numbers, sizes and lengths
            data[r.randrange(min(len(data), 24))] = 0xFF
        else:
            data[pos:pos] = data[pos : pos + r.randint(1, 64)]
        ops.append(f"{op}@{pos}")
    return bytes(data), "+".join(ops)


def load(fmt: str, path: Path, cifar_dir: Path):
    if fmt.startswith("idx"):
        out = read_idx(path)
        assert isinstance(out, np.ndarray)
        return out
    if fmt == "cifar":
        (cifar_dir / "data_batch_3").write_bytes(path.read_bytes())
        out = load_cifar10(cifar_dir)
        assert 0.0 <= out.X_train.min() and out.X_train.max() <= 1.0
    else:
        out = load_array(path, label_column=-1 if fmt == "csv" else None)
    assert isinstance(out, Dataset) and out.X_train.dtype == np.float32 and np.isfinite(out.X_train).all()
    return out


def test_fuzz_600_damaged_files_give_result_or_data_error(tmp_path):
    """600 seeded cases (100 each: IDX raw, IDX gz, .npy, .npz, .csv, CIFAR pickle), 5 s limit each."""
    r = random.Random(0)
    rng = np.random.default_rng(0)
    cifar_dir = tmp_path / "cifar"
    cifar_dir.mkdir()
    for name in (*cifar.TRAIN_FILES, cifar.TEST_FILE):
        (cifar_dir / name).write_bytes(_cifar_batch(rng))
    failures, outcomes = [], {"ok": 0, "DataError": 0}
    names = sorted(FORMATS)
    for case in range(N_CASES):
        fmt = names[case % len(names)]
        make, suffix = FORMATS[fmt]
        blob, ops = mutate(make(rng), r)
        path = tmp_path / f"case{case}{suffix}"
        path.write_bytes(blob)
        try:
            with time_limit(TIME_LIMIT_S):
                try:
                    load(fmt, path, cifar_dir)
                    outcomes["ok"] += 1
                except DataError as exc:
                    assert str(path.name) in str(exc) or "data_batch_3" in str(exc), f"message lacks the file: {exc}"
                    outcomes["DataError"] += 1
        except _Hang:
            failures.append(f"case {case} {fmt} {ops}: took over {TIME_LIMIT_S} s")
        except Exception:
            failures.append(f"case {case} {fmt} {ops}:\n{traceback.format_exc(limit=4)}")
        path.unlink()
    assert not failures, f"{len(failures)} of {N_CASES} cases failed:\n" + "\n".join(failures[:10])
    assert outcomes["ok"] + outcomes["DataError"] == N_CASES
    assert outcomes["DataError"] > N_CASES // 2  # the damage was real
