"""KL annealing: the KL weight warms up linearly from 0 to beta (Bowman et al., CoNLL 2016).

Early on the model is (nearly) an autoencoder, so the decoder learns to use z before the KL
term pulls the posterior to the prior. The schedule is per epoch (the loop's unit of time):
epoch e (0-based) uses beta * min(1, e / warmup_epochs), so epoch 0 has weight 0 and the
weight reaches beta at epoch ``warmup_epochs`` and stays there.
"""

from dataclasses import dataclass

from shellvae.training.methods.base import Epoch, Method, hyperparameter
from shellvae.training.methods.registry import register_method
from shellvae.core.objectives import linear_ramp


def warmup_scale(epoch: int, warmup_epochs: int) -> float:
    """The KL weight as a share of beta at a 0-based epoch: 0 -> 1 linearly, then 1."""
    return linear_ramp(epoch / warmup_epochs, 0.0, 1.0) if warmup_epochs > 0 else 1.0


@register_method
@dataclass(repr=False)
class KLAnneal(Method):
    name = "kl_anneal"
    summary = "KL annealing: the KL weight warms up linearly from 0 to beta over warmup_epochs"
    reference = "Bowman et al., CoNLL 2016"

    warmup_epochs: int = hyperparameter(10, low=0, doc="epochs for the KL weight to reach beta")

    def kl_weight(self, beta: float, epoch: Epoch) -> float:
        return beta * warmup_scale(epoch.index, self.warmup_epochs)
