"""Held-out likelihood (docs/method.md §6): the ELBO, the importance-weighted bound (Burda et al. 2016)
and the shell map's log-determinant, checked against closed forms.

- a collapsed model (constant decoder, posterior = prior) has log p(x) = log N(x; a, sigma2 I)
  and every importance weight equals it, so the bound is exact for any K;
- a linear Gaussian VAE has log p(x) = log N(x; b, W W^T + sigma2 I); with the exact posterior
  the weights have zero variance (bound exact for any K), with a mean-field one the bound climbs
  towards it as K grows and never passes it;
- the shell map's log|det J| matches a finite-difference Jacobian.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shellvae import ShellVAEError, SphericalShell
from shellvae.evaluation.likelihood import (
    data_log_likelihood,
    default_decode_rows,
    elbo,
    gaussian_log_density,
    iw_log_likelihood,
    kl_to_standard_normal,
)

F64 = torch.float64


def exact_gaussian_log_density(X, mean, cov):
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(X)


def collapsed_model(a: torch.Tensor, latent_dim: int):
    """Posterior = prior (mu = 0, logvar = 0), decoder output the constant a whatever z."""
    def encode(x):
        zeros = torch.zeros(len(x), latent_dim, dtype=x.dtype, device=x.device)
        return zeros, zeros.clone()

    def decode(z):
        return a.to(z.dtype).expand(len(z), -1)

    return encode, decode


# -- collapsed model: the bound is the exact Gaussian log-likelihood ---------------------------

@settings(max_examples=40, deadline=None)
@given(
    n_features=st.integers(1, 40), latent_dim=st.integers(1, 6), n_samples=st.sampled_from([1, 3, 50, 500]),
    log_sigma2=st.floats(-4, 2), seed=st.integers(0, 2**16),
)
def test_collapsed_model_iw_bound_is_the_exact_gaussian_log_likelihood(n_features, latent_dim, n_samples,
                                                                       log_sigma2, seed):
    g = torch.Generator().manual_seed(seed)
    sigma2 = math.exp(log_sigma2)
    X = torch.randn(37, n_features, generator=g, dtype=F64) * 1.5
    a = torch.randn(n_features, generator=g, dtype=F64)
    exact = exact_gaussian_log_density(X, a, sigma2 * torch.eye(n_features, dtype=F64))
    encode, decode = collapsed_model(a, latent_dim)
    # float64 model: exact up to rounding, whatever K (every weight equals p(x))
    bound = iw_log_likelihood(encode, decode, X, sigma2, n_samples=n_samples, batch_size=10)
    torch.testing.assert_close(bound, exact, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(elbo(encode, decode, X, sigma2, batch_size=10), exact, rtol=1e-10, atol=1e-9)
    # float32 model (what training produces): the 1e-3 relative
    bound32 = iw_log_likelihood(encode, decode, X.float(), sigma2, n_samples=n_samples, batch_size=10)
    assert bound32.dtype == F64
    assert torch.all((bound32 - exact).abs() <= 1e-3 * exact.abs() + 1e-6)


def test_collapsed_model_numpy_input_and_small_decode_chunks():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 7))
    a = torch.tensor(rng.normal(size=7))
    encode, decode = collapsed_model(a, 3)
    exact = exact_gaussian_log_density(torch.tensor(X), a, 0.2 * torch.eye(7, dtype=F64))
    bound = iw_log_likelihood(encode, decode, X, 0.2, n_samples=20, batch_size=16, max_decode_rows=1)
    assert bound.shape == (50,) and bound.dtype == F64
    assert torch.allclose(bound, exact, rtol=1e-5)  # arrays run in float32


def test_shell_views_are_read_a_batch_at_a_time():
    from shellvae.core.shell import ShellView

    rng = np.random.default_rng(0)
    data = rng.normal(size=(60, 4))
    shell = SphericalShell().fit(data)
    encode, decode = collapsed_model(torch.zeros(4, dtype=F64), 2)
    kwargs = dict(n_samples=5, batch_size=16, dtype=F64)
    from_view = iw_log_likelihood(encode, decode, ShellView(data, shell), 0.3, **kwargs)
    torch.testing.assert_close(from_view, iw_log_likelihood(encode, decode, shell.transform(data), 0.3, **kwargs))


def test_default_decode_chunks_fit_a_cpu_cache_and_fill_an_accelerator():
    assert default_decode_rows(32, "cpu") == 4096 and default_decode_rows(784, "cpu") == 2**20 // 784
    assert default_decode_rows(32, "cuda") == 2**16 and default_decode_rows(784, "cuda") == 2**24 // 784
    assert default_decode_rows(10**8, "cpu") == 1


# -- linear Gaussian VAE: the exact marginal likelihood ----------------------------------------

class LinearGaussianVAE:
    """x = W z + b + noise, z ~ N(0, I), noise ~ N(0, sigma2 I): p(x) = N(b, W W^T + sigma2 I).

    The exact posterior is N(S W^T (x - b) / sigma2, S), S = (I + W^T W / sigma2)^-1. ``encode``
    gives its mean and the mean-field variances 1 / diag(S^-1), times ``var_scale``: the exact
    posterior when W has orthogonal columns (S diagonal) and var_scale = 1, a wrong one otherwise.
    """

    def __init__(self, W, b, sigma2, var_scale=1.0):
        self.W, self.b, self.sigma2 = W, b, sigma2
        precision = torch.eye(W.shape[1], dtype=F64) + W.T @ W / sigma2
        self.S = torch.linalg.inv(precision)
        self.logvar = torch.log(var_scale / torch.diagonal(precision))

    def encode(self, x):
        mu = (x - self.b) @ self.W @ self.S.T / self.sigma2
        return mu, self.logvar.expand_as(mu)

    def decode(self, z):
        return z @ self.W.T + self.b

    @property
    def covariance(self):
        return self.W @ self.W.T + self.sigma2 * torch.eye(len(self.b), dtype=F64)

    def sample(self, n, generator):
        z = torch.randn(n, self.W.shape[1], generator=generator, dtype=F64)
        return self.decode(z) + math.sqrt(self.sigma2) * torch.randn(n, len(self.b), generator=generator, dtype=F64)

    def log_marginal(self, X):
        return exact_gaussian_log_density(X, self.b, self.covariance)

    def closed_form_elbo(self, X):
        """E_q[log p(x|z)] - KL in closed form for the diagonal q of ``encode``."""
        mu, logvar = self.encode(X)
        expected_sq = (X - self.decode(mu)).pow(2).sum(-1) + (self.W.pow(2) * logvar.exp()[:, None, :]).sum((1, 2))
        recon = -expected_sq / (2 * self.sigma2) - 0.5 * X.shape[1] * math.log(2 * math.pi * self.sigma2)
        return recon - kl_to_standard_normal(mu, logvar)


@pytest.fixture
def mean_field_vae():
    """A non-orthogonal W: the diagonal posterior is wrong (the bound has a gap to close)."""
    g = torch.Generator().manual_seed(1)
    vae = LinearGaussianVAE(torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, generator=g, dtype=F64), 0.3,
                            var_scale=0.5)
    return vae, vae.sample(2000, g)


@settings(max_examples=25, deadline=None)
@given(n_features=st.integers(2, 12), latent_dim=st.integers(1, 4), log_sigma2=st.floats(-3, 1),
       seed=st.integers(0, 2**16))
def test_linear_vae_with_the_exact_posterior_gives_the_exact_marginal_for_any_K(n_features, latent_dim,
                                                                                log_sigma2, seed):
    assume(latent_dim <= n_features)
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n_features, latent_dim, generator=g, dtype=F64))
    W = Q * (0.3 + 2 * torch.rand(latent_dim, generator=g, dtype=F64))  # orthogonal columns: diagonal posterior
    vae = LinearGaussianVAE(W, torch.randn(n_features, generator=g, dtype=F64), math.exp(log_sigma2))
    X = vae.sample(64, g)
    exact = vae.log_marginal(X)
    for K in (1, 1000):  # every weight p(x, z) / q(z|x) = p(x): zero variance
        bound = iw_log_likelihood(vae.encode, vae.decode, X, vae.sigma2, n_samples=K, batch_size=32)
        torch.testing.assert_close(bound, exact, rtol=1e-9, atol=1e-8)


def test_linear_vae_bound_climbs_towards_the_exact_marginal(mean_field_vae):
    vae, X = mean_field_vae
    exact = vae.log_marginal(X)
    gaps, noise = [], []
    for K in (1, 10, 100, 1000):
        diff = iw_log_likelihood(vae.encode, vae.decode, X, vae.sigma2, n_samples=K) - exact
        gaps.append(float(diff.mean()))
        noise.append(float(diff.std() / math.sqrt(len(X))))
    # never above log p(x) beyond Monte Carlo noise
    assert all(gap <= 3 * se for gap, se in zip(gaps, noise)), (gaps, noise)
    # increasing in K (measured: -0.59, -0.27, -0.14, -0.09 nats) and closing most of the gap
    assert gaps[0] < gaps[1] < gaps[2] < gaps[3], gaps
    assert gaps[3] > 0.25 * gaps[0]


def test_iw_bound_with_one_sample_is_the_elbo_in_expectation_and_above_it_with_more(mean_field_vae):
    vae, X = mean_field_vae
    closed = vae.closed_form_elbo(X)
    per_row = elbo(vae.encode, vae.decode, X, vae.sigma2)
    k1 = iw_log_likelihood(vae.encode, vae.decode, X, vae.sigma2, n_samples=1,
                           generator=torch.Generator().manual_seed(5))
    k50 = iw_log_likelihood(vae.encode, vae.decode, X, vae.sigma2, n_samples=50)
    se = lambda d: float(d.std() / math.sqrt(len(d)))  # noqa: E731
    assert abs(float((per_row - closed).mean())) < 4 * se(per_row - closed)
    assert abs(float((k1 - closed).mean())) < 4 * se(k1 - closed)  # same expectation as the ELBO
    assert float((k50 - closed).mean()) > 4 * se(k50 - closed)  # strictly above it
    assert float(k50.mean()) <= float(vae.log_marginal(X).mean()) + 4 * se(k50 - vae.log_marginal(X))


def test_elbo_with_many_samples_matches_its_closed_form(mean_field_vae):
    vae, X = mean_field_vae
    X = X[:50]
    estimate = elbo(vae.encode, vae.decode, X, vae.sigma2, n_samples=20_000, max_decode_rows=50_000)
    torch.testing.assert_close(estimate, vae.closed_form_elbo(X), rtol=0, atol=0.05)


def test_results_are_reproducible_and_seeded(mean_field_vae):
    vae, X = mean_field_vae
    X = X[:100]
    one = iw_log_likelihood(vae.encode, vae.decode, X, vae.sigma2, n_samples=30, batch_size=17)
    two = iw_log_likelihood(vae.encode, vae.decode, X, vae.sigma2, n_samples=30, batch_size=17)
    other = iw_log_likelihood(vae.encode, vae.decode, X, vae.sigma2, n_samples=30, batch_size=17,
                              generator=torch.Generator().manual_seed(1))
    assert torch.equal(one, two) and not torch.equal(one, other)
    # other batch sizes and decode chunks draw differently, within the bound's noise
    chunked = iw_log_likelihood(vae.encode, vae.decode, X, vae.sigma2, n_samples=30, batch_size=40, max_decode_rows=7)
    assert abs(float(chunked.mean() - one.mean())) < 0.05


def test_gaussian_log_density_broadcasts_samples_against_rows():
    x = torch.randn(5, 3, dtype=F64)
    xhat = torch.randn(4, 5, 3, dtype=F64)
    got = gaussian_log_density(x, xhat, 0.7)
    assert got.shape == (4, 5)
    want = torch.distributions.Normal(xhat, math.sqrt(0.7)).log_prob(x).sum(-1)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("kwargs, match", [
    (dict(sigma2=0.0), "sigma2"), (dict(sigma2=float("nan")), "sigma2"), (dict(sigma2=True), "sigma2"),
    (dict(n_samples=0), "n_samples"), (dict(batch_size=2.5), "batch_size"),
    (dict(max_decode_rows=0), "max_decode_rows"),
])
def test_bad_arguments_are_refused(kwargs, match):
    encode, decode = collapsed_model(torch.zeros(3, dtype=F64), 2)
    args = dict(sigma2=1.0) | kwargs
    sigma2 = args.pop("sigma2")
    with pytest.raises(ShellVAEError, match=match):
        iw_log_likelihood(encode, decode, torch.zeros(4, 3, dtype=F64), sigma2, **args)


def test_wrong_shapes_are_refused():
    encode, decode = collapsed_model(torch.zeros(3, dtype=F64), 2)
    with pytest.raises(ShellVAEError, match="expected"):
        iw_log_likelihood(encode, decode, torch.zeros(4, 5, dtype=F64), 1.0)  # decoder gives 3 features
    with pytest.raises(ShellVAEError, match="shape"):
        iw_log_likelihood(encode, decode, torch.zeros(4, dtype=F64), 1.0)
    with pytest.raises(ShellVAEError, match="rows"):
        elbo(lambda x: (torch.zeros(len(x), 2), torch.zeros(len(x), 3)), decode, torch.zeros(4, 3), 1.0)


def test_works_with_a_shellvae_model():
    from shellvae import mlp_vae

    torch.manual_seed(0)
    model = mlp_vae(10, 3).eval()
    X = torch.randn(40, 10)
    bound = iw_log_likelihood(model.encode, model.decode, X, 0.1, n_samples=20, batch_size=16)
    lower = elbo(model.encode, model.decode, X, 0.1)
    assert bound.shape == lower.shape == (40,) and torch.isfinite(bound).all()
    assert float(bound.mean()) > float(lower.mean())


# -- the shell map's log-determinant -----------------------------------------------------------

def finite_difference_log_det(shell, x, h):
    """log|det J| of shell.transform at x by central differences."""
    D = len(x)
    steps = np.eye(D) * h
    J = (shell.transform(x + steps) - shell.transform(x - steps)).T / (2 * h)
    sign, logdet = np.linalg.slogdet(J)
    return logdet


@settings(max_examples=80, deadline=None)
@given(
    n_features=st.integers(1, 6), n_fit=st.integers(5, 60), radius=st.sampled_from(["minmax", "rank"]),
    r=st.tuples(st.floats(0.1, 2.0), st.floats(0.05, 2.0)), where=st.floats(0.02, 0.98), seed=st.integers(0, 2**16),
)
def test_log_det_matches_a_finite_difference_jacobian(n_features, n_fit, radius, r, where, seed):
    rng = np.random.default_rng(seed)
    fit = rng.normal(size=(n_fit, n_features)) * rng.uniform(0.5, 3, size=n_features)
    shell = SphericalShell(r[0], r[0] + r[1], radius=radius).fit(fit)
    # a point with a norm strictly inside the training norms, in a random direction
    u = rng.normal(size=n_features)
    u /= np.linalg.norm(u)
    norm = shell.norm_min_ + where * (shell.norm_max_ - shell.norm_min_)
    x = shell.mean_ + norm * u
    h = 1e-6 * shell.norm_max_
    if radius == "rank":  # the map is piecewise linear in the norm: keep the stencil inside one segment
        seg = np.searchsorted(shell.norm_knots_, [norm - 2 * h, norm + 2 * h], side="right")
        assume(seg[0] == seg[1])
    got = shell.log_abs_det_jacobian(x[None])[0]
    assert np.isfinite(got)
    assert got == pytest.approx(finite_difference_log_det(shell, x, h), abs=1e-4 * max(1.0, abs(got)))
    assert not shell.outside_norm_range(x[None])[0]


@pytest.mark.parametrize("radius", ["minmax", "rank"])
def test_rows_outside_the_training_norms_get_a_finite_continuous_log_det(radius):
    rng = np.random.default_rng(0)
    fit = rng.normal(size=(200, 4))
    shell = SphericalShell(radius=radius).fit(fit)
    u = np.ones(4) / 2.0
    norms = np.array([0.01 * shell.norm_min_, shell.norm_min_ * (1 - 1e-9), shell.norm_min_ * (1 + 1e-9),
                      shell.norm_max_ * (1 - 1e-9), shell.norm_max_ * (1 + 1e-9), 100 * shell.norm_max_])
    X = shell.mean_ + norms[:, None] * u
    logdet = shell.log_abs_det_jacobian(X)
    assert np.isfinite(logdet).all()
    assert shell.outside_norm_range(X).tolist() == [True, True, False, False, True, True]
    np.testing.assert_allclose(logdet[1], logdet[2], atol=1e-6)  # continuous at both ends of the range
    np.testing.assert_allclose(logdet[3], logdet[4], atol=1e-6)
    # beyond the range: the edge slope, and the tangential stretch of the clipped radius
    edge_slope = np.log(shell._unit_radius_slope(np.array([shell.norm_max_]))[0] * (shell.r_max - shell.r_min))
    np.testing.assert_allclose(logdet[5], edge_slope + 3 * np.log(shell.r_max / norms[5]))


def test_log_det_refuses_rows_at_the_mean_and_single_norm_shells():
    rng = np.random.default_rng(0)
    fit = rng.normal(size=(30, 3))
    shell = SphericalShell().fit(fit)
    with pytest.raises(ShellVAEError, match="training mean"):
        shell.log_abs_det_jacobian(shell.mean_[None])
    ring = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # one norm: not invertible
    with pytest.raises(ShellVAEError, match="same norm"):
        SphericalShell().fit(ring).log_abs_det_jacobian(ring)
    with pytest.raises(ShellVAEError, match="not fitted"):
        SphericalShell().log_abs_det_jacobian(fit)


@pytest.mark.parametrize("scale", [1.0, 0.3, 2.5])
def test_data_space_likelihood_of_a_scaling_shell_is_the_exact_data_density(scale):
    """A minmax shell with [r_min, r_max] = scale * [norm_min, norm_max] is x -> scale (x - m): a collapsed
    model N(a, sigma2 I) in shell space is N(m + a / scale, sigma2 / scale^2 I) in data space, and
    log|det J| = D log(scale) (0 for the identity-like scale 1)."""
    rng = np.random.default_rng(0)
    D = 5
    fit = rng.normal(size=(300, D))
    base = SphericalShell().fit(fit)
    shell = SphericalShell(scale * base.norm_min_, scale * base.norm_max_).fit(fit)
    held_out = rng.normal(size=(150, D))
    held_out = held_out[~shell.outside_norm_range(held_out)]  # the map is scale * (x - m) inside the norm range
    assert len(held_out) > 100
    np.testing.assert_allclose(shell.transform(held_out), scale * (held_out - shell.mean_), atol=1e-12)
    logdet = shell.log_abs_det_jacobian(held_out)
    np.testing.assert_allclose(logdet, D * np.log(scale), atol=1e-9)

    sigma2, a = 0.05, torch.tensor(rng.normal(size=D) * 0.1)
    encode, decode = collapsed_model(a, 2)
    shell_ll = iw_log_likelihood(encode, decode, torch.tensor(shell.transform(held_out)), sigma2, n_samples=10)
    data_ll = data_log_likelihood(shell_ll, logdet)
    exact = exact_gaussian_log_density(torch.tensor(held_out), torch.tensor(shell.mean_) + a / scale,
                                       sigma2 / scale**2 * torch.eye(D, dtype=F64))
    torch.testing.assert_close(data_ll, exact, rtol=1e-10, atol=1e-9)
    assert isinstance(data_log_likelihood(shell_ll.numpy(), logdet), np.ndarray)
    with pytest.raises(ShellVAEError, match="same rows"):
        data_log_likelihood(shell_ll, logdet[:-1])
