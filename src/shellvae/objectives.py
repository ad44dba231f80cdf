"""The terms of the objective, one function each (METHOD.md §3-4; paper eqs. 7-10).

    L = E_q[-log p(x~|z)] + beta_t KL(q(z|x) || N(0, I)) + lambda_b L_b + lambda_n L_n

Every function returns a batch mean (a scalar tensor) unless its name says per-sample/per-dim,
so the training loop, the metrics and the tests share one definition of each quantity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_nll(x: torch.Tensor, xhat: torch.Tensor, sigma2: float) -> torch.Tensor:
    """-log N(x; xhat, sigma^2 I) = ||x - xhat||^2 / (2 sigma^2) + (D/2) log(2 pi sigma^2), batch mean."""
    sq = (x - xhat).pow(2).sum(dim=-1).mean()
    return sq / (2.0 * sigma2) + 0.5 * x.shape[-1] * math.log(2.0 * math.pi * sigma2)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(0, 1)) for each sample and latent dimension, (B, d), in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent dims, batch mean, in nats."""
    return kl_per_dim(mu, logvar).sum(dim=-1).mean()


def cluster_sq_dist(xhat: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """||xhat_i - mu_c(i)||^2 per sample; ``centers`` holds each sample's own cluster centre."""
    return (xhat - centers).pow(2).sum(dim=-1)


def cluster_loss(xhat: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """L_clu = (1/N) sum_i ||xhat_i - mu_c(i)||^2 (eq. 7). A constant output scores >= delta."""
    return cluster_sq_dist(xhat, centers).mean()


def boundary_penalty(l_clu: torch.Tensor, W: float, delta: float, eps: float) -> torch.Tensor:
    """L_b = relu(L_clu - (delta - eps))^2 + relu(W - L_clu)^2 (eq. 8): zero inside F_eps = [W, delta - eps]."""
    return F.relu(l_clu - (delta - eps)).pow(2) + F.relu(W - l_clu).pow(2)


def norm_penalty(xhat: torch.Tensor, r_min: float, r_max: float) -> torch.Tensor:
    """L_n = mean_i relu(r_min - ||xhat_i||)^2 + relu(||xhat_i|| - r_max)^2 (eq. 9): zero inside the shell."""
    norms = xhat.norm(dim=-1)
    return (F.relu(r_min - norms).pow(2) + F.relu(norms - r_max).pow(2)).mean()


def linear_ramp(progress: float, start: float = 0.1, end: float = 1.0) -> float:
    """The beta schedule's scale s_t: ``start`` at progress 0, ``end`` at progress 1 (progress in [0, 1])."""
    p = min(max(progress, 0.0), 1.0)
    return start + (end - start) * p
