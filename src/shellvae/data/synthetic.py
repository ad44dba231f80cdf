"""The paper's synthetic data: a Gaussian mixture, 8 components in 32 dimensions (docs/method.md §7).

Component means are drawn N(0, separation^2 I), each sample is its component's mean plus
N(0, noise^2 I) noise, components are equally likely. With the defaults the clusters are
well separated, as the paper's synthetic experiment needs. Seeded: the same seed gives the same
arrays on every platform (NumPy's PCG64 ``default_rng``).
"""

from __future__ import annotations

import numpy as np

from shellvae.data.base import Dataset, register_dataset, train_test_split
from shellvae.errors import DataError


def make_gmm(
    n_samples: int = 50_000,
    n_components: int = 8,
    n_features: int = 32,
    *,
    separation: float = 2.0,
    noise: float = 1.0,
    test_size: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """A seeded Gaussian-mixture dataset split into train and test (labels = component)."""
    if n_samples < 2 or n_components < 1 or n_features < 1:
        raise DataError(f"make_gmm needs n_samples >= 2, n_components >= 1, n_features >= 1; got "
                        f"{n_samples}, {n_components}, {n_features}.")
    if separation < 0 or noise <= 0:
        raise DataError(f"separation={separation} must be >= 0 and noise={noise} > 0.")
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, separation, size=(n_components, n_features))
    y = rng.integers(0, n_components, size=n_samples)
    X = (means[y] + rng.normal(0.0, noise, size=(n_samples, n_features))).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size, seed)
    return Dataset(
        name="synthetic",
        X_train=X_train, X_test=X_test, y_train=y_train, y_test=y_test,
        description=f"Gaussian mixture: {n_components} components, {n_features} dims, {n_samples} samples "
                    f"(separation {separation}, noise {noise}, seed {seed})",
        info=dict(means=means, n_components=n_components),
    )


@register_dataset("synthetic", "the paper's 8-component Gaussian mixture in 32 dims, 50,000 samples (make_gmm)",
                  default_k=8)
def load_synthetic(data_dir=None, *, n_train=None, n_test=None, seed: int = 0, n_samples: int = 50_000,
                   **options) -> Dataset:
    """``make_gmm``; ``n_train`` / ``n_test`` set the split sizes (default 40,000 / 10,000 when one is given)."""
    if n_train is not None or n_test is not None:
        n_train = 40_000 if n_train is None else n_train
        n_test = 10_000 if n_test is None else n_test
        for what, value in (("n_train", n_train), ("n_test", n_test)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"{what}={value!r}: must be a positive integer or None.")
        n_samples = n_train + n_test
        options["test_size"] = n_test / n_samples
    return make_gmm(n_samples, seed=seed, **options)
