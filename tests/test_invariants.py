"""Property-based invariants over random shapes and scales: shell, geometry, penalties, metrics.

Complements test_shell.py (radii, directions, inverse), test_geometry.py (T = W + delta for any
labelling) and test_objectives.py (closed forms of each term).
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shellvae import ClusterGeometry, FeasibleRegion, SphericalShell, certify, evaluate, mlp_vae
from shellvae.core.variances import within_between
from shellvae.core.objectives import cluster_loss, gaussian_nll, kl_per_dim, norm_penalty

shapes = st.tuples(st.integers(3, 50), st.integers(1, 8))
seeds = st.integers(0, 2**16)
log_scales = st.floats(-100, 100)  # c = 10**s: far beyond float32, inside float64


def blobs(n: int, dim: int, seed: int, k: int = 3) -> np.ndarray:
    """Random Gaussian blobs around k random centres (float64)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(k, dim))
    return centres[rng.integers(0, k, n)] + rng.normal(size=(n, dim))


# --------------------------------------------------------------------------- shell
@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=seeds, s=log_scales, radius=st.sampled_from(["minmax", "rank"]))
def test_shell_is_scale_invariant(shape, seed, s, radius):
    """Scaling X by any c > 0 gives the same shell data (and the same shell for new data)."""
    X = blobs(*shape, seed)
    c = 10.0**s
    shell, scaled = SphericalShell(radius=radius).fit(X), SphericalShell(radius=radius).fit(c * X)
    np.testing.assert_allclose(scaled.transform(c * X), shell.transform(X), rtol=1e-9, atol=1e-12)
    new = blobs(5, shape[1], seed + 1)
    np.testing.assert_allclose(scaled.transform(c * new), shell.transform(new), rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=seeds)
def test_shell_is_equivariant_to_sample_order(shape, seed):
    X = blobs(*shape, seed)
    perm = np.random.default_rng(seed).permutation(len(X))
    np.testing.assert_allclose(SphericalShell().fit_transform(X[perm]), SphericalShell().fit_transform(X)[perm],
                               rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- geometry
@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=seeds, k=st.integers(1, 6), s=st.floats(-50, 50))
def test_geometry_bounds_scaling_and_order(shape, seed, k, s):
    X = blobs(*shape, seed)
    labels = np.random.default_rng(seed).integers(0, k, len(X))
    T, W, delta, centers, weights, _ = within_between(X, labels, k)
    # against the definitions, computed another way (row by row, clusters by boolean masks)
    mu = X.mean(axis=0)
    present = [j for j in range(k) if (labels == j).any()]
    own = {j: X[labels == j].mean(axis=0) for j in present}
    T_ref = np.mean([np.sum((x - mu) ** 2) for x in X])
    W_ref = np.mean([np.sum((x - own[j]) ** 2) for x, j in zip(X, labels)])
    delta_ref = sum(np.mean(labels == j) * np.sum((own[j] - mu) ** 2) for j in present)
    np.testing.assert_allclose((T, W, delta), (T_ref, W_ref, delta_ref), rtol=1e-9, atol=1e-12 * T_ref)
    np.testing.assert_allclose(weights, [np.mean(labels == j) for j in range(k)], rtol=0, atol=1e-15)
    np.testing.assert_allclose(centers[present], [own[j] for j in present], rtol=1e-10, atol=1e-12)
    c = 10.0**s  # T, W, delta are variances: they scale by c^2
    np.testing.assert_allclose(within_between(c * X, labels, k)[:3], (c**2 * T, c**2 * W, c**2 * delta), rtol=1e-9,
                               atol=1e-12 * c**2 * T)  # W or delta may be 0 (k = 1): then rounding-level
    perm = np.random.default_rng(seed + 1).permutation(len(X))
    np.testing.assert_allclose(within_between(X[perm], labels[perm], k)[:3], (T, W, delta), rtol=1e-10, atol=1e-12 * T)


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=seeds)
def test_one_cluster_per_sample_gives_W_zero(shape, seed):
    X = blobs(*shape, seed)
    T, W, delta, *_ = within_between(X, np.arange(len(X)), len(X))
    assert W == 0.0 and delta == pytest.approx(T, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=seeds, k=st.integers(2, 5))
def test_any_constant_output_scores_at_least_delta(shape, seed, k):
    """The theorem behind the certificate: (1/N) sum ||a - mu_c(i)||^2 = delta + ||a - mu_bar||^2 for every a."""
    X = blobs(*shape, seed)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, len(X))
    _, _, delta, centers, _, mu_bar = within_between(X, labels, k)
    for a in (mu_bar, rng.normal(size=X.shape[1]), 100 * rng.normal(size=X.shape[1])):
        l_clu = np.mean(np.sum((a - centers[labels]) ** 2, axis=1))
        assert l_clu == pytest.approx(delta + np.sum((a - mu_bar) ** 2), rel=1e-9, abs=1e-12)
        assert l_clu >= delta * (1 - 1e-12)


# --------------------------------------------------------------------------- penalties and terms
@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 12), d=st.integers(1, 6), seed=seeds, r_min=st.floats(0.1, 2.0), width=st.floats(0.01, 1.0),
       s=st.floats(-2, 2))
def test_norm_penalty_zero_inside_positive_outside_and_its_gradient(n, d, seed, r_min, width, s):
    r_max = r_min + width
    g = torch.Generator().manual_seed(seed)
    xhat = (10.0**s * torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_(True)
    pen = norm_penalty(xhat, r_min, r_max)
    pen.backward()
    pen = pen.detach()
    norms = xhat.detach().norm(dim=-1)
    excess = norms - norms.clamp(r_min, r_max)  # signed distance to the shell, 0 inside
    assert float(pen) == pytest.approx(float(excess.pow(2).mean()), rel=1e-12, abs=1e-300)
    assert (float(pen) == 0.0) == bool((excess == 0).all())
    expected = 2.0 / n * excess[:, None] * xhat.detach() / norms[:, None]  # d/dx of relu(.)^2 through ||x||
    torch.testing.assert_close(xhat.grad, expected, rtol=1e-9, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), d=st.integers(1, 6), seed=seeds, s=st.floats(-3, 3))
def test_kl_is_non_negative_and_zero_only_at_the_prior(n, d, seed, s):
    g = torch.Generator().manual_seed(seed)
    mu = 10.0**s * torch.randn(n, d, generator=g, dtype=torch.float64)
    logvar = torch.randn(n, d, generator=g, dtype=torch.float64)
    kl = kl_per_dim(mu, logvar)
    assert (kl >= 0).all() and (kl > 0).all()  # random mu, logvar are never exactly the prior
    assert float(kl_per_dim(torch.zeros(n, d), torch.zeros(n, d)).abs().max()) == 0.0


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), d=st.integers(1, 6), seed=seeds, log_sigma2=st.floats(-4, 4))
def test_nll_and_cluster_loss_gradients(n, d, seed, log_sigma2):
    g = torch.Generator().manual_seed(seed)
    x, c = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    xhat = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    sigma2 = 10.0**log_sigma2
    gaussian_nll(x, xhat, sigma2).backward()
    torch.testing.assert_close(xhat.grad, (xhat.detach() - x) / (sigma2 * n), rtol=1e-10, atol=1e-12)
    xhat.grad = None
    loss = cluster_loss(xhat, c)
    loss.backward()
    # its value: the mean over rows of the squared distance to the row's centre, summed another way
    expected = sum(float(((xhat[i] - c[i]) ** 2).sum()) for i in range(n)) / n
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    torch.testing.assert_close(xhat.grad, 2 * (xhat.detach() - c) / n, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- metrics
PERMUTATION_INVARIANT = ["kl", "active_units", "recon_mse", "l_clu", "collapse_floor", "margin", "cluster_r2",
                         "cluster_accuracy", "feasible_coverage", "norm_satisfaction"]


def random_setup(n, dim, latent, k, seed):
    X = SphericalShell().fit_transform(blobs(n, dim, seed, k=k))
    geometry = ClusterGeometry(k, random_state=seed).fit(X)
    torch.manual_seed(seed)
    model = mlp_vae(dim, latent, encoder_hidden=(8,), decoder_hidden=(8,))
    return torch.as_tensor(X, dtype=torch.float32), FeasibleRegion.from_fitted(geometry), model


metric_cases = dict(n=st.integers(12, 60), dim=st.integers(2, 6), latent=st.integers(1, 4), k=st.integers(2, 4),
                    seed=seeds)


@pytest.mark.filterwarnings("ignore::shellvae.EmptyFeasibleRegionWarning")
@settings(max_examples=25, deadline=None)
@given(**metric_cases)
def test_metrics_equal_their_definitions_and_do_not_depend_on_sample_order(n, dim, latent, k, seed):
    """Each metric of evaluate() (batched, registered, summed in float64) equals its definition computed
    directly on the whole set, and the order-free ones do not change when the rows are permuted."""
    X, region, model = random_setup(n, dim, latent, k, seed)
    labels = region.geometry_.predict(X.numpy())
    m = evaluate(model, X, region, clusters=labels, batch_size=7)
    with torch.no_grad():
        mu, logvar = model.encode(X)
        xhat = model.decode(mu)
    table = torch.as_tensor(region.geometry_.centers_, dtype=torch.float32)
    own = table[torch.as_tensor(labels)]
    d_clu = (xhat - own).pow(2).sum(-1)
    norms = xhat.norm(dim=-1)
    counts = np.bincount(labels, minlength=k) / n
    centres = region.geometry_.centers_
    expected = {
        "kl": float(kl_per_dim(mu, logvar).sum(-1).mean()),
        "active_units": int((mu.var(0, unbiased=False) > 0.01).sum()),
        "recon_mse": float((X - xhat).pow(2).mean()),
        "l_clu": float(d_clu.mean()),
        "cluster_accuracy": float((torch.cdist(xhat, table).argmin(1) == torch.as_tensor(labels)).float().mean()),
        "feasible_coverage": float(((d_clu >= region.W_) & (d_clu <= region.delta_)).float().mean()),
        "norm_satisfaction": float(((norms >= region.r_min) & (norms <= region.r_max)).float().mean()),
        "collapse_floor": float(counts @ np.sum((centres - counts @ centres) ** 2, axis=1)),
    }
    expected["margin"] = region.delta_ - expected["l_clu"]
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert m["mutual_info"] <= math.log(n) + 1e-4  # the estimator is bounded by log(n)
    perm = torch.as_tensor(np.random.default_rng(seed).permutation(n))
    p = evaluate(model, X[perm], region, clusters=labels[perm.numpy()])
    for key in PERMUTATION_INVARIANT:
        assert p[key] == pytest.approx(m[key], rel=1e-5, abs=1e-6), key


@pytest.mark.filterwarnings("ignore::shellvae.EmptyFeasibleRegionWarning")
@settings(max_examples=25, deadline=None)
@given(**metric_cases, offset=st.floats(-2, 2))
def test_a_constant_decoder_never_beats_the_collapse_floor(n, dim, latent, k, seed, offset):
    """A collapsed model (decoder output a for every z) has L_clu = floor + ||a - mean centre||^2 >= floor."""
    X, region, model = random_setup(n, dim, latent, k, seed)
    geometry = region.geometry_
    a = torch.full((dim,), offset)
    last = model.decoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(a)
    m = evaluate(model, X, region)
    c = geometry.centers_[geometry.predict(X.numpy())]
    gap = float(np.sum((offset - c.mean(0)) ** 2))
    assert m["l_clu"] >= m["collapse_floor"] * (1 - 1e-5)
    assert m["l_clu"] == pytest.approx(m["collapse_floor"] + gap, rel=1e-4, abs=1e-5)
    assert m["l_clu_shuffled"] == pytest.approx(m["l_clu"], rel=1e-5)  # other rows' latents decode the same
    assert not certify(m, region).certified


@settings(max_examples=20, deadline=None)
@given(n=st.integers(200, 2000), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_mutual_information_is_zero_for_one_posterior_and_log_n_for_separated_ones(n, d, seed):
    """The He et al. (2019) estimator at its two ends. It is E_x[-H(q(z|x))] (exact) minus a Monte
    Carlo mean of log q(z) over one draw per row, so each end holds up to that mean's noise, whose
    standard deviation is sqrt(d / 2 / n) here (log q(z_i) is a Gaussian log-density at its own
    draw: variance d / 2). Every x with the same posterior: the aggregate posterior is that
    posterior, MI = 0. Posteriors far apart with tiny variance identify their x: MI = log n."""
    from shellvae.core.objectives import mutual_information

    noise = 5 * math.sqrt(d / 2 / n)
    g = torch.Generator().manual_seed(seed)
    mu, logvar = torch.randn(1, d, generator=g, dtype=torch.float64), torch.randn(1, d, generator=g, dtype=torch.float64)
    same = mutual_information(mu.expand(n, d), logvar.expand(n, d), torch.Generator().manual_seed(seed))
    assert abs(same) < noise
    apart = 100.0 * torch.arange(n, dtype=torch.float64)[:, None].expand(n, d)  # 100 apart, sd 0.01
    separated = mutual_information(apart, torch.full((n, d), math.log(1e-4), dtype=torch.float64),
                                   torch.Generator().manual_seed(seed))
    assert abs(separated - math.log(n)) < noise
