"""The container every loader returns: a train/test split of float arrays (N, D)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shellvae.errors import DataError
from shellvae.base.deprecation import deprecated_attribute
from shellvae.base.registry import Registry


@dataclass
class Dataset:
    """A train/test split. ``X_*`` are float32 arrays (N, D); ``y_*`` are int labels or None.

    ``image_shape`` is (C, H, W) for image data (so the conv nets and the image grids can
    reshape the flat rows), None for flat data. ``description`` says where the data came from
    and anything a user must know (a subset, a scaling).
    """

    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    image_shape: tuple[int, int, int] | None = None
    description: str = ""
    info: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.X_train.shape}, test={self.X_test.shape}, "
            f"image_shape={self.image_shape})"
        )


def train_test_split(X: np.ndarray, y: np.ndarray | None, test_size: float, seed: int):
    """Seeded random split (a permutation, so it is reproducible across NumPy versions)."""
    if not 0.0 < test_size < 1.0:
        raise DataError(f"test_size={test_size} must lie strictly between 0 and 1.")
    n = len(X)
    n_test = int(round(n * test_size))
    if n_test < 1 or n - n_test < 1:
        raise DataError(f"cannot split {n} samples with test_size={test_size}: each side needs at least one.")
    perm = np.random.default_rng(seed).permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    return X[train], X[test], (None if y is None else y[train]), (None if y is None else y[test])


def take_subset(X, y, n, seed: int, *, what: str):
    """Seeded random subset of ``n`` rows (rows keep their original order); ``n=None`` keeps all.

    Used by every loader for ``n_train``/``n_test``; a permutation from
    ``np.random.default_rng(seed)`` keeps it reproducible across NumPy versions.
    """
    if n is None:
        return X, y
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"{what} must be a positive integer or None, got {n!r}.")
    if n > len(X):
        raise DataError(f"{what}={n} is larger than the {len(X)} samples available; pass at most {len(X)} (or None for all).")
    idx = np.sort(np.random.default_rng(seed).permutation(len(X))[:n])
    return X[idx], (None if y is None else y[idx])


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: how to load it and how the paper's experiments use it.

    ``load(data_dir, *, n_train, n_test, seed, **options) -> Dataset``; ``arch``: the network the
    paper uses on it ("mlp" or "conv"); ``default_k``: the number of clusters K the experiments train with on
    it, its number of classes (the paper does not give K; ``paper_k``, the released name, is a deprecated alias);
    ``summary``: one line for the CLI's help and the docs.
    """

    name: str
    load: Callable[..., Dataset]
    summary: str
    arch: str = "mlp"
    default_k: int = 10
    paper_k = deprecated_attribute("paper_k", "default_k")


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(name: str, summary: str, *, arch: str = "mlp", default_k: int = 10, aliases: tuple = (),
                     paper_k: int | None = None):
    """Decorator for a loader function: makes it ``load_dataset(name)`` and ``--data name``. ``default_k``: the
    experiments' K on it (its number of classes); ``paper_k``: the released name of ``default_k``, deprecated."""
    if paper_k is not None:
        warnings.warn("register_dataset(paper_k=...) is deprecated: use default_k.", DeprecationWarning, stacklevel=2)
        default_k = paper_k

    def register(load):
        DATASETS.add(name, DatasetSpec(name, load, summary, arch, default_k), aliases)
        return load
    return register
