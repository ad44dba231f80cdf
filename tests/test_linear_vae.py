"""The linear-VAE closed form (docs/method.md §5) reproduced by training: proves the KL metric and sigma^2 plumbing.

For a linear Gaussian VAE with fixed decoder variance sigma^2 and KL weight beta, the optimum has
KL = sum over eigenvalues lambda_j > beta sigma^2 of (1/2) log(lambda_j / (beta sigma^2)).
"""

import numpy as np
import pytest
import torch

from shellvae.training.batches import TrainData
from shellvae.training.methods import Objective, Vanilla
from shellvae.evaluation.metrics import active_units, encode_all, kl_per_dim
from shellvae.core.model import mlp_vae
from shellvae.core.theory import covariance_spectrum, linear_vae_active_units, linear_vae_kl
from shellvae.training.loop import train

SPECTRUM = np.array([3.0, 1.5, 0.8, 0.3, 0.1, 0.05])
TOLERANCE = 0.03  # relative, on the total KL; measured error ~1%


@pytest.fixture(scope="module")
def gaussian_data():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    X = (rng.normal(size=(20_000, 6)) * np.sqrt(SPECTRUM)) @ Q.T
    return X, covariance_spectrum(X)


def train_linear_vae(X, sigma2, beta, latent_dim=4):
    torch.manual_seed(0)
    model = mlp_vae(X.shape[1], latent_dim, encoder_hidden=(), decoder_hidden=())  # linear encoder and decoder
    method = Vanilla()
    train(model, method, TrainData.build(X, None, method), Objective(sigma2=sigma2, beta=beta), epochs=40,
          batch_size=256, lr=3e-3, seed=0, progress=False)
    mu, logvar = encode_all(model, torch.as_tensor(X, dtype=torch.float32))
    return float(kl_per_dim(mu, logvar).sum(-1).mean()), active_units(mu)


@pytest.mark.parametrize("sigma2, beta", [(0.5, 1.0), (1.0, 1.0), (0.4, 2.0)])
def test_trained_kl_matches_closed_form(gaussian_data, sigma2, beta):
    X, eigenvalues = gaussian_data
    kl, au = train_linear_vae(X, sigma2, beta)
    expected = linear_vae_kl(eigenvalues, sigma2, beta)
    assert kl == pytest.approx(expected, rel=TOLERANCE)
    assert au == linear_vae_active_units(eigenvalues, sigma2, beta)  # one per eigenvalue above beta sigma^2


def test_closed_form_by_hand():
    # eigenvalues 4 and 1 at beta * sigma^2 = 0.5: (1/2) log 8 + (1/2) log 2 = 2 log 2
    assert linear_vae_kl([4.0, 1.0, 0.25], 0.25, 2.0) == pytest.approx(2 * np.log(2))
    assert linear_vae_active_units([4.0, 1.0, 0.25], 0.25, 2.0) == 2


def test_collapses_above_largest_eigenvalue(gaussian_data):
    X, eigenvalues = gaussian_data
    kl, au = train_linear_vae(X, sigma2=1.5 * eigenvalues.max(), beta=1.0)
    assert linear_vae_kl(eigenvalues, 1.5 * eigenvalues.max(), 1.0) == 0.0
    assert kl < 0.01 and au == 0
