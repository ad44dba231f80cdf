"""The shell method's schedule, two-stage option and penalty wiring (docs/method.md §4)."""

import pytest
import torch

from shellvae.training.methods import Batch, Epoch, Objective, Shell, Vanilla
from shellvae.core.contract import VAEOutput
from shellvae.core.region import FeasibleRegion

OBJECTIVE = Objective(sigma2=0.5, beta=2.0, region=FeasibleRegion.from_bounds(0.2, 0.8))


def test_beta_ramps_from_a_tenth_to_beta():
    m = Shell()
    assert m.kl_weight(2.0, Epoch(0, 10)) == pytest.approx(0.2)
    assert m.kl_weight(2.0, Epoch(9, 10)) == pytest.approx(2.0)
    weights = [m.kl_weight(2.0, Epoch(e, 10)) for e in range(10)]
    assert weights == sorted(weights)
    assert Vanilla().kl_weight(2.0, Epoch(0, 10)) == 2.0  # the vanilla VAE uses beta throughout


def test_two_stage_first_share_has_minimal_kl_and_no_penalties():
    m = Shell(two_stage=0.2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=g)
    out = VAEOutput(torch.zeros(8, 2), torch.zeros(8, 2), torch.zeros(8, 2), 5 * x)  # far outside shell and region
    batch = Batch(x, torch.zeros(8, 3))
    for epoch, stage_one in [(0, True), (1, True), (2, False), (9, False)]:
        schedule = m.schedule(OBJECTIVE.beta, Epoch(epoch, 10))
        loss, logs = m.loss(out, batch, OBJECTIVE, schedule)
        assert logs["l_b"] > 0 and logs["l_n"] > 0  # always logged
        penalties = loss - logs["nll"] - schedule.kl_weight * logs["kl"]
        assert schedule.constraints_on is not stage_one
        if stage_one:
            assert schedule.kl_weight == pytest.approx(0.2) and float(penalties) == pytest.approx(0.0, abs=1e-5)
        else:
            expected = m.lambda_b * logs["l_b"] + m.lambda_n * logs["l_n"]
            assert float(penalties) == pytest.approx(float(expected), rel=1e-5)


def test_eps_is_a_share_of_delta():
    assert Shell(eps_ratio=0.05).eps(OBJECTIVE.region) == pytest.approx(0.04)
