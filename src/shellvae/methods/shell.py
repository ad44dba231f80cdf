"""The paper's method: shell data, cluster-aware boundary penalty and decoder norm penalty.

Spherical VAE with Cluster-Aware Feasible Regions (arXiv 2603.10935 v4), METHOD.md §3-4:

    L = nll + beta * s_t * KL + lambda_b * L_b + lambda_n * L_n

with s_t ramping 0.1 -> 1 over training, L_b the boundary penalty on the batch's L_clu against
F_eps = [W, delta - eps] (eps = eps_ratio * delta), L_n the decoder-norm penalty. With
``two_stage`` > 0 the first share of epochs uses the smallest KL weight and no penalties.

``ShellBase`` holds what every shell variant shares (the KL schedule, stage one, L_clu and the
norm penalty); a variant only says how the feasible region enters the loss (``region_terms``):
a fixed-weight penalty here, a Lagrange multiplier in ``lagrange.py``, nothing in the ablations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shellvae.collectives import global_batch_mean
from shellvae.methods.base import Batch, Method, TrainContext
from shellvae.methods.registry import register
from shellvae.model import VAEOutput
from shellvae.objectives import boundary_penalty, cluster_loss, linear_ramp, norm_penalty


@dataclass(repr=False)
class ShellBase(Method):
    """Shared by the shell methods (not registered itself)."""

    needs_centers = True

    beta_start: float = 0.1  # s_t ramps beta_start -> 1
    two_stage: float = 0.0  # share of epochs in stage 1 (0: off; the paper's protocol uses 0.2)
    lambda_n: float = 10.0
    use_norm: bool = True

    def in_stage_one(self, ctx: TrainContext) -> bool:
        return self.two_stage > 0 and ctx.epoch < round(self.two_stage * ctx.n_epochs)

    def kl_weight(self, ctx: TrainContext) -> float:
        if self.in_stage_one(ctx):
            return ctx.beta * self.beta_start
        return ctx.beta * linear_ramp(ctx.progress, self.beta_start, 1.0)

    def region_terms(self, l_clu: torch.Tensor, ctx: TrainContext, on: bool) -> dict[str, tuple[float, torch.Tensor]]:
        """How the feasible region [W, delta - eps] enters the loss; ``on`` is False in stage one."""
        return {}

    def schedule(self, ctx: TrainContext) -> dict:
        return {**super().schedule(ctx), "stage_one": self.in_stage_one(ctx)}

    def extra_terms(self, out: VAEOutput, batch: Batch, ctx: TrainContext):
        on = not self.current(ctx)["stage_one"]
        # the global batch's L_clu under DDP (L_b is nonlinear in it); this batch's otherwise
        l_clu = global_batch_mean(cluster_loss(out.xhat, batch.centers), len(batch.x))
        terms = {"l_clu": (0.0, l_clu), **self.region_terms(l_clu, ctx, on)}
        if self.use_norm:
            terms["l_n"] = (self.lambda_n * on, norm_penalty(out.xhat, ctx.r_min, ctx.r_max))
        return terms


@register
@dataclass(repr=False)
class Shell(ShellBase):
    name = "shell"
    summary = "spherical shell + cluster-aware boundary penalty + decoder norm penalty (full method)"
    reference = "arXiv 2603.10935 v4"

    lambda_b: float = 10.0
    eps_ratio: float = 0.05  # eps = eps_ratio * delta; 0 leaves the collapsed point on the boundary
    use_boundary: bool = True

    def eps(self, ctx: TrainContext) -> float:
        return self.eps_ratio * ctx.delta

    def region_terms(self, l_clu, ctx, on):
        if not self.use_boundary:
            return {}
        return {"l_b": (self.lambda_b * on, boundary_penalty(l_clu, ctx.W, ctx.delta, self.eps(ctx)))}
