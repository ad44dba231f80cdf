"""Input checks shared by every layer: arrays, scalars, widths, and reading rows in chunks.

The lowest layer of the package (with ``errors`` and ``io``): the data loaders, the shell, the
geometry and the estimator all validate through these functions, so one input gets one message
wherever it enters. Arrays that may be memory maps are read ``CHUNK_ROWS`` rows at a time.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import scipy.sparse

from shellvae.base.caller import user_stacklevel
from shellvae.errors import DataError, DataTypeError, ShellVAEError


#: data whose every varying feature spans fewer than this many rounding units (eps * max|x|) is
#: refused as near-constant: its rounding error is then >= ~10% of its spread, and the shell
#: would keep directions made of noise
NEAR_CONSTANT_ULPS = 10

#: warn when more than this share of the rows repeat another row
DUPLICATE_WARN_SHARE = 0.5


def check_array(X, name: str = "X", min_samples: int = 1, dtype=np.float32, allow_constant: bool = True) -> np.ndarray:
    """Validate a data matrix: 2-D, real, finite, non-empty. Returns it as ``dtype`` (no copy when it already is).

    ``dtype=None`` keeps float arrays as they are (no copy, no rounding) and converts the rest to
    float64. Integer and bool arrays, and object arrays of numbers, are converted; complex, sparse, string
    and date arrays are refused (the messages use scikit-learn's wording where its checks look for it).
    ``allow_constant=False`` also refuses data that is constant, or varies only at the rounding
    level of its dtype (see ``NEAR_CONSTANT_ULPS``): what fitting a shell needs.
    A ``np.memmap`` with ``dtype=None`` is checked ``CHUNK_ROWS`` rows at a time and returned
    as it is (still mapped, in its stored dtype): data larger than memory is never loaded whole.
    """
    mapped = X if isinstance(X, np.memmap) and dtype is None else None
    if scipy.sparse.issparse(X):
        raise DataError(
            f"{name} is a sparse {type(X).__name__}: sparse input is not supported (the shell map makes every row "
            "dense). Pass a dense array, X.toarray(), if it fits in memory."
        )
    try:
        X = np.asarray(X)
    except Exception as exc:  # ragged lists, tensors on a GPU or with grad, and the like
        raise DataError(f"{name} could not be read as an array: {exc}") from exc
    if X.dtype.kind == "c":
        raise DataError(
            f"{name} holds complex numbers (dtype {X.dtype}). Complex data not supported: shellvae needs real values; "
            "pass X.real or np.abs(X)."
        )
    if X.dtype == object:  # Python numbers (as scikit-learn accepts them); anything else is refused
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            kind = DataTypeError if isinstance(exc, TypeError) else DataError
            raise kind(f"{name} has dtype object with a value that is not a number ({exc}); fix that value, or "
                       "convert with np.asarray(X, dtype=float).") from None
    if X.dtype.kind not in "biuf":
        raise DataError(f"{name} has dtype {X.dtype}; expected a numeric array of shape (n_samples, n_features).")
    if X.ndim != 2:
        how = ("X.reshape(-1, 1) if it has one feature, X.reshape(1, -1) if it is one sample" if X.ndim < 2
               else "flatten images first, e.g. X.reshape(len(X), -1)")
        raise DataError(f"{name} has shape {X.shape}; expected 2 dimensions (n_samples, n_features). Reshape your "
                        f"data: {how}.")
    # the wording of scikit-learn's check_array, which its estimator checks look for
    if X.shape[0] < min_samples:
        raise DataError(f"{name} has {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of {min_samples} is "
                        "required.")
    if X.shape[1] == 0:
        raise DataError(f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if mapped is not None:
        return _check_in_chunks(mapped, name, allow_constant)
    source = X
    if dtype is None:
        dtype = X.dtype if X.dtype.kind == "f" else np.float64
    with np.errstate(over="ignore", invalid="ignore"):  # values too big for dtype become inf: reported below
        X = X.astype(dtype, copy=False)
    if not np.isfinite(X).all():
        row, col = np.argwhere(~np.isfinite(X))[0]
        count = int((~np.isfinite(X)).sum())
        if np.isfinite(source[row, col]):
            raise DataError(
                f"{name} holds {count} value(s) too large for {np.dtype(dtype).name} (first at row {row}, "
                f"column {col}: {source[row, col]:.3g}); rescale the data, e.g. X / np.abs(X).max()."
            )
        raise DataError(
            f"{name} contains {count} NaN or infinite value(s) (first at row {row}, column {col}); "
            "remove or impute them first."
        )
    if not allow_constant:
        _check_not_constant(X, name, _coarser_float(source.dtype, X.dtype))
    return X


#: rows of an array read at a time wherever it may be a memory map (a few MB in memory at once):
#: the checks here, the shell fit, streaming K-means, ``load_array(mmap=True)``
CHUNK_ROWS = 65_536


def row_chunks(X, chunk_rows: int = CHUNK_ROWS, dtype=np.float64):
    """(start, block) for consecutive blocks of X's rows, as ``dtype`` (None: as stored): one block in memory."""
    for start in range(0, len(X), chunk_rows):
        yield start, np.asarray(X[start:start + chunk_rows], dtype=dtype)


def first_bad_value(block: np.ndarray, max_abs: float | None = None) -> tuple[int, int] | None:
    """(row, column) of a block's first NaN or infinite value (or finite one beyond ``max_abs``), else None."""
    if block.dtype.kind != "f":
        return None
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(block) if max_abs is None else ~(np.abs(block) <= max_abs)
    if not bad.any():
        return None
    row, col = np.argwhere(bad)[0]
    return int(row), int(col)


def row_hashes(X: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's bytes (equal rows, equal hashes; a collision is ~N^2 / 2^64 unlikely)."""
    return np.fromiter((hash(row.tobytes()) for row in np.ascontiguousarray(X)), dtype=np.int64, count=len(X))


def _check_in_chunks(X: np.memmap, name: str, allow_constant: bool) -> np.memmap:
    """``check_array``'s finiteness and constancy checks on a memory map, a block of rows at a time."""
    lo = hi = None
    for start, block in row_chunks(X, dtype=None):
        bad = first_bad_value(block)
        if bad is not None:
            raise DataError(
                f"{name} contains NaN or infinite value(s) (first at row {start + bad[0]}, column {bad[1]}); "
                "remove or impute them first."
            )
        b_lo, b_hi = block.min(axis=0), block.max(axis=0)
        lo, hi = (b_lo, b_hi) if lo is None else (np.minimum(lo, b_lo), np.maximum(hi, b_hi))
    if not allow_constant:
        rounding = X.dtype if X.dtype.kind == "f" else np.dtype(np.float64)
        _check_not_constant(np.stack([lo, hi]), name, rounding)  # per-feature min and max are all it reads
    return X


def _coarser_float(source: np.dtype, target: np.dtype) -> np.dtype:
    """The float type whose rounding the values carry: stored as ``source`` (ints are exact), now ``target``."""
    floats = [np.dtype(t) for t in (source, target) if np.dtype(t).kind == "f"]
    return max(floats, key=lambda t: np.finfo(t).eps)


def _check_not_constant(X: np.ndarray, name: str, rounding: np.dtype) -> None:
    """Refuse X if no feature varies by more than ``NEAR_CONSTANT_ULPS`` rounding units of its own magnitude.

    Per feature, so an exactly constant column (a bias term, a blank pixel) never counts against the others.
    """
    lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
    span, size = hi - lo, np.maximum(np.abs(lo), np.abs(hi))
    if not span.any():
        raise DataError(
            f"{name} is constant (every sample is the same): it has no directions to put on a shell. "
            "Check that the right array was passed."
        )
    varying = np.flatnonzero(span)
    with np.errstate(divide="ignore"):  # eps * size underflows only for subnormal sizes: inf, i.e. not constant
        ulps = span[varying] / (np.finfo(rounding).eps * size[varying])
    if ulps.max() < NEAR_CONSTANT_ULPS:
        j = int(varying[ulps.argmax()])
        raise DataError(
            f"{name} is constant up to rounding: no feature varies by more than {NEAR_CONSTANT_ULPS} rounding units of "
            f"{rounding.name} (the widest, feature {j}, spans {span[j]:.3g} at magnitude {size[j]:.3g}), so its shell "
            "would be made of rounding noise. Check that the right array was passed; if the variation is real, "
            "subtract the offset in float64 before any conversion (X - X.mean(0))."
        )


def check_distinct_rows(X: np.ndarray, name: str, need: int, why: str) -> int:
    """Count X's distinct rows; raise if fewer than ``need`` (``why`` names the parameter that needs them).

    Duplicated rows are legitimate data (they weight K-means, the geometry and training like
    extra samples) and are kept; only when more than ``DUPLICATE_WARN_SHARE`` of the rows repeat
    another is there a warning, since that is often an accident (a broken loader, padding).
    """
    return check_distinct_count(len(np.unique(row_hashes(X))), len(X), name, need, why)


def check_distinct_count(n_distinct: int, n: int, name: str, need: int, why: str) -> int:
    """``check_distinct_rows``' error and warning, for ``n_distinct`` distinct rows counted elsewhere (in chunks)."""
    if n_distinct < need:
        raise DataError(
            f"{name} has only {n_distinct} distinct row(s) among its {n} samples, but {why} needs at least "
            f"{need}: K-means cannot form more clusters than there are distinct points. Use fewer clusters, or check "
            "why the data repeats itself."
        )
    if n_distinct < (1.0 - DUPLICATE_WARN_SHARE) * n:
        warnings.warn(
            f"{name} has {n} samples but only {n_distinct} distinct rows ({1 - n_distinct / n:.0%} are "
            "repeats). They are kept, weighting the clusters and training like extra samples; if they are not "
            "intended, remove them with np.unique(X, axis=0).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return n_distinct


def check_n_features(X: np.ndarray, name: str, n_features: int, reference: str) -> None:
    """Raise if X's width differs from the ``n_features`` that ``reference`` (what X goes to) expects;
    in scikit-learn's wording, which its estimator checks look for."""
    if X.shape[1] != n_features:
        raise DataError(
            f"{name} has {X.shape[1]} features, but {reference} is expecting {n_features} features as input: pass rows "
            f"with those {n_features} features (columns), in the same order."
        )


def check_scalar(value, name: str, *, integer: bool = False, low: float = 0, low_open: bool = True,
                 high: float | None = None, fix: str = ""):
    """A finite real (an integer if ``integer``; never a bool) in (low, high], or [low, high] if not ``low_open``.

    Returns ``value``; otherwise raises ``ShellVAEError`` naming the parameter, the rule and ``fix``.
    """
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, (bool, np.bool_))
    ok = ok and (isinstance(value, numbers.Integral) or math.isfinite(value))  # ints: finite, may not fit a float
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (high is None or value <= high)
    if not ok:
        rule = f"{'an integer' if integer else 'a finite number'} {'>' if low_open else '>='} {low}"
        if high is not None:
            rule += f" and <= {high}"
        raise ShellVAEError(f"{name}={value!r}: must be {rule}.{' ' + fix if fix else ''}")
    return value
