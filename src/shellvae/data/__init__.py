"""Datasets: every loader returns a ``Dataset`` (train/test float32 arrays, labels where known).

Named datasets are registered where their loader is defined (``@register_dataset`` in
``synthetic.py``, ``mnist.py``, ``cifar.py``); ``DATASETS`` lists them with the network and K the
paper uses on each. ``load_dataset`` picks a loader by name, or by file extension (.npy, .npz,
.csv) for a user's own array.
"""

from __future__ import annotations

from pathlib import Path

from shellvae.data import cifar, mnist, synthetic  # noqa: F401 (importing registers the loaders)
from shellvae.data.base import DATASETS, Dataset, DatasetSpec, register_dataset, take_subset, train_test_split
from shellvae.data.synthetic import make_gmm
from shellvae.errors import DataError

ARRAY_SUFFIXES = (".npy", ".npz", ".csv")


def load_dataset(name: str, data_dir=None, *, n_train=None, n_test=None, seed: int = 0, **options) -> Dataset:
    """Load a dataset by name or path. ``n_train`` / ``n_test`` take seeded subsets."""
    name = str(name)
    if Path(name).suffix.lower() in ARRAY_SUFFIXES:
        from shellvae.data.arrays import load_array

        data = load_array(name, seed=seed, **options)
        data.X_train, data.y_train = take_subset(data.X_train, data.y_train, n_train, seed, what="n_train")
        data.X_test, data.y_test = take_subset(data.X_test, data.y_test, n_test, seed, what="n_test")
        return data
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)} or a "
                        f"{'/'.join(ARRAY_SUFFIXES)} file path.")
    return DATASETS[name].load(data_dir, n_train=n_train, n_test=n_test, seed=seed, **options)


def is_array_file(name: str) -> bool:
    return Path(str(name)).suffix.lower() in ARRAY_SUFFIXES


__all__ = ["ARRAY_SUFFIXES", "DATASETS", "Dataset", "DatasetSpec", "is_array_file", "load_dataset", "make_gmm",
           "register_dataset", "train_test_split"]
