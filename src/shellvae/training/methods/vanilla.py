"""The vanilla Gaussian VAE (Kingma & Welling 2014): the negative ELBO with KL weight beta."""

from dataclasses import dataclass

from shellvae.training.methods.base import Method
from shellvae.training.methods.registry import register


@register
@dataclass(repr=False)
class Vanilla(Method):
    name = "vanilla"
