"""Shared fixtures. Everything is seeded; torch runs on one thread, so results do not depend on
the machine's core count and the suite is not slowed by thread oversubscription."""

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

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
