"""The feasible-region constraint enforced by a Lagrange multiplier (beyond the paper).

Spherical VAE with Cluster-Aware Feasible Regions (arXiv 2603.10935 v4) adds the region as a
fixed-weight penalty, which a strong KL pull can outweigh (docs/method.md §8). Here it is a
constraint, L_clu <= delta - eps, with the multiplier found by dual ascent as in GECO
(Rezende & Viola 2018, "Taming VAEs"):

    L = nll + beta_t KL + lam * (L_clu - (delta - eps)) [+ lambda_n L_n]
    c_t = moving average of the batch constraint L_clu - (delta - eps)
    lam <- max(0, lam + lr_lambda * c_t)           after every step

lam grows while the constraint is violated and decays to 0 once it holds with room to spare,
so the KL pays only what the constraint demands. The margin is eps = alpha * (delta - W)
(docs/method.md §4): alpha = 0.5 asks for reconstructions halfway from collapse (L_clu = delta) to
the data's own cluster spread (L_clu = W). ``eps`` is also the certificate margin.
L_clu is measured on reconstructions of sampled z, as the loss sees them; decoding the
posterior mean (as ``evaluate`` does) gives a lower value, so the held-out check is easier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shellvae.training.methods.base import hyperparameter
from shellvae.training.methods.registry import register_method
from shellvae.training.methods.shell import ShellMethodBase
from shellvae.core.region import DualAscent


@register_method
@dataclass(repr=False)
class ShellLagrange(ShellMethodBase):
    name = "shell_lagrange"
    summary = "shell + constraint L_clu <= delta - eps held by a dual-ascent Lagrange multiplier, not a fixed penalty"
    reference = "beyond arXiv 2603.10935 v4 (docs/method.md §4, §8); dual ascent as in GECO (Rezende & Viola 2018)"

    alpha: float = hyperparameter(0.5, low=0.0, high=1.0, high_open=True, doc="training margin eps = alpha (delta - W)")
    lr_lambda: float = hyperparameter(1.0, low=0.0, low_open=True, doc="dual ascent step size")
    constraint_ema: float = hyperparameter(0.9, low=0.0, high=1.0, high_open=True,
                                           doc="decay of the constraint's moving average (smooths batch noise)")

    def __post_init__(self):
        super().__post_init__()
        self.dual = DualAscent(self.lr_lambda, self.constraint_ema)

    @property
    def multiplier(self) -> float:
        return self.dual.multiplier

    @property
    def constraint_avg(self) -> float | None:
        return self.dual.average

    def eps(self, region) -> float:
        """The training margin (an empty region gets none: its certificate fails on emptiness anyway)."""
        return region.eps_from_alpha(self.alpha)

    def region_terms(self, l_clu, objective, on):
        region = objective.region
        constraint = region.constraint(l_clu, self.eps(region))
        lam = torch.tensor(self.multiplier, device=l_clu.device)
        return {"constraint": (self.multiplier * on, constraint), "lagrange_multiplier": (0.0, lam)}

    def update_multiplier(self, constraint: float) -> float:
        """One dual-ascent step from a batch's constraint value; returns the new multiplier."""
        return self.dual.update(constraint)

    def train_step(self, model, optimizer, batch, plan):
        logs = super().train_step(model, optimizer, batch, plan)
        if plan.schedule.constraints_on:  # the constraint is off in stage one: so is its multiplier
            self.update_multiplier(float(logs["constraint"]))
        return logs

    def state_dict(self) -> dict:
        return {"multiplier": self.dual.multiplier, "constraint_avg": self.dual.average}

    def load_state_dict(self, state: dict) -> None:
        self.dual.multiplier = float(state["multiplier"])
        avg = state["constraint_avg"]
        self.dual.average = None if avg is None else float(avg)
