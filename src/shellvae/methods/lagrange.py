"""The feasible-region constraint enforced by a Lagrange multiplier (beyond the paper).

Spherical VAE with Cluster-Aware Feasible Regions (arXiv 2603.10935 v4) adds the region as a
fixed-weight penalty, which a strong KL pull can outweigh (METHOD.md §8). Here it is a
constraint, L_clu <= delta - eps, with the multiplier found by dual ascent as in GECO
(Rezende & Viola 2018, "Taming VAEs"):

    L = nll + beta_t KL + lam * (L_clu - (delta - eps)) [+ lambda_n L_n]
    c_t = moving average of the batch constraint L_clu - (delta - eps)
    lam <- max(0, lam + lr_lambda * c_t)           after every step

lam grows while the constraint is violated and decays to 0 once it holds with room to spare,
so the KL pays only what the constraint demands. The margin is eps = alpha * (delta - W)
(METHOD.md §4): alpha = 0.5 asks for reconstructions halfway from collapse (L_clu = delta) to
the data's own cluster spread (L_clu = W). ``eps`` is also the certificate margin.
L_clu is measured on reconstructions of sampled z, as the loss sees them; decoding the
posterior mean (as ``evaluate`` does) gives a lower value, so the held-out check is easier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shellvae.methods.base import TrainContext
from shellvae.methods.registry import register
from shellvae.methods.shell import ShellBase


@register
@dataclass(repr=False)
class ShellLagrange(ShellBase):
    name = "shell_lagrange"
    summary = "shell + constraint L_clu <= delta - eps held by a dual-ascent Lagrange multiplier, not a fixed penalty"
    reference = "beyond arXiv 2603.10935 v4 (METHOD.md §4, §8); dual ascent as in GECO (Rezende & Viola 2018)"

    alpha: float = 0.5  # eps = alpha * (delta - W)
    lr_lambda: float = 1.0  # dual ascent step size
    constraint_ema: float = 0.9  # decay of the constraint's moving average (smooths batch noise)

    def __post_init__(self):
        self.multiplier = 0.0
        self.constraint_avg: float | None = None

    def eps(self, ctx: TrainContext) -> float:
        # an empty region (W >= delta) gets no margin: the certificate then fails on emptiness anyway
        return max(0.0, self.alpha * (ctx.delta - ctx.W))

    def region_terms(self, l_clu, ctx, on):
        constraint = l_clu - (ctx.delta - self.eps(ctx))
        lam = torch.tensor(self.multiplier, device=l_clu.device)
        return {"constraint": (self.multiplier * on, constraint), "lagrange_multiplier": (0.0, lam)}

    def update_multiplier(self, constraint: float) -> float:
        """One dual-ascent step from a batch's constraint value; returns the new multiplier."""
        if self.constraint_avg is None:
            self.constraint_avg = constraint
        else:
            self.constraint_avg = self.constraint_ema * self.constraint_avg + (1 - self.constraint_ema) * constraint
        self.multiplier = max(0.0, self.multiplier + self.lr_lambda * self.constraint_avg)
        return self.multiplier

    def train_step(self, model, optimizer, batch, ctx):
        logs = super().train_step(model, optimizer, batch, ctx)
        if not self.in_stage_one(ctx):  # the constraint is off in stage one: so is its multiplier
            self.update_multiplier(float(logs["constraint"]))
        return logs

    def state_dict(self) -> dict:
        return {"multiplier": self.multiplier, "constraint_avg": self.constraint_avg}

    def load_state_dict(self, state: dict) -> None:
        self.multiplier = float(state["multiplier"])
        avg = state["constraint_avg"]
        self.constraint_avg = None if avg is None else float(avg)
