"""Where the shell method's extra time per training step goes.

Per-step CPU time of the MLP VAE on the GMM's shell data (40,000 x 32, K = 8, batch 128) for
vanilla, shell, and the ablations shell_none / shell_boundary / shell_norm (which term costs
what), each stepped as ``train()`` steps (fused Adam, subnormals flushed), and for vanilla and
shell with ``forward_loss`` compiled as ``train(compile=True)`` does (forward and loss as one
graph; compiled once before the timing).

Blocks of 25 steps run interleaved across the variants, many times; CPU time (``process_time``,
one torch thread) is less disturbed by other jobs than wall time. The ratio of the per-variant
minimum and of the 20th percentile are printed (the median drifts under load).

``--denormals`` instead measures the subnormal flush: vanilla and shell, each with the flush on
and off (toggled per block), over 80 blocks (2,000 steps, ~6 epochs of 313 steps at batch 128),
printing the per-step time of each quarter: a collapsing vanilla VAE slows down without it.

``--profile`` instead counts the ATen operator calls of a step (``torch.profiler``, 100 steps
after 50 warm-up steps) for vanilla and shell, and lists the calls the shell adds.

``--fused`` instead tries the two obvious eager rewrites, checks their gradients against the
library's terms and times them beside vanilla and shell as above: L_clu, L_b and L_n as one
autograd Function (one forward, a hand-written backward), and the whole loss as a surrogate
whose autograd graph is as small as it gets (the penalties' gradient folded into the
reconstruction term: ``SurrogateShell``).

``--op-cost`` instead shows why neither helps: it times the dozen small ops of vanilla's loss
(``gaussian_nll`` and the KL term) one by one, inside real training steps and then in a tight
loop on the same tensors. Inside a step, where the forward, backward and Adam run ~450 other
ATen calls between two calls of an op, the same op costs several times more than in the loop:
a step's cost is its number of calls, whatever each call computes.

    python bench/shell_overhead.py [--blocks 60]
    python bench/shell_overhead.py --denormals
    python bench/shell_overhead.py --profile
    python bench/shell_overhead.py --fused
    python bench/shell_overhead.py --op-cost
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from shellvae import ClusterGeometry, FeasibleRegion, SphericalShell, get_method, make_gmm, mlp_vae
from shellvae.training.acceleration import adam, compiled
from shellvae.training.methods import Batch, Epoch, EpochPlan, Objective, Shell
from shellvae.core.objectives import gaussian_nll, kl_divergence


def setup():
    data = make_gmm(50_000, seed=0)
    shell = SphericalShell().fit(data.X_train)
    X = shell.transform(data.X_train)
    geometry = ClusterGeometry(8).fit(X)
    region = FeasibleRegion.from_fitted(geometry, shell)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    C = region.centers(torch.arange(len(Xt)))  # every row's centre, (N, D)
    objective = Objective(sigma2=2 * geometry.lambda_max_, region=region)
    return Xt, C, objective


def plan_of(method, objective: Objective, compile: bool = False) -> EpochPlan:
    """What ``train()`` hands each step of the sixth of 10 epochs (after the two-stage protocol's stage one); ``compile``: the forward and loss
    compiled as ``train(compile=True)`` compiles them."""
    schedule = method.schedule(objective.beta, Epoch(5, 10))  # stage two: every penalty on
    return EpochPlan(objective, schedule, compiled(method.forward_loss, compile))


def denormals(Xt, C, objective, blocks: int = 80, steps: int = 25) -> None:
    state = {}
    for name in ("vanilla", "shell"):
        for flush in (False, True):
            torch.manual_seed(0)
            model = mlp_vae(32)
            method = get_method(name)
            state[(name, flush)] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), method,
                                    plan_of(method, objective))
    times = {key: [] for key in state}
    perm = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(1))
    for block in range(blocks):
        start = (block * steps * 128) % (len(Xt) - steps * 128)
        for (name, flush), (model, opt, method, plan) in state.items():
            torch.set_flush_denormal(flush)
            t0 = time.process_time()
            for s in range(steps):
                idx = perm[start + s * 128:start + (s + 1) * 128]
                method.train_step(model, opt, Batch(Xt[idx], C[idx]), plan)
            times[(name, flush)].append((time.process_time() - t0) / steps)
    torch.set_flush_denormal(False)
    quarter = blocks // 4
    print(f"per-step CPU time (median of each quarter of {blocks} blocks of {steps} steps), 1 torch thread:")
    for (name, flush), t in times.items():
        parts = [1e6 * statistics.median(t[q * quarter:(q + 1) * quarter]) for q in range(4)]
        print(f"  {name:8s} flush_denormal={flush!s:5s} " + "  ".join(f"{v:6.0f} us" for v in parts))
    for name in ("vanilla", "shell"):
        off, on = (statistics.median(times[(name, f)][-quarter:]) for f in (False, True))
        print(f"  {name}: last quarter without / with the flush: {off / on:.3f}")


def profile_calls(Xt, C, objective, steps: int = 100) -> None:
    from torch.profiler import ProfilerActivity, profile

    per_step = {}
    for name in ("vanilla", "shell"):
        method = get_method(name)
        torch.manual_seed(0)
        model = mlp_vae(32)
        opt = adam(model, 1e-3)
        plan = plan_of(method, objective)
        perm = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(1))

        def step(s):
            idx = perm[s * 128:(s + 1) * 128]
            method.train_step(model, opt, Batch(Xt.index_select(0, idx), C.index_select(0, idx)), plan)

        for s in range(50):
            step(s)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for s in range(50, 50 + steps):
                step(s)
        per_step[name] = {e.key: (e.count / steps, e.self_cpu_time_total / steps) for e in prof.key_averages()}
        aten = sum(count for key, (count, _) in per_step[name].items() if key.startswith("aten::"))
        print(f"{name:8s} ATen calls per step: {aten:.0f}")
    extra = {key: (count - per_step["vanilla"].get(key, (0, 0))[0], t - per_step["vanilla"].get(key, (0, 0))[1])
             for key, (count, t) in per_step["shell"].items()}
    print("calls the shell adds per step (self CPU time), largest first:")
    for key, (count, t) in sorted(extra.items(), key=lambda kv: -kv[1][1])[:15]:
        print(f"  {key:60s} {count:5.1f} calls {t:7.1f} us")


class FusedShellTerms(torch.autograd.Function):
    """lambda_b L_b + lambda_n L_n with its gradient written out (L_clu and L_n returned for the logs)."""

    @staticmethod
    def forward(ctx, xhat, centers, W, upper, r_min, r_max, lambda_b, lambda_n):
        B = xhat.shape[0]
        diff = xhat - centers
        l_clu = torch.dot(diff.view(-1), diff.view(-1)) / B
        norms = torch.linalg.vector_norm(xhat, dim=-1)
        off = norms - norms.clamp(r_min, r_max)  # distance of each norm to [r_min, r_max]
        l_n = torch.dot(off, off) / B
        value = float(l_clu)
        gap = value - min(max(value, W), upper)  # distance of L_clu to [W, upper]
        ctx.save_for_backward(diff, xhat, off, norms)
        ctx.coef_b, ctx.coef_n = 4.0 * lambda_b * gap / B, 2.0 * lambda_n / B
        ctx.mark_non_differentiable(l_clu, l_n)
        return l_n * lambda_n + lambda_b * gap * gap, l_clu, l_n

    @staticmethod
    def backward(ctx, grad, _l_clu, _l_n):
        diff, xhat, off, norms = ctx.saved_tensors
        rows = (off / norms).mul_(ctx.coef_n).unsqueeze_(1)
        return torch.addcmul(diff * ctx.coef_b, xhat, rows).mul_(grad), None, None, None, None, None, None, None


@dataclass(repr=False)
class FusedShell(Shell):
    def extra_terms(self, out, batch, objective, schedule):
        region, on = objective.region, schedule.constraints_on
        penalty, l_clu, l_n = FusedShellTerms.apply(out.xhat, batch.centers, region.W_, region.delta_ - self.eps(region),
                                                    region.r_min, region.r_max, self.lambda_b * on,
                                                    self.lambda_n * on)
        return {"penalties": (1.0, penalty), "l_clu": (0.0, l_clu), "l_n": (0.0, l_n)}


@dataclass(repr=False)
class SurrogateShell(Shell):
    """The shell loss with the fewest autograd nodes: the exact gradient, the exact value.

    With the batch's L_clu and decoder norms held fixed, the gradient of nll + lambda_b L_b +
    lambda_n L_n with respect to xhat_i is 2 (w_i xhat_i - u_i), with u_i = a x_i + b mu_c(i)
    (a = 1 / (2 sigma^2 B) from the nll, b = 2 lambda_b (L_clu - clamp(L_clu)) / B from L_b) and
    w_i = a + b + lambda_n (n_i - clamp(n_i)) / (B n_i) (from L_n). That is the gradient of
    <xhat, w xhat - 2u>, two autograd ops in place of the nll's and the penalties' ~20; w and u
    and every logged value are computed without autograd, and a detached correction makes the
    loss's value the true one. Only for the Gaussian decoder (the library's terms are general).
    """

    def loss(self, out, batch, objective, schedule):
        region, on = objective.region, schedule.constraints_on
        xhat, x, centers, B = out.xhat, batch.x, batch.centers, len(batch.x)
        a = 1.0 / (2.0 * objective.sigma2 * B)
        kl = kl_divergence(out.mu, out.logvar)
        with torch.no_grad():
            xd = xhat.detach()
            nll = gaussian_nll(x, xd, objective.sigma2)
            l_clu = region.cluster_loss(xd, centers)
            norms = torch.linalg.vector_norm(xd, dim=-1)
            off = norms - norms.clamp(region.r_min, region.r_max)
            l_n = off.square().mean()
            value, upper = float(l_clu), region.delta_ - self.eps(region)
            gap = max(value - upper, 0.0) - max(region.W_ - value, 0.0)  # half of dL_b / dL_clu
            b = 2.0 * self.lambda_b * on * gap / B
            w = (off / norms).mul_(self.lambda_n * on / B).add_(a + b).unsqueeze_(1)
            minus_2u = torch.add(x, centers, alpha=b / a).mul_(-2.0 * a)
            l_b = torch.tensor(gap * gap)
            true = nll + self.lambda_b * on * l_b + self.lambda_n * on * l_n
        quad = torch.vdot(xhat.flatten(), torch.addcmul(minus_2u, xhat, w).flatten())
        total = quad + schedule.kl_weight * kl
        total = total + (true + schedule.kl_weight * kl.detach() - total.detach())
        return total, {"nll": nll, "kl": kl, "l_clu": l_clu, "l_b": l_b, "l_n": l_n, "loss": total}


def timed_loss_ops(out, x: torch.Tensor, sigma2: float, kl_weight: float, times: list) -> torch.Tensor:
    """Vanilla's loss, nll + kl_weight * KL, written op by op (as ``gaussian_nll`` and
    ``kl_per_dim`` compute it); appends each op's time to ``times``."""
    clock = time.perf_counter
    t0 = clock()

    def tick(value):
        nonlocal t0
        t1 = clock()
        times.append(t1 - t0)
        t0 = t1
        return value

    sq = tick(F.mse_loss(out.xhat, x, reduction="sum"))
    sq = tick(sq / x.shape[0])
    nll = tick(sq / (2.0 * sigma2) + 0.5 * x.shape[1] * math.log(2.0 * math.pi * sigma2))
    mu2 = tick(out.mu.pow(2))
    var = tick(out.logvar.exp())
    kl = tick(mu2 + var)
    kl = tick(kl - 1.0)
    kl = tick(kl - out.logvar)
    kl = tick(0.5 * kl)
    kl = tick(kl.sum(dim=-1))
    kl = tick(kl.mean())
    kl = tick(kl_weight * kl)
    return tick(nll + kl)


LOSS_OPS = ["mse_loss", "/ B", "/ 2 sigma^2 + c", "mu^2", "exp", "+", "- 1", "- logvar", "0.5 *", "sum(-1)",
            "mean", "kl_weight *", "nll + kl"]


def op_cost(Xt, objective, steps: int = 1500, warmup: int = 200, loops: int = 2000) -> None:
    """Each op of vanilla's loss: its median time inside training steps and in a tight loop."""
    torch.manual_seed(0)
    model = mlp_vae(32)
    opt = adam(model, 1e-3)
    kl_weight = get_method("vanilla").schedule(objective.beta, Epoch(5, 10)).kl_weight
    perm = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(1))
    in_step = []
    for s in range(warmup + steps):
        start = (s * 128) % (len(Xt) - 128)
        x = Xt.index_select(0, perm[start:start + 128])
        opt.zero_grad(set_to_none=True)
        out = model(x)
        times = []
        loss = timed_loss_ops(out, x, objective.sigma2, kl_weight, times)
        loss.backward()
        opt.step()
        if s >= warmup:
            in_step.append(times)
    looped = []
    for _ in range(loops):  # the last step's tensors, the same ops back to back
        times = []
        timed_loss_ops(out, x, objective.sigma2, kl_weight, times)
        looped.append(times)
    step_us, loop_us = (1e6 * np.median(np.array(t), axis=0) for t in (in_step, looped))
    print(f"vanilla's loss op by op, median us: inside {steps} training steps / in a loop of {loops} (1 torch thread)")
    for name, a, b in zip(LOSS_OPS, step_us, loop_us):
        print(f"  {name:16s} {a:6.1f}  {b:6.1f}   x{a / b:.1f}")
    print(f"  {'all':16s} {step_us.sum():6.1f}  {loop_us.sum():6.1f}   x{step_us.sum() / loop_us.sum():.1f}")


def dispatched_ops(method, objective, Xt, C, steps: int = 10) -> float:
    """ATen ops dispatched per training step (forward, backward, Adam), counted below autograd."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    model = mlp_vae(32)
    opt, plan = adam(model, 1e-3), plan_of(method, objective)
    method.train_step(model, opt, Batch(Xt[:128], C[:128]), plan)  # Adam's state exists from here on
    with Count():
        for _ in range(steps):
            method.train_step(model, opt, Batch(Xt[:128], C[:128]), plan)
    return Count.calls / steps


def gradient_gap(objective, Xt, C, rewrite: Shell) -> float:
    """Largest |difference| of the parameter gradients, ``rewrite`` against the library's shell
    terms, relative to the largest gradient (same model, batch and noise)."""
    grads = []
    for method in (get_method("shell"), rewrite):
        torch.manual_seed(0)
        model = mlp_vae(32)
        torch.manual_seed(1)
        _, loss, _ = plan_of(method, objective).loss(model, Batch(Xt[:128], C[:128]))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    return float((grads[0] - grads[1]).abs().max() / grads[0].abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=60, help="interleaved blocks of 25 steps per variant")
    ap.add_argument("--denormals", action="store_true", help="measure flushing subnormals instead")
    ap.add_argument("--profile", action="store_true", help="count the ATen calls of a step instead")
    ap.add_argument("--fused", action="store_true", help="time two rewrites of the shell terms instead")
    ap.add_argument("--op-cost", action="store_true", help="time small ops inside steps and in a loop instead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    Xt, C, objective = setup()
    if args.denormals:
        denormals(Xt, C, objective)
        return
    if args.profile:
        torch.set_flush_denormal(True)  # as train() does
        profile_calls(Xt, C, objective)
        return
    torch.set_flush_denormal(True)  # as train() does
    if args.op_cost:
        op_cost(Xt, objective)
        return
    if args.fused:
        for label, rewrite in (("fused terms", FusedShell()), ("surrogate", SurrogateShell())):
            print(f"{label}: largest gradient difference {gradient_gap(objective, Xt, C, rewrite):.1e} of the "
                  "largest gradient")
        variants = {"vanilla": (get_method("vanilla"), False), "shell": (get_method("shell"), False),
                    "shell (fused terms)": (FusedShell(), False), "shell (surrogate)": (SurrogateShell(), False)}
        print("ATen ops dispatched per step: " + ", ".join(
            f"{name} {dispatched_ops(method, objective, Xt, C):.0f}" for name, (method, _) in variants.items()))
    else:
        variants = {name: (get_method(name), False)
                    for name in ("vanilla", "shell", "shell_none", "shell_boundary", "shell_norm")}
        for name in ("vanilla", "shell"):
            variants[f"{name} (compiled loss)"] = (get_method(name), True)  # as train(compile=True) compiles
    state = {}
    for name, (method, compile) in variants.items():
        torch.manual_seed(0)
        model = mlp_vae(32)
        # the loop's optimiser: fused Adam
        state[name] = (model, adam(model, 1e-3), method, plan_of(method, objective, compile))
    times = {name: [] for name in variants}
    perm = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(1))
    steps = 25
    for block in range(args.blocks + 1):  # block 0: warm-up (compiles the compiled variants), not timed
        start = (block * steps * 128) % (len(Xt) - steps * 128)
        for name, (model, opt, method, plan) in state.items():
            t0 = time.process_time()
            for s in range(steps):
                idx = perm[start + s * 128:start + (s + 1) * 128]
                method.train_step(model, opt, Batch(Xt.index_select(0, idx), C.index_select(0, idx)), plan)
            if block:
                times[name].append((time.process_time() - t0) / steps)
    p20 = {name: float(np.percentile(t, 20)) for name, t in times.items()}
    print(f"per-step CPU time, {args.blocks} interleaved blocks of {steps} steps (1 torch thread):")
    for name, t in times.items():
        base = "vanilla (compiled loss)" if "compiled" in name else "vanilla"
        print(f"  {name:24s} min {1e6 * min(t):6.0f} us  p20 {1e6 * p20[name]:6.0f} us  median "
              f"{1e6 * statistics.median(t):6.0f} us   / {base}: min {min(t) / min(times[base]):.3f}, "
              f"p20 {p20[name] / p20[base]:.3f}")
    if not args.fused:
        print(f"shell's extra per step (p20): eager {1e6 * (p20['shell'] - p20['vanilla']):.0f} us, compiled "
              f"{1e6 * (p20['shell (compiled loss)'] - p20['vanilla (compiled loss)']):.0f} us")


if __name__ == "__main__":
    main()
