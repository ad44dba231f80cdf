"""The paper's method: shell data, cluster-aware boundary penalty and decoder norm penalty.

Spherical VAE with Cluster-Aware Feasible Regions (arXiv 2603.10935 v4), docs/method.md §3-4:

    L = nll + beta * s_t * KL + lambda_b * L_b + lambda_n * L_n

with s_t ramping 0.1 -> 1 over training, L_b the boundary penalty on the batch's L_clu against
F_eps = [W, delta - eps] (eps = eps_ratio * delta), L_n the decoder-norm penalty. With
``two_stage`` > 0 (default 0.2, the paper's protocol) the first share of epochs uses the smallest
KL weight and no penalties.

``ShellMethodBase`` holds what every shell variant shares (the KL schedule, stage one, L_clu and the
norm penalty); a variant only says how the feasible region enters the loss (``region_terms``):
a fixed-weight penalty here, a Lagrange multiplier in ``lagrange.py``, nothing in the ablations.
The terms themselves come from the run's ``FeasibleRegion`` (``core.region``), the same object a
user's own training loop would use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shellvae.base.distributed import global_batch_mean
from shellvae.training.methods.base import Batch, Epoch, Method, Objective, Schedule, hyperparameter
from shellvae.training.methods.registry import register_method
from shellvae.core.contract import VAEOutput
from shellvae.core.objectives import linear_ramp
from shellvae.errors import ShellVAEError


@dataclass(repr=False)
class ShellMethodBase(Method):
    """Shared by the shell methods (not registered itself)."""

    needs_centers = True
    #: the paper's protocol for its method: two-stage training, stage one = the first 20% of epochs
    paper_protocol = {"two_stage": 0.2}

    beta_start: float = hyperparameter(0.1, low=0.0, high=1.0, doc="s_t ramps beta_start -> 1 over training")
    two_stage: float = hyperparameter(0.2, low=0.0, high=1.0, high_open=True,
                                      doc="share of epochs in stage one (minimal KL weight, no penalties); the "
                                          "paper's protocol is 0.2; 0: off")
    lambda_n: float = hyperparameter(10.0, low=0.0, doc="weight of the decoder-norm penalty L_n")
    use_norm: bool = hyperparameter(True, doc="whether L_n enters the loss")

    def in_stage_one(self, epoch: Epoch) -> bool:
        return self.two_stage > 0 and epoch.index < round(self.two_stage * epoch.total)

    def kl_weight(self, beta: float, epoch: Epoch) -> float:
        if self.in_stage_one(epoch):
            return beta * self.beta_start
        return beta * linear_ramp(epoch.progress, self.beta_start, 1.0)

    def schedule(self, beta: float, epoch: Epoch) -> Schedule:
        return Schedule(kl_weight=self.kl_weight(beta, epoch), constraints_on=not self.in_stage_one(epoch))

    def region_terms(self, l_clu: torch.Tensor, objective: Objective,
                     on: bool) -> dict[str, tuple[float, torch.Tensor]]:
        """How the feasible region [W, delta - eps] enters the loss; ``on`` is False in stage one."""
        return {}

    def extra_terms(self, out: VAEOutput, batch: Batch, objective: Objective, schedule: Schedule):
        region, on = objective.region, schedule.constraints_on
        bounded = region.bounded_output(out)
        # the global batch's L_clu under DDP (L_b is nonlinear in it); this batch's otherwise
        l_clu = global_batch_mean(region.cluster_loss(bounded, batch.centers), len(batch.x))
        terms = {"l_clu": (0.0, l_clu), **self.region_terms(l_clu, objective, on)}
        if self.use_norm and region.bounds_norm:
            terms["l_n"] = (self.lambda_n * on, region.norm_penalty(bounded))
        return terms



@register_method
@dataclass(repr=False)
class Shell(ShellMethodBase):
    name = "shell"
    summary = "spherical shell + cluster-aware boundary penalty + decoder norm penalty (full method)"
    reference = "arXiv 2603.10935 v4"

    lambda_b: float = hyperparameter(10.0, low=0.0, doc="weight of the boundary penalty L_b")
    eps_ratio: float = hyperparameter(0.05, low=0.0, high=1.0, high_open=True,
                                      doc="training margin eps = eps_ratio * delta; 0 leaves collapse on the boundary")
    use_boundary: bool = hyperparameter(True, doc="whether L_b enters the loss")

    def check_region(self, region) -> None:
        """Refuse a region this method cannot use: one with no norm bound, when the norm penalty is this
        method's only penalty (``shell_norm`` would silently be ``shell_none``)."""
        if self.use_norm and not self.use_boundary and not region.bounds_norm:
            raise ShellVAEError(f"method {self.name!r} trains with the decoder-norm penalty alone, and a "
                                f"{type(region).__name__} bounds no norm: it would be shell_none. Use shell, "
                                "shell_boundary or shell_none.")

    def eps(self, region) -> float:
        """The training margin of the boundary penalty (not the certificate's margin)."""
        return self.eps_ratio * region.delta_

    def region_terms(self, l_clu, objective, on):
        if not self.use_boundary:
            return {}
        region = objective.region
        return {"l_b": (self.lambda_b * on, region.boundary_penalty(l_clu, self.eps(region)))}
