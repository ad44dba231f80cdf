"""Baselines and ablations: every method trains by name, and each one does what its paper says.

Schedules are pure functions checked at known points; mechanisms (free bits, BN-VAE's bound,
freezing in aggressive/EM, dual ascent) are checked on a tiny seeded model; one slow test
trains ``shell_lagrange`` in the extreme violating condition and certifies it on held-out data.
"""

import math

import numpy as np
import pytest
import torch

from shellvae import ShellVAE, make_gmm, mlp_vae
from shellvae.errors import ShellVAEError
from shellvae.training.methods import (METHODS, BNVAE, EM, Aggressive, Batch, Cyclical, Epoch, EpochPlan, FreeBits, KLAnneal,
                              Objective, Shell, ShellLagrange, get_method)
from shellvae.core.region import FeasibleRegion
from shellvae.training.methods.annealing import warmup_scale
from shellvae.training.methods.cyclical import cyclical_scale

D, LATENT = 12, 4


@pytest.fixture(scope="module")
def tiny_gmm():
    return make_gmm(800, n_components=4, n_features=D, seed=0)


@pytest.fixture
def tiny():
    """A seeded small VAE, one Adam optimiser over all its parameters (as the loop has) and a batch."""
    torch.manual_seed(0)
    model = mlp_vae(D, LATENT, (32,), (32,))
    x = torch.randn(64, D, generator=torch.Generator().manual_seed(1))
    return model, torch.optim.Adam(model.parameters(), lr=1e-2), Batch(x)


def plan(method, objective, epoch=0, total=1, draw_batch=None):
    """The EpochPlan the loop would hand the method's steps at ``epoch`` of ``total``."""
    return EpochPlan(objective, method.schedule(objective.beta, Epoch(epoch, total)), method.forward_loss, draw_batch)


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a, b))


def changed(a, b):
    return all(not torch.equal(p, q) for p, q in zip(a, b))


# -- registry -------------------------------------------------------------------------------------

def test_every_method_is_registered_with_summary_and_reference():
    expected = {"vanilla", "beta", "kl_anneal", "cyclical", "free_bits", "bn_vae", "aggressive", "em", "shell",
                "shell_none", "shell_boundary", "shell_norm", "shell_lagrange"}
    assert expected <= set(METHODS)
    for name, cls in METHODS.items():
        assert cls.name == name
        assert cls.summary and "\n" not in cls.summary
        assert cls.reference


def test_get_method_by_name_with_params():
    assert get_method("free_bits", free_bits=0.25).free_bits == 0.25
    assert get_method("beta", kl_beta=0.1).kl_weight(2.0, Epoch(0, 1)) == pytest.approx(0.2)
    with pytest.raises(ShellVAEError, match="Allowed: free_bits"):
        get_method("free_bits", lambda_b=1.0)
    # text (the command line's -p KEY=VALUE) is converted to the declared type and range-checked
    assert get_method("em", e_steps="3").e_steps == 3 and get_method("shell", use_norm="false").use_norm is False
    for bad, message in [({"lambda_b": "abc"}, "lambda_b='abc' is not a number"),
                         ({"lambda_b": -5}, "lambda_b=-5 is out of range: need a number >= 0"),
                         ({"e_steps": 2.5}, "e_steps=2.5 is not an integer")]:
        with pytest.raises(ShellVAEError, match=message):
            get_method("em" if "e_steps" in bad else "shell", **bad)
    with pytest.raises(ShellVAEError, match="free_bits=nan is not a number"):
        get_method("free_bits", free_bits=float("nan"))
    # an instance is copied, so fitting never changes the caller's method (its multiplier, its mode)
    mine = ShellLagrange(alpha=0.3)
    copy = get_method(mine)
    copy.update_multiplier(1.0)
    assert copy is not mine and copy.alpha == 0.3 and mine.multiplier == 0.0


def test_ablations_switch_only_the_penalties():
    flags = {n: (METHODS[n]().use_boundary, METHODS[n]().use_norm)
             for n in ("shell", "shell_none", "shell_boundary", "shell_norm")}
    assert flags == {"shell": (True, True), "shell_none": (False, False),
                     "shell_boundary": (True, False), "shell_norm": (False, True)}
    assert all(issubclass(METHODS[n], Shell) for n in flags)


# -- schedules ------------------------------------------------------------------------------------

def test_kl_annealing_warms_up_linearly_then_stays_at_beta():
    assert [warmup_scale(e, 4) for e in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    method = KLAnneal(warmup_epochs=10)
    weights = [method.kl_weight(3.0, Epoch(e, 20)) for e in range(20)]
    assert weights[0] == 0.0 and weights[5] == pytest.approx(1.5) and weights[10:] == [3.0] * 10
    assert all(a <= b for a, b in zip(weights, weights[1:]))


def test_cyclical_schedule_shape():
    M, R = 4, 0.5
    # known points of the first cycle (length 1/M): 0 at the start, beta/2 at R/2 of it, beta from R on
    assert cyclical_scale(0.0, M, R) == 0.0
    assert cyclical_scale(R / 2 / M, M, R) == pytest.approx(0.5)  # position R/2 of the cycle
    assert cyclical_scale(R / M, M, R) == pytest.approx(1.0) and cyclical_scale(0.9 / M, M, R) == 1.0
    grid = np.linspace(0, 1, 401)[:-1]
    values = np.array([cyclical_scale(p, M, R) for p in grid])
    assert values.min() == 0.0 and values.max() == 1.0
    # periodic with period 1/M, and non-decreasing within each cycle
    assert np.allclose(values[:100], values[100:200]) and np.allclose(values[:100], values[300:400])
    assert np.all(np.diff(values[:100]) >= 0)
    # epoch-wise: 20 epochs, 4 cycles of 5 epochs -> 0, .4, .8, 1, 1 (times beta), restarting each cycle
    method = Cyclical(n_cycles=M, ratio=R)
    weights = [method.kl_weight(2.0, Epoch(e, 20)) for e in range(20)]
    assert weights == pytest.approx([0.0, 0.8, 1.6, 2.0, 2.0] * 4)
    # float positions such as 10/30 * 3 start a cycle at 0, not at beta
    assert cyclical_scale(10 / 30, 3, 0.5) == 0.0


# -- free bits ------------------------------------------------------------------------------------

def test_free_bits_floors_each_dimension_and_logs_the_raw_kl(tiny):
    model, optimizer, batch = tiny
    method, lam = FreeBits(free_bits=0.3), 0.3
    step = plan(method, Objective(sigma2=50.0, beta=1.0))  # a large decoder variance: most dims fall below the floor
    for _ in range(60):
        logs = method.train_step(model, optimizer, batch, step)
        with torch.no_grad():
            per_dim = method.kl_dims(model(batch.x))
        assert (per_dim >= lam).all()
        assert logs["kl_term"] >= LATENT * lam - 1e-6
    assert logs["kl"] < logs["kl_term"]  # the floor is active: the plain KL is smaller than the term


def test_free_bits_gives_no_kl_gradient_below_the_floor():
    mu = torch.tensor([[0.1, 2.0], [-0.1, 1.0]], requires_grad=True)  # dim 0: KL ~0.005 nats, dim 1: ~1.25
    logvar = torch.zeros(2, 2, requires_grad=True)
    out = type("Out", (), {"mu": mu, "logvar": logvar})
    FreeBits(free_bits=0.5).kl_term(out, None).backward()
    assert torch.all(mu.grad[:, 0] == 0) and torch.all(logvar.grad[:, 0] == 0)
    assert torch.all(mu.grad[:, 1] != 0)


# -- BN-VAE ---------------------------------------------------------------------------------------

def test_bn_vae_kl_is_above_its_analytic_bound(tiny):
    model, _, batch = tiny
    method = BNVAE(gamma=0.7)
    model = method.prepare(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    step = plan(method, Objective(sigma2=100.0, beta=1.0))  # the KL pull dominates: a plain VAE would collapse here
    bound = method.kl_lower_bound(LATENT)
    assert bound == pytest.approx(LATENT * 0.49 / 2)
    for _ in range(100):
        logs = method.train_step(model, optimizer, batch, step)
        assert logs["kl"] >= bound - 1e-6
    bn = model.encoder.bn
    assert torch.all(bn.weight == 0.7) and not bn.weight.requires_grad  # the scale never moved
    # the exact form: batch-mean KL >= sum_j E_batch[mu_j^2] / 2 = sum_j (gamma^2 var/(var + eps) + b_j^2) / 2
    with torch.no_grad():
        out = model(batch.x)
        pre = model.encoder.encoder(batch.x).chunk(2, dim=-1)[0]
        var = pre.var(0, unbiased=False)
        exact = 0.5 * (0.49 * var / (var + bn.eps) + bn.bias ** 2).sum()
        assert out.mu.pow(2).mean(0).sum() / 2 == pytest.approx(float(exact), rel=1e-4)
    assert logs["kl"] >= exact - 1e-5


def test_bn_vae_bound_survives_training_in_a_violating_condition():
    """At sigma^2 = 2 lambda_max the KL keeps its floor for the whole fit. With PyTorch's BatchNorm
    eps (1e-5) it does not: the encoder shrinks mu's batch variance under eps and the KL falls."""
    data = make_gmm(2_000, seed=0)
    kl = {}
    for bn_eps in (1e-12, 1e-5):
        est = ShellVAE("bn_vae", method_params={"bn_eps": bn_eps}, n_clusters=8, sigma2_ratio=2, epochs=10,
                       random_state=0).fit(data.X_train)
        kl[bn_eps] = [row["train_kl"] for row in est.history_]
    bound = BNVAE().kl_lower_bound(8)
    assert min(kl[1e-12]) >= bound
    assert kl[1e-5][-1] < 0.2 * bound


def test_bn_vae_prepare_is_deterministic_and_round_trips(tiny):
    model, _, batch = tiny
    method = BNVAE(gamma=0.5)
    model = method.prepare(model)
    model(batch.x)  # updates the running statistics
    model.eval()
    torch.manual_seed(123)  # another seed: prepare must not depend on it
    fresh = method.prepare(mlp_vae(D, LATENT, (32,), (32,)))
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    assert torch.equal(fresh.encode(batch.x)[0], model.encode(batch.x)[0])
    model.train()
    model(batch.x[:1])  # a batch of one (the loop's last batch can be) must not fail in training mode


# -- aggressive and EM: freezing ------------------------------------------------------------------

@pytest.mark.parametrize("method", [Aggressive(max_inner_steps=5), EM(e_steps=3)], ids=["aggressive", "em"])
def test_alternating_steps_freeze_the_other_half(tiny, method):
    model, optimizer, batch = tiny
    step = plan(method, Objective(sigma2=1.0))
    method.step_on(model.parameters(), model, optimizer, batch, step)  # a joint step: Adam has momentum everywhere
    enc, dec = snapshot(model.encoder), snapshot(model.decoder)
    # the encoder phase of each method moves every encoder tensor and no decoder bit
    if isinstance(method, Aggressive):
        assert 1 <= method.encoder_phase(model, optimizer, batch, step) <= 5
    else:
        method.e_phase(model, optimizer, batch, step)
    assert same(dec, snapshot(model.decoder)) and changed(enc, snapshot(model.encoder))
    enc, dec = snapshot(model.encoder), snapshot(model.decoder)
    method.decoder_step(model, optimizer, batch, step)
    assert same(enc, snapshot(model.encoder)) and changed(dec, snapshot(model.decoder))


def test_em_step_is_e_phase_then_m_phase(tiny):
    model, optimizer, batch = tiny
    method, calls = EM(e_steps=4, m_steps=2), []
    step = plan(method, Objective(sigma2=1.0))
    method.encoder_step = lambda *a: calls.append("E") or EM.encoder_step(method, *a)
    method.decoder_step = lambda *a: calls.append("M") or EM.decoder_step(method, *a)
    logs = method.train_step(model, optimizer, batch, step)
    assert calls == ["E"] * 4 + ["M"] * 2 and torch.isfinite(logs["loss"])


def test_inner_steps_use_fresh_batches_when_the_loop_offers_them(tiny):
    model, optimizer, batch = tiny
    drawn = []

    def sample_batch():
        drawn.append(Batch(torch.randn(64, D)))
        return drawn[-1]

    method = EM(e_steps=3)
    method.train_step(model, optimizer, batch, plan(method, Objective(sigma2=1.0), draw_batch=sample_batch))
    assert len(drawn) == 3  # after each E step (the first used the step's own batch)


def test_aggressive_mode_ends_when_mutual_information_falls(tiny):
    model, optimizer, batch = tiny
    method = Aggressive(max_inner_steps=3, check_every=1)
    step = plan(method, Objective(sigma2=1.0))
    logs = method.train_step(model, optimizer, batch, step)
    assert logs["aggressive"] == 1 and logs["inner_steps"] >= 1 and torch.isfinite(logs["mi"])
    for mi in (0.5, 0.8, 0.9):  # rising: stays aggressive
        method.after_epoch({"train_mi": mi})
        assert method.aggressive
    method.after_epoch({"train_mi": 0.85})
    assert not method.aggressive
    method.after_epoch({"train_mi": 2.0})  # no way back (He et al.)
    assert not method.aggressive
    enc = snapshot(model.encoder)
    logs = method.train_step(model, optimizer, batch, step)  # joint step now
    assert logs["aggressive"] == 0 and logs["inner_steps"] == 0 and changed(enc, snapshot(model.encoder))
    restored = Aggressive()
    restored.load_state_dict(method.state_dict())
    assert not restored.aggressive and restored.prev_mi == 0.85


# -- shell_lagrange -------------------------------------------------------------------------------

def test_lagrange_multiplier_rises_while_violated_and_falls_back_when_satisfied():
    method = ShellLagrange(lr_lambda=1.0, constraint_ema=0.9)
    rising = [method.update_multiplier(0.1) for _ in range(30)]
    assert rising[0] > 0 and all(b > a for a, b in zip(rising, rising[1:]))
    assert rising[-1] == pytest.approx(3.0)  # 30 steps of 0.1 (the average starts at the first value)
    falling = [method.update_multiplier(-0.1) for _ in range(100)]
    peak = int(np.argmax(falling))  # the moving average takes a few steps to turn negative
    assert peak < 10 and all(b <= a for a, b in zip(falling[peak:], falling[peak + 1:]))
    assert falling[-1] == 0.0  # clamped at zero, never negative
    restored = ShellLagrange()
    restored.load_state_dict(method.state_dict())
    assert restored.multiplier == method.multiplier and restored.constraint_avg == method.constraint_avg


def test_lagrange_logs_and_margin(tiny):
    model, optimizer, _ = tiny
    x = torch.randn(64, D, generator=torch.Generator().manual_seed(2))
    batch = Batch(x, centers=torch.zeros_like(x))  # a constant-centre toy: L_clu = mean ||xhat||^2
    method = ShellLagrange(alpha=0.5, lr_lambda=1.0, constraint_ema=0.0)  # no smoothing: each step counts
    assert method.eps(FeasibleRegion.from_bounds(0.2, 0.8)) == pytest.approx(0.3)
    # delta - eps = 10 - 4.9: satisfied with room, so the multiplier stays at 0
    roomy = plan(method, Objective(sigma2=1.0, region=FeasibleRegion.from_bounds(0.2, 10.0)))
    logs = method.train_step(model, optimizer, batch, roomy)
    assert logs["lagrange_multiplier"] == 0.0 and logs["constraint"] < 0 and method.multiplier == 0.0
    tight = plan(method, Objective(sigma2=1.0, region=FeasibleRegion.from_bounds(0.0, 0.01)))
    method.train_step(model, optimizer, batch, tight)  # violated: the multiplier rises and the next loss uses it
    lam = method.multiplier
    assert lam > 0
    assert float(method.train_step(model, optimizer, batch, tight)["lagrange_multiplier"]) == pytest.approx(lam)


def test_lagrange_multiplier_is_saved_with_the_model(tiny_gmm, tmp_path):
    est = ShellVAE("shell_lagrange", n_clusters=4, sigma2_ratio=10, beta=10, epochs=2, random_state=0,
                   checkpoint=str(tmp_path / "ckpt.pt")).fit(tiny_gmm.X_train)
    assert est.method_.multiplier > 0
    assert est.history_[-1]["train_lagrange_multiplier"] > 0 and "train_constraint" in est.history_[-1]
    est.save(tmp_path / "model.pt")
    loaded = ShellVAE.load(tmp_path / "model.pt")
    assert loaded.method_.multiplier == est.method_.multiplier
    assert loaded.certify(tiny_gmm.X_test).eps == pytest.approx(0.05 * est.delta_)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["method_state"]["multiplier"] == est.method_.multiplier


@pytest.mark.slow
def test_lagrange_holds_the_constraint_in_the_extreme_violating_condition():
    """sigma^2 = 10 lambda_max, beta = 10 (docs/method.md §5): vanilla collapses; the Lagrangian variant
    keeps held-out L_clu below delta - eps with eps = (delta - W) / 2, and is certified."""
    data = make_gmm(6_000, seed=0)
    common = dict(n_clusters=8, sigma2_ratio=10, beta=10, epochs=30, random_state=0)
    est = ShellVAE("shell_lagrange", **common).fit(data.X_train)
    eps = est.method_.eps(est.region_)
    assert eps == pytest.approx(0.5 * (est.delta_ - est.W_))
    metrics = est.evaluate(data.X_test)
    assert metrics["l_clu"] <= est.delta_ - eps
    cert = est.certify(data.X_test, eps=eps)  # at its own training margin, which is stricter than the default bar
    assert cert.certified and cert.eps == pytest.approx(eps) and est.certify(data.X_test).certified
    assert metrics["kl"] > 0.1 and metrics["active_units"] >= 1
    vanilla = ShellVAE("vanilla", **common).fit(data.X_train)
    assert not vanilla.certify(data.X_test, eps=eps).certified


# -- every method, by name ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_by_name_with_finite_history(name, tiny_gmm, tmp_path):
    est = ShellVAE(name, latent_dim=LATENT, n_clusters=4, epochs=2, encoder_hidden=(32,), decoder_hidden=(32,),
                   random_state=0).fit(tiny_gmm.X_train, X_val=tiny_gmm.X_test)
    assert len(est.history_) == 2
    for row in est.history_:
        values = [v for k, v in row.items() if k.startswith(("train_", "val_"))]
        assert values and all(math.isfinite(v) for v in values)
        assert "val_kl" in row and "train_kl" in row
    # the saved model (prepare re-applied on load) encodes exactly as the fitted one
    est.save(tmp_path / "m.pt")
    assert np.array_equal(ShellVAE.load(tmp_path / "m.pt").transform(tiny_gmm.X_test), est.transform(tiny_gmm.X_test))
