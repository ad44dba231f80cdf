"""The vanilla Gaussian VAE (Kingma & Welling 2014): the negative ELBO with KL weight beta."""

from dataclasses import dataclass

from shellvae.training.methods.base import Method
from shellvae.training.methods.registry import register_method


@register_method
@dataclass(repr=False)
class Vanilla(Method):
    """The negative ELBO with KL weight beta, nothing added: ``Method``'s loss as it is."""

    name = "vanilla"
    summary = "Gaussian VAE, negative ELBO with KL weight beta"
    reference = "Kingma & Welling 2014"
