"""The paper's method: shell data, cluster-aware boundary penalty and decoder norm penalty.

Spherical VAE with Cluster-Aware Feasible Regions (arXiv 2603.10935 v4), METHOD.md §3-4:

    L = nll + beta * s_t * KL + lambda_b * L_b + lambda_n * L_n

with s_t ramping 0.1 -> 1 over training, L_b the boundary penalty on the batch's L_clu against
F_eps = [W, delta - eps] (eps = eps_ratio * delta), L_n the decoder-norm penalty. With
``two_stage`` > 0 the first share of epochs uses the smallest KL weight and no penalties.
"""

from __future__ import annotations

from dataclasses import dataclass

from shellvae.methods.base import Batch, Method, TrainContext
from shellvae.methods.registry import register
from shellvae.model import VAEOutput
from shellvae.objectives import boundary_penalty, cluster_loss, linear_ramp, norm_penalty


@register
@dataclass(repr=False)
class Shell(Method):
    name = "shell"
    summary = "spherical shell + cluster-aware boundary penalty + decoder norm penalty (full method)"
    reference = "arXiv 2603.10935 v4"
    needs_centers = True

    lambda_b: float = 10.0
    lambda_n: float = 10.0
    eps_ratio: float = 0.05  # eps = eps_ratio * delta; 0 leaves the collapsed point on the boundary
    beta_start: float = 0.1  # s_t ramps beta_start -> 1
    two_stage: float = 0.0  # share of epochs in stage 1 (0: off; the paper's protocol uses 0.2)
    use_boundary: bool = True
    use_norm: bool = True

    def in_stage_one(self, ctx: TrainContext) -> bool:
        return self.two_stage > 0 and ctx.epoch < round(self.two_stage * ctx.n_epochs)

    def kl_weight(self, ctx: TrainContext) -> float:
        if self.in_stage_one(ctx):
            return ctx.beta * self.beta_start
        return ctx.beta * linear_ramp(ctx.progress, self.beta_start, 1.0)

    def eps(self, ctx: TrainContext) -> float:
        return self.eps_ratio * ctx.delta

    def extra_terms(self, out: VAEOutput, batch: Batch, ctx: TrainContext):
        on = not self.in_stage_one(ctx)
        l_clu = cluster_loss(out.xhat, batch.centers)
        terms = {"l_clu": (0.0, l_clu)}
        if self.use_boundary:
            terms["l_b"] = (self.lambda_b * on, boundary_penalty(l_clu, ctx.W, ctx.delta, self.eps(ctx)))
        if self.use_norm:
            terms["l_n"] = (self.lambda_n * on, norm_penalty(out.xhat, ctx.r_min, ctx.r_max))
        return terms
