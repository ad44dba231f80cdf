"""Reader for IDX files, the format of MNIST and Fashion-MNIST.

Format (LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"):

    bytes 0-1   zero
    byte  2     element type: 0x08 ubyte, 0x09 sbyte, 0x0B short (2 bytes), 0x0C int (4 bytes),
                0x0D float (4 bytes), 0x0E double (8 bytes)
    byte  3     number of dimensions d
    then d      big-endian uint32 sizes, one per dimension
    then        the elements, big-endian, row-major (last index fastest)

So MNIST images start with 00 00 08 03 (magic 2051) and labels with 00 00 08 01 (magic 2049).
Files are often distributed gzipped; gzip is detected by its magic bytes (1f 8b), not the name.

The header is untrusted: its claimed size is compared with the bytes actually present before
anything of that size is allocated, so a corrupt header cannot make the reader hang or reserve
absurd memory. Every failure is a ``DataError`` naming the file.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from shellvae.errors import DataError

#: IDX element-type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
# DEFLATE cannot expand more than about 1032:1, so a gzip file of n bytes decompresses to at most
# ~1032 n bytes. A header claiming more than that is corrupt, and we know it before decompressing.
_MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 20  # read in 1 MiB pieces so no single read allocates what the header claims


def _fail(path, problem: str, advice: str = "Re-download or re-extract the file.") -> DataError:
    return DataError(f"IDX file '{path}': {problem}. {advice}")


def _read_upto(stream, n: int) -> bytearray:
    """Read at most ``n`` bytes, in bounded chunks (fewer only at end of stream)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _parse_header(path, stream) -> tuple[np.dtype, tuple[int, ...], int]:
    """Read and validate the magic and dimensions; return (dtype, shape, header length)."""
    magic = _read_upto(stream, 4)
    if len(magic) < 4:
        raise _fail(path, f"file is too short ({len(magic)} bytes) to hold the 4-byte IDX magic number")
    if magic[0] != 0 or magic[1] != 0:
        raise _fail(
            path,
            f"bad magic number {magic.hex(' ')}: an IDX file starts with two zero bytes",
            "Is this really an IDX file (e.g. train-images-idx3-ubyte)? A gzip file that was "
            "decompressed twice or saved as HTML by a browser looks like this.",
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise _fail(path, f"bad magic number {magic.hex(' ')}: unknown element type 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise _fail(path, f"bad magic number {magic.hex(' ')}: zero dimensions")
    raw_dims = _read_upto(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise _fail(path, f"truncated header: {ndim} dimension sizes declared but only {len(raw_dims)} of {4 * ndim} header bytes present")
    shape = struct.unpack(f">{ndim}I", raw_dims)
    return IDX_DTYPES[code], shape, 4 + 4 * ndim


def _payload_size(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d  # Python ints: no overflow, however absurd the header
    return n * dtype.itemsize


def _check_length(path, dtype, shape, expected: int, actual: int) -> None:
    if actual < expected:
        raise _fail(
            path,
            f"truncated: the header declares shape {shape} of {dtype.str[1:]} = {expected} payload bytes "
            f"but only {actual} are present",
        )
    if actual > expected:
        raise _fail(
            path,
            f"trailing bytes: the header declares shape {shape} of {dtype.str[1:]} = {expected} payload bytes "
            f"but {actual} are present",
        )


def _read_plain(path, f, file_size: int):
    dtype, shape, header_len = _parse_header(path, f)
    expected = _payload_size(dtype, shape)
    _check_length(path, dtype, shape, expected, file_size - header_len)  # before reading a byte of payload
    payload = bytearray(expected)
    if f.readinto(payload) != expected:  # the file changed under us
        raise _fail(path, "file shrank while being read")
    return dtype, shape, payload


def _read_gzip(path, f, file_size: int):
    with gzip.GzipFile(fileobj=f, mode="rb") as gz:
        dtype, shape, header_len = _parse_header(path, gz)
        expected = _payload_size(dtype, shape)
        if header_len + expected > _MAX_DEFLATE_RATIO * file_size + 1024:
            raise _fail(
                path,
                f"truncated: the header declares shape {shape} = {expected} payload bytes, more than a "
                f"{file_size}-byte gzip file can possibly hold",
            )
        # Ask for one byte more than needed: getting it means trailing bytes, and reaching the
        # end of the stream makes gzip verify its CRC and length trailer.
        payload = _read_upto(gz, expected + 1)
        _check_length(path, dtype, shape, expected, len(payload))
    return dtype, shape, payload


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into an array of its declared shape.

    Returns a writable array in native byte order (uint8 for MNIST). Raises ``DataError``,
    naming the file and the problem, for a missing or unreadable file, a corrupt gzip stream, a
    bad magic number, or a payload shorter (truncated) or longer (trailing bytes) than the
    header declares: a silently misread dataset is worse than a loud error.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            if file_size == 0:
                raise _fail(path, "file is empty")
            is_gzip = f.read(2) == _GZIP_MAGIC
            f.seek(0)
            if is_gzip:
                dtype, shape, payload = _read_gzip(path, f, file_size)
            else:
                dtype, shape, payload = _read_plain(path, f, file_size)
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"IDX file '{path}' does not exist.") from exc
    except (OSError, EOFError, zlib.error, struct.error) as exc:
        # gzip.BadGzipFile is an OSError; EOFError is a gzip stream cut short.
        kind = "corrupt or truncated gzip stream" if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)) else "cannot be read"
        raise _fail(path, f"{kind} ({type(exc).__name__}: {exc})") from exc
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))  # native order, a fresh writable copy
    return array
