"""Datasets: every loader returns a ``Dataset`` (train/test float32 arrays, labels where known).

``load_dataset`` picks a loader by name (synthetic, mnist, fashion_mnist, cifar10) or by file
extension (.npy, .npz, .csv).
"""

from __future__ import annotations

from pathlib import Path

from shellvae.data.base import Dataset, take_subset, train_test_split
from shellvae.validation import check_array
from shellvae.data.synthetic import make_gmm
from shellvae.errors import DataError

NAMED = ("synthetic", "mnist", "fashion_mnist", "cifar10")
ARRAY_SUFFIXES = (".npy", ".npz", ".csv")


def load_dataset(name: str, data_dir=None, *, n_train=None, n_test=None, seed: int = 0, **kwargs) -> Dataset:
    """Load a dataset by name or path. ``n_train`` / ``n_test`` take seeded subsets (named datasets)."""
    name = str(name)
    if name == "synthetic":
        n = kwargs.pop("n_samples", 50_000)
        if n_train is not None or n_test is not None:
            n_train = 40_000 if n_train is None else n_train
            n_test = 10_000 if n_test is None else n_test
            for what, value in (("n_train", n_train), ("n_test", n_test)):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise DataError(f"{what}={value!r}: must be a positive integer or None.")
            n = n_train + n_test
            kwargs["test_size"] = n_test / n
        return make_gmm(n, seed=seed, **kwargs)
    if name in ("mnist", "fashion_mnist", "fashion-mnist"):
        from shellvae.data import mnist

        loader = mnist.load_mnist if name == "mnist" else mnist.load_fashion_mnist
        return loader(data_dir, n_train=n_train, n_test=n_test, seed=seed)
    if name in ("cifar10", "cifar-10"):
        from shellvae.data.cifar import load_cifar10

        if data_dir is None:
            raise DataError("cifar10 needs --data-dir: the folder 'cifar-10-batches-py' with the python batches "
                            "(CIFAR-10 cannot be downloaded by shellvae).")
        return load_cifar10(data_dir, n_train=n_train, n_test=n_test, seed=seed)
    if Path(name).suffix.lower() in ARRAY_SUFFIXES:
        from shellvae.data.arrays import load_array

        data = load_array(name, seed=seed, **kwargs)
        data.X_train, data.y_train = take_subset(data.X_train, data.y_train, n_train, seed, what="n_train")
        data.X_test, data.y_test = take_subset(data.X_test, data.y_test, n_test, seed, what="n_test")
        return data
    raise DataError(f"unknown dataset {name!r}: use one of {', '.join(NAMED)} or a .npy/.npz/.csv file path.")


__all__ = ["Dataset", "check_array", "load_dataset", "make_gmm", "train_test_split"]
