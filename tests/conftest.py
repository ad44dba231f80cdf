"""Shared fixtures. Everything is seeded; torch runs single-threaded-deterministic on CPU."""

from pathlib import Path

import numpy as np
import pytest

from shellvae import make_gmm

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def small_gmm():
    """A 6,000-sample version of the paper's 8-component, 32-dim mixture."""
    return make_gmm(6_000, seed=0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
