"""The terms of the objective, one function each (docs/method.md §3-4; paper eqs. 7-10).

    L = E_q[-log p(x~|z)] + beta_t KL(q(z|x) || N(0, I)) + lambda_b L_b + lambda_n L_n

Every function returns a batch mean (a scalar tensor) unless its name says per-sample/per-dim,
so the training loop, the metrics and the tests share one definition of each quantity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from shellvae.core.model import sample_posterior


def gaussian_nll(x: torch.Tensor, xhat: torch.Tensor, sigma2: float) -> torch.Tensor:
    """-log N(x; xhat, sigma^2 I) = ||x - xhat||^2 / (2 sigma^2) + (D/2) log(2 pi sigma^2), batch mean."""
    return sum_sq_error(xhat, x) / (2.0 * sigma2) + 0.5 * x.shape[-1] * math.log(2.0 * math.pi * sigma2)


def sum_sq_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(1/B) sum_i ||a_i - b_i||^2. One fused kernel (mse_loss) instead of four ops: the hot loop
    of a small VAE is dominated by per-op overhead, not arithmetic."""
    return F.mse_loss(a, b, reduction="sum") / a.shape[0]


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(0, 1)) for each sample and latent dimension, (B, d), in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent dims, batch mean, in nats."""
    return kl_per_dim(mu, logvar).sum(dim=-1).mean()


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> float:
    """I(x; z) under the aggregate posterior, estimated as in He et al. 2019 (lagging inference nets).

    I = E_x E_q(z|x)[log q(z|x) - log q(z)], with q(z) the mixture of the posteriors of the
    given samples. It is bounded by log(n), so pass a few hundred to a few thousand samples.
    Here because ``aggressive`` trains on it; ``metrics`` reports it.
    """
    n, d = mu.shape
    neg_entropy = (-0.5 * d * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = sample_posterior(mu, logvar, generator)
    var = logvar.exp()
    dev = z[:, None, :] - mu[None, :, :]
    log_density = -0.5 * (dev.pow(2) / var[None]).sum(-1) - 0.5 * (d * math.log(2 * math.pi) + logvar.sum(-1))[None]
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(n)
    return float(neg_entropy - log_qz.mean())


def cluster_sq_dist(xhat: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """||xhat_i - mu_c(i)||^2 per sample; ``centers`` holds each sample's own cluster centre."""
    return (xhat - centers).pow(2).sum(dim=-1)


def cluster_loss(xhat: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """L_clu = (1/N) sum_i ||xhat_i - mu_c(i)||^2 (eq. 7). A constant output scores >= delta."""
    return sum_sq_error(xhat, centers)


def boundary_penalty(l_clu: torch.Tensor, W: float, delta: float, eps: float) -> torch.Tensor:
    """L_b = relu(L_clu - (delta - eps))^2 + relu(W - L_clu)^2 (eq. 8): zero inside F_eps = [W, delta - eps].

    When F_eps is non-empty this is the squared distance from L_clu to the interval, computed as
    (L_clu - clamp(L_clu, W, delta - eps))^2. The clamp is detached: outside the interval its
    derivative is 0 and inside the distance is 0, so value and gradient are unchanged while the
    backward pass skips the clamp (the shell method's extra cost per step: bench/shell_overhead.py).
    """
    upper = delta - eps
    if W <= upper:  # (mse_loss of a scalar: one fused op forward and backward instead of a sub and a pow)
        return F.mse_loss(l_clu, l_clu.detach().clamp(W, upper))
    return F.relu(l_clu - upper).pow(2) + F.relu(W - l_clu).pow(2)


def norm_penalty(xhat: torch.Tensor, r_min: float, r_max: float) -> torch.Tensor:
    """L_n = mean_i relu(r_min - ||xhat_i||)^2 + relu(||xhat_i|| - r_max)^2 (eq. 9): zero inside the shell."""
    norms = torch.linalg.vector_norm(xhat, dim=-1)  # (Tensor.norm goes through a slower Python dispatch)
    # the two relus never both fire: this is the mean squared distance of the norm to [r_min, r_max]
    # (target detached, as in boundary_penalty: same value and gradient, fewer backward ops)
    return F.mse_loss(norms, norms.detach().clamp(r_min, r_max))


def linear_ramp(progress: float, start: float = 0.1, end: float = 1.0) -> float:
    """The beta schedule's scale s_t: ``start`` at progress 0, ``end`` at progress 1 (progress in [0, 1])."""
    p = min(max(progress, 0.0), 1.0)
    return start + (end - start) * p
