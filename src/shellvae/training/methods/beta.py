"""beta-VAE: the ELBO with a constant, re-weighted KL term (Higgins et al., ICLR 2017).

As a collapse baseline the interesting side is kl_beta < 1: a weaker KL pull lowers the
effective decoder variance kl_beta * beta * sigma^2 below lambda_max (docs/method.md §5).

How it combines with the estimator's ``beta``: the KL weight is ``beta * kl_beta``. The
estimator's beta is the experimental condition every method shares (the violating condition
is beta * sigma^2 > lambda_max); kl_beta is this baseline's own rescaling on top of it, the
same way the other methods scale or schedule beta. With beta = 1 this is the usual beta-VAE
with beta = kl_beta.
"""

from dataclasses import dataclass

from shellvae.training.methods.base import Epoch, Method, hyperparameter
from shellvae.training.methods.registry import register_method


@register_method
@dataclass(repr=False)
class BetaVAE(Method):
    name = "beta"
    summary = "beta-VAE: constant KL weight beta * kl_beta (kl_beta < 1 weakens the pull to the prior)"
    reference = "Higgins et al., ICLR 2017"

    kl_beta: float = hyperparameter(0.5, low=0.0, doc="the KL weight's factor on top of beta")

    def kl_weight(self, beta: float, epoch: Epoch) -> float:
        return beta * self.kl_beta
