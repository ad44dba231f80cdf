"""Where the shell method's extra time per training step goes, and what a leaner formulation saves.

Per-step CPU time of the MLP VAE on the GMM's shell data (40,000 x 32, K = 8, batch 128) for:

- vanilla, shell, and the ablations shell_none / shell_boundary / shell_norm (which term costs what);
- ``shell (lean terms)``: the same objective with two rewrites of objectives.py that give
  bit-identical values and gradients (checked below) in fewer autograd ops:
  * boundary penalty ``(l - l.clamp(W, U))**2`` with the clamp *detached*: where the clamp is
    active the gap is 0, so its derivative never contributes; the clamp's backward disappears;
  * norm penalty ``F.mse_loss(norms, norms.detach().clamp(r_min, r_max))``: the same, fused into
    one op (forward and backward) instead of sub, pow and mean.

Blocks of 25 steps run interleaved across the variants, many times; CPU time (``process_time``,
one torch thread) is less disturbed by other jobs than wall time. The ratio of the per-variant
minimum and of the 20th percentile are printed (the median drifts under load). Subnormal floats
are flushed to zero, as the training loop does (``train(flush_denormal=True)``).

``--denormals`` instead measures that flush: vanilla and shell, each with the flush on and off
(toggled per block), over 80 blocks (2,000 steps, ~6 epochs of 313 steps at batch 128),
printing the per-step time of each quarter: a collapsing vanilla VAE slows down without it.

    python bench/shell_overhead.py [--blocks 60]
    python bench/shell_overhead.py --denormals
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from shellvae import ClusterGeometry, SphericalShell, get_method, make_gmm, mlp_vae
from shellvae.methods import Batch, TrainContext
from shellvae.methods.shell import Shell
from shellvae.objectives import cluster_loss


def boundary_penalty_lean(l_clu, W, delta, eps):
    upper = delta - eps
    if W <= upper:
        return (l_clu - l_clu.detach().clamp(W, upper)).pow(2)
    return F.relu(l_clu - upper).pow(2) + F.relu(W - l_clu).pow(2)


def norm_penalty_lean(xhat, r_min, r_max):
    norms = torch.linalg.vector_norm(xhat, dim=-1)
    return F.mse_loss(norms, norms.detach().clamp(r_min, r_max))


@dataclass(repr=False)
class ShellLean(Shell):
    """``shell`` with the lean penalty terms (a bench-local subclass; not registered)."""

    def extra_terms(self, out, batch, ctx):
        on = not self.in_stage_one(ctx)
        l_clu = cluster_loss(out.xhat, batch.centers)
        terms = {"l_clu": (0.0, l_clu)}
        if self.use_boundary:
            terms["l_b"] = (self.lambda_b * on, boundary_penalty_lean(l_clu, ctx.W, ctx.delta, self.eps(ctx)))
        if self.use_norm:
            terms["l_n"] = (self.lambda_n * on, norm_penalty_lean(out.xhat, ctx.r_min, ctx.r_max))
        return terms


def setup():
    data = make_gmm(50_000, seed=0)
    X = SphericalShell().fit(data.X_train).transform(data.X_train)
    geometry = ClusterGeometry(8).fit(X)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    C = torch.as_tensor(geometry.centers_, dtype=torch.float32)[torch.as_tensor(geometry.labels_)]
    ctx = TrainContext(sigma2=2 * geometry.lambda_max_, n_epochs=10, W=geometry.W_, delta=geometry.delta_collapse_)
    return Xt, C, ctx


def check_identical(Xt, C, ctx, steps=200) -> bool:
    """Train shell and shell-lean side by side from the same start: the same parameters bit for bit?"""
    params = []
    for method in (get_method("shell"), ShellLean()):
        torch.manual_seed(0)
        model = mlp_vae(32)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        perm = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(0))
        for s in range(steps):
            idx = perm[s * 128:(s + 1) * 128]
            method.train_step(model, opt, Batch(Xt[idx], C[idx]), ctx)
        params.append([p.detach().clone() for p in model.parameters()])
    return all(torch.equal(a, b) for a, b in zip(*params))


def denormals(Xt, C, ctx, blocks: int = 80, steps: int = 25) -> None:
    state = {}
    for name in ("vanilla", "shell"):
        for flush in (False, True):
            torch.manual_seed(0)
            model = mlp_vae(32)
            state[(name, flush)] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), get_method(name))
    times = {key: [] for key in state}
    perm = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(1))
    for block in range(blocks):
        start = (block * steps * 128) % (len(Xt) - steps * 128)
        for (name, flush), (model, opt, method) in state.items():
            torch.set_flush_denormal(flush)
            t0 = time.process_time()
            for s in range(steps):
                idx = perm[start + s * 128:start + (s + 1) * 128]
                method.train_step(model, opt, Batch(Xt[idx], C[idx]), ctx)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=60, help="interleaved blocks of 25 steps per variant")
    ap.add_argument("--denormals", action="store_true", help="measure flushing subnormals instead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    Xt, C, ctx = setup()
    if args.denormals:
        denormals(Xt, C, ctx)
        return
    torch.set_flush_denormal(True)  # as train() does
    print(f"lean terms give bit-identical parameters after 200 steps: {check_identical(Xt, C, ctx)}")
    variants = {"vanilla": get_method("vanilla"), "shell": get_method("shell"), "shell (lean terms)": ShellLean(),
                "shell_none": get_method("shell_none"), "shell_boundary": get_method("shell_boundary"),
                "shell_norm": get_method("shell_norm")}
    state = {}
    for name, method in variants.items():
        torch.manual_seed(0)
        model = mlp_vae(32)
        state[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), method)  # plain Adam, as the loop did
    times = {name: [] for name in variants}
    perm = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(1))
    steps = 25
    for block in range(args.blocks):
        start = (block * steps * 128) % (len(Xt) - steps * 128)
        for name, (model, opt, method) in state.items():
            t0 = time.process_time()
            for s in range(steps):
                idx = perm[start + s * 128:start + (s + 1) * 128]
                method.train_step(model, opt, Batch(Xt.index_select(0, idx), C.index_select(0, idx)), ctx)
            times[name].append((time.process_time() - t0) / steps)
    p20 = {name: float(np.percentile(t, 20)) for name, t in times.items()}
    print(f"per-step CPU time, {args.blocks} interleaved blocks of {steps} steps (1 torch thread):")
    for name, t in times.items():
        print(f"  {name:20s} min {1e6 * min(t):6.0f} us  p20 {1e6 * p20[name]:6.0f} us  median "
              f"{1e6 * statistics.median(t):6.0f} us   / vanilla: min {min(t) / min(times['vanilla']):.3f}, "
              f"p20 {p20[name] / p20['vanilla']:.3f}")
    extra = p20["shell"] - p20["vanilla"]
    saved = p20["shell"] - p20["shell (lean terms)"]
    print(f"shell's extra per step (p20): {1e6 * extra:.0f} us; lean terms save {1e6 * saved:.0f} us of it "
          f"({100 * saved / max(extra, 1e-12):.0f}%)")


if __name__ == "__main__":
    main()
