"""FeasibleRegion and DualAscent: the constraint as a building block for any PyTorch loop
(region.py), and the same object inside the estimator's shell methods."""

import numpy as np
import pytest
import torch

from shellvae import ClusterGeometry, DualAscent, FeasibleRegion, ShellVAE, ShellVAEError, SphericalShell, make_gmm
from shellvae.training.methods import Objective, Schedule, get_method
from shellvae.training.methods.base import Batch
from shellvae.core.contract import VAEOutput
from shellvae.core.objectives import boundary_penalty, cluster_loss, norm_penalty


@pytest.fixture(scope="module")
def data():
    return make_gmm(2_000, seed=0)


@pytest.fixture(scope="module")
def region(data):
    return FeasibleRegion(8).fit(data.X_train)


def test_fit_is_the_shell_then_the_geometry_of_the_shell_rows(data, region):
    shell = SphericalShell().fit(data.X_train)
    np.testing.assert_array_equal(region.transform(data.X_test), shell.transform(data.X_test))
    geometry = ClusterGeometry(8).fit(shell.transform(data.X_train))
    np.testing.assert_array_equal(region.geometry_.labels_, geometry.labels_)
    assert (region.W_, region.delta_, region.feasible_) == (geometry.W_, geometry.delta_collapse_, True)


def test_centres_by_index_for_training_rows_and_by_nearest_centre_for_new_rows(data, region):
    X = torch.as_tensor(region.transform(data.X_train), dtype=torch.float32)
    table = torch.as_tensor(region.geometry_.centers_, dtype=torch.float32)
    idx = torch.arange(0, len(X), 7)
    by_index = region.centers(idx)
    torch.testing.assert_close(by_index, table[torch.as_tensor(region.geometry_.labels_)[idx]], rtol=0, atol=0)
    by_nearest = region.centers(x=X[idx])
    torch.testing.assert_close(by_nearest, table[torch.cdist(X[idx], table).argmin(1)], rtol=0, atol=0)
    # K-means labels are nearest-centre assignments: the two lookups agree on (nearly) every training row
    agree = (by_index == by_nearest).all(dim=1).float().mean()
    assert agree >= 0.99
    # new rows: their nearest centre, as the held-out metrics use (ClusterGeometry.predict)
    X_new = torch.as_tensor(region.transform(data.X_test), dtype=torch.float32)
    labels = region.geometry_.predict(X_new.numpy())
    torch.testing.assert_close(region.centers(x=X_new), table[torch.as_tensor(labels)], rtol=0, atol=0)
    with pytest.raises(ShellVAEError, match="either index= .* or x="):
        region.centers(idx, x=X_new)


def test_the_penalties_are_the_objectives_terms(region):
    gen = torch.Generator().manual_seed(0)
    xhat = torch.randn(64, 32, generator=gen) * 0.3
    centers = region.centers(torch.arange(64))
    l_clu = region.cluster_loss(xhat, centers)
    assert torch.equal(l_clu, cluster_loss(xhat, centers))
    for eps in (0.0, 0.05 * region.delta_):
        for value in (l_clu, torch.tensor(region.W_ / 2), torch.tensor(region.delta_ * 2)):
            assert torch.equal(region.boundary_penalty(value, eps), boundary_penalty(value, region.W_, region.delta_, eps))
    assert torch.equal(region.norm_penalty(xhat), norm_penalty(xhat, region.r_min, region.r_max))
    assert region.boundary_penalty(torch.tensor((region.W_ + region.delta_) / 2)) == 0  # inside the region
    assert float(region.constraint(l_clu, 0.1)) == pytest.approx(float(l_clu) - (region.delta_ - 0.1))
    assert region.eps_from_alpha(0.5) == pytest.approx(0.5 * (region.delta_ - region.W_))


def test_the_shell_methods_take_their_terms_from_the_region(region):
    """One implementation: the estimator's shell methods compute L_clu and the penalties with the run's region."""
    gen = torch.Generator().manual_seed(1)
    x = torch.as_tensor(region.transform(make_gmm(100, seed=1).X_train), dtype=torch.float32)
    out = VAEOutput(torch.zeros(len(x), 2), torch.zeros(len(x), 2), torch.zeros(len(x), 2),
                    x + 0.2 * torch.randn(x.shape, generator=gen))
    batch = Batch(x, region.centers(x=x))
    objective, schedule = Objective(sigma2=1.0, region=region), Schedule(kl_weight=1.0)
    l_clu = region.cluster_loss(out.xhat, batch.centers)
    shell = get_method("shell").extra_terms(out, batch, objective, schedule)
    assert torch.equal(shell["l_clu"][1], l_clu)
    assert torch.equal(shell["l_b"][1], region.boundary_penalty(l_clu, 0.05 * region.delta_))
    assert torch.equal(shell["l_n"][1], region.norm_penalty(out.xhat))
    lagrange = get_method("shell_lagrange").extra_terms(out, batch, objective, schedule)
    assert torch.equal(lagrange["constraint"][1], region.constraint(l_clu, region.eps_from_alpha(0.5)))


def test_dual_ascent_moves_the_multiplier_by_the_averaged_constraint():
    dual = DualAscent(lr=0.5, ema=0.9)
    assert dual.update(0.2) == pytest.approx(0.1)  # first value: the average is the constraint itself
    assert dual.average == pytest.approx(0.2)
    assert dual.update(-1.0) == pytest.approx(0.1 + 0.5 * (0.9 * 0.2 - 0.1))  # average 0.08: still > 0
    for _ in range(50):
        dual.update(-1.0)  # the constraint holds with room: the multiplier falls to 0 and stays there
    assert dual.multiplier == 0.0


def test_shell_lagrange_uses_dual_ascent(data):
    est = ShellVAE("shell_lagrange", n_clusters=8, epochs=2, latent_dim=2, encoder_hidden=(16,),
                   decoder_hidden=(16,)).fit(data.X_train)
    assert isinstance(est.method_.dual, DualAscent)
    assert est.method_.multiplier == est.method_.dual.multiplier >= 0


def test_a_region_from_bounds_has_penalties_but_no_centres():
    region = FeasibleRegion.from_bounds(0.2, 0.8)
    assert float(region.boundary_penalty(torch.tensor(1.0))) == pytest.approx(0.2 ** 2)
    with pytest.raises(ShellVAEError, match="call fit"):
        region.centers(torch.arange(3))
