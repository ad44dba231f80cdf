"""Cyclical KL annealing (Fu et al., NAACL 2019).

Training is split into ``n_cycles`` equal cycles M; within each, the KL weight rises linearly
from 0 to beta over the first share ``ratio`` R of the cycle, then stays at beta. Each restart
lets the encoder re-learn informative codes under a small KL pull, then consolidates them.
Fu et al. use M = 4, R = 0.5 and schedule per iteration; here time is the epoch
(position = epoch / n_epochs), so use at least a few epochs per cycle.
"""

import math
from dataclasses import dataclass

from shellvae.training.methods.base import Epoch, Method, hyperparameter
from shellvae.training.methods.registry import register_method
from shellvae.core.objectives import linear_ramp


def cyclical_scale(position: float, n_cycles: int = 4, ratio: float = 0.5) -> float:
    """The KL weight as a share of beta at ``position`` in [0, 1) of training.

    tau = the position within the current cycle, in [0, 1); the scale is min(1, tau / ratio).
    """
    t = position * n_cycles
    tau = t - math.floor(t + 1e-9)  # the tolerance puts a cycle's float-rounded start at 0, not ~1
    return linear_ramp(tau / ratio, 0.0, 1.0) if ratio > 0 else 1.0


@register_method
@dataclass(repr=False)
class Cyclical(Method):
    name = "cyclical"
    summary = "cyclical KL annealing: n_cycles restarts, each ramping 0 -> beta over the first `ratio` of the cycle"
    reference = "Fu et al., NAACL 2019"

    n_cycles: int = hyperparameter(4, low=1, doc="annealing cycles over training")
    ratio: float = hyperparameter(0.5, low=0.0, high=1.0, doc="share of each cycle spent ramping up")

    def kl_weight(self, beta: float, epoch: Epoch) -> float:
        return beta * cyclical_scale(epoch.index / epoch.total, self.n_cycles, self.ratio)
