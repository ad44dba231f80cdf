"""Exceptions and warnings raised by shellvae.

Every user-facing error is a ``ShellVAEError`` (a ``ValueError``), so callers can catch the
project's errors in one place while code that expects ``ValueError`` keeps working.
"""

from sklearn.exceptions import NotFittedError as SklearnNotFittedError


class ShellVAEError(ValueError):
    """Bad input or configuration: the message names the problem and what to do."""


class DataError(ShellVAEError):
    """A dataset file or array is missing, malformed, or unusable."""


class DataTypeError(DataError, TypeError):
    """An array holds a value of the wrong type (e.g. a dict in an object array); also a ``TypeError``,
    as NumPy and scikit-learn raise for it."""


class NotFittedError(ShellVAEError, SklearnNotFittedError):
    """A fitted object (estimator, shell, geometry, region) was used before ``fit``; also scikit-learn's
    ``NotFittedError``, so ``except sklearn.exceptions.NotFittedError`` and its checks see it."""


class NonFiniteError(ShellVAEError, FloatingPointError):
    """Training produced a non-finite loss or gradient."""


class EmptyFeasibleRegionWarning(UserWarning):
    """W >= delta: the cluster-aware feasible region is empty, the collapse guarantee does not apply."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed (Python's, or PyTorch's on a CPU or a GPU)."""
    import torch

    return (isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError)))
            or "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower())
