"""The shell method's schedule, two-stage option and penalty wiring (docs/method.md §4)."""

import pytest
import torch

from shellvae.methods import Batch, Shell, TrainContext, Vanilla
from shellvae.model import VAEOutput


def ctx_at(epoch, n_epochs=10, **kw):
    return TrainContext(sigma2=0.5, beta=2.0, n_epochs=n_epochs, W=0.2, delta=0.8, epoch=epoch, **kw)


def test_beta_ramps_from_a_tenth_to_beta():
    m = Shell()
    assert m.kl_weight(ctx_at(0)) == pytest.approx(0.2)
    assert m.kl_weight(ctx_at(9)) == pytest.approx(2.0)
    weights = [m.kl_weight(ctx_at(e)) for e in range(10)]
    assert weights == sorted(weights)
    assert Vanilla().kl_weight(ctx_at(0)) == 2.0  # the vanilla VAE uses beta throughout


def test_two_stage_first_share_has_minimal_kl_and_no_penalties():
    m = Shell(two_stage=0.2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=g)
    out = VAEOutput(torch.zeros(8, 2), torch.zeros(8, 2), torch.zeros(8, 2), 5 * x)  # far outside shell and region
    batch = Batch(x, torch.zeros(8, 3))
    for epoch, stage_one in [(0, True), (1, True), (2, False), (9, False)]:
        ctx = ctx_at(epoch)
        loss, logs = m.loss(out, batch, ctx)
        assert logs["l_b"] > 0 and logs["l_n"] > 0  # always logged
        penalties = loss - logs["nll"] - m.kl_weight(ctx) * logs["kl"]
        if stage_one:
            assert m.kl_weight(ctx) == pytest.approx(0.2) and float(penalties) == pytest.approx(0.0, abs=1e-5)
        else:
            expected = m.lambda_b * logs["l_b"] + m.lambda_n * logs["l_n"]
            assert float(penalties) == pytest.approx(float(expected), rel=1e-5)


def test_eps_is_a_share_of_delta():
    assert Shell(eps_ratio=0.05).eps(ctx_at(0)) == pytest.approx(0.04)
