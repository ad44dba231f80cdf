"""Each term of the objective against its closed form (docs/method.md §3-4)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shellvae.core.objectives import (
    boundary_penalty, cluster_loss, gaussian_nll, kl_divergence, kl_per_dim, linear_ramp, norm_penalty,
)


def test_gaussian_nll_matches_torch_distribution():
    g = torch.Generator().manual_seed(0)
    x, xhat = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randn(16, 5, generator=g, dtype=torch.float64)
    for sigma2 in (0.01, 0.7, 9.0):
        ref = -torch.distributions.Normal(xhat, math.sqrt(sigma2)).log_prob(x).sum(-1).mean()
        assert float(gaussian_nll(x, xhat, sigma2)) == pytest.approx(float(ref), rel=1e-12)


def test_kl_matches_torch_distribution():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(32, 4, generator=g, dtype=torch.float64), torch.randn(32, 4, generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(kl_per_dim(mu, logvar), ref)
    assert float(kl_divergence(mu, logvar)) == pytest.approx(float(ref.sum(-1).mean()), rel=1e-12)
    assert float(kl_divergence(torch.zeros(3, 2), torch.zeros(3, 2))) == 0.0  # posterior == prior


@settings(max_examples=80, deadline=None)
@given(l_clu=st.floats(0.0, 3.0), W=st.floats(0.0, 1.0), width=st.floats(0.01, 1.0), eps_share=st.floats(0.0, 0.9))
def test_boundary_penalty_zero_inside_positive_outside_with_right_gradient(l_clu, W, width, eps_share):
    delta = W + width
    eps = eps_share * width
    x = torch.tensor(l_clu, dtype=torch.float64, requires_grad=True)
    pen = boundary_penalty(x, W, delta, eps)
    pen.backward()
    upper = delta - eps
    if W <= l_clu <= upper:
        assert float(pen.detach()) == 0.0 and float(x.grad) == 0.0
    elif l_clu > upper:
        assert float(pen.detach()) == pytest.approx((l_clu - upper) ** 2)
        assert float(x.grad) == pytest.approx(2 * (l_clu - upper))  # pushes L_clu down
    else:
        assert float(pen.detach()) == pytest.approx((W - l_clu) ** 2)
        assert float(x.grad) == pytest.approx(-2 * (W - l_clu))  # pushes L_clu up


@settings(max_examples=60, deadline=None)
@given(norms=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=20), d=st.integers(1, 6))
def test_norm_penalty_closed_form_and_gradient(norms, d):
    r_min, r_max = 0.9, 1.1
    direction = torch.ones(d, dtype=torch.float64) / math.sqrt(d)
    xhat = (torch.tensor(norms, dtype=torch.float64)[:, None] * direction).requires_grad_(True)
    pen = norm_penalty(xhat, r_min, r_max)
    n = np.array(norms)
    expected = np.mean(np.maximum(r_min - n, 0) ** 2 + np.maximum(n - r_max, 0) ** 2)
    assert float(pen.detach()) == pytest.approx(expected, abs=1e-12)
    pen.backward()
    inside = (n >= r_min) & (n <= r_max) & (n > 0)
    assert torch.all(xhat.grad[torch.as_tensor(inside)] == 0)


def test_norm_penalty_gradcheck_off_boundary():
    g = torch.Generator().manual_seed(2)
    xhat = (2 * torch.randn(10, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: norm_penalty(t, 0.9, 1.1), (xhat,))


def test_cluster_loss_perfect_reconstruction_gives_W():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(100, 3, generator=g, dtype=torch.float64)
    labels = torch.arange(100) % 4
    centers = torch.stack([x[labels == k].mean(0) for k in range(4)])
    W = float(((x - centers[labels]) ** 2).sum(-1).mean())
    assert float(cluster_loss(x, centers[labels])) == pytest.approx(W, rel=1e-12)


def test_linear_ramp():
    assert linear_ramp(0.0) == pytest.approx(0.1) and linear_ramp(1.0) == 1.0
    assert linear_ramp(0.5) == pytest.approx(0.55) and linear_ramp(7.0) == 1.0
