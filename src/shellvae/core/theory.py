"""When a Gaussian VAE collapses (docs/method.md §5; Li et al. 2025, arXiv 2510.01621).

With a fixed decoder variance sigma^2 and KL weight beta, a Gaussian VAE collapses when
beta * sigma^2 exceeds lambda_max, the largest eigenvalue of the covariance of the data it sees.
For a linear VAE the optimum is known in closed form: each latent direction switches off as its
eigenvalue is crossed,

    KL(sigma^2, beta) = sum_{lambda_j > beta sigma^2} (1/2) log(lambda_j / (beta sigma^2)).
"""

from __future__ import annotations

import numpy as np


def covariance_spectrum(X) -> np.ndarray:
    """Eigenvalues of the covariance of X (1/N normalisation), largest first."""
    Xc = np.asarray(X, dtype=np.float64) - np.mean(X, axis=0)
    return np.linalg.eigvalsh(Xc.T @ Xc / len(Xc))[::-1]


def collapse_threshold(lambda_max: float, beta: float = 1.0) -> float:
    """The decoder variance above which the posterior collapses: sigma^2* = lambda_max / beta."""
    return lambda_max / beta if beta > 0 else float("inf")


def linear_vae_kl(eigenvalues, sigma2: float, beta: float = 1.0) -> float:
    """Optimal KL (nats) of a linear VAE with enough latent dims, from the data's covariance spectrum."""
    s = beta * sigma2
    lam = np.asarray(eigenvalues, dtype=np.float64)
    return float(0.5 * np.sum(np.log(lam[lam > s] / s)))


def linear_vae_active_units(eigenvalues, sigma2: float, beta: float = 1.0) -> int:
    """Latent directions a linear VAE keeps: eigenvalues above beta * sigma^2."""
    return int(np.sum(np.asarray(eigenvalues) > beta * sigma2))
