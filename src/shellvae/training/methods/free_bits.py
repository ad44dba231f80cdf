"""Free bits: each latent dimension's KL is floored at lambda nats (Kingma et al., NeurIPS 2016).

The KL term of the loss is sum_j max(lambda, KL_j), KL_j the batch mean of dimension j's KL.
A dimension below its floor gets no gradient from the KL term, so the prior stops pulling it
until it carries more than lambda nats: using a few nats per dimension is free. The plain KL
is still logged as ``kl``; the floored term as ``kl_term``.
"""

from dataclasses import dataclass

import torch

from shellvae.base.distributed import global_batch_mean
from shellvae.training.methods.base import Method, hyperparameter
from shellvae.training.methods.registry import register_method
from shellvae.core.contract import VAEOutput
from shellvae.core.objectives import kl_per_dim


@register_method
@dataclass(repr=False)
class FreeBits(Method):
    name = "free_bits"
    summary = "free bits: the KL of each latent dimension is floored at `free_bits` nats (batch mean)"
    reference = "Kingma et al., NeurIPS 2016 (IAF)"

    free_bits: float = hyperparameter(0.5, low=0.0, doc="lambda: the KL floor of each latent dimension, in nats")

    def kl_dims(self, out: VAEOutput) -> torch.Tensor:
        """The KL term of each latent dimension as the loss uses it, (d,): max(lambda, KL_j)."""
        kl_j = global_batch_mean(kl_per_dim(out.mu, out.logvar).mean(dim=0), len(out.mu))  # global batch under DDP
        return kl_j.clamp(min=self.free_bits)

    def kl_term(self, out: VAEOutput, kl: torch.Tensor) -> torch.Tensor:
        return self.kl_dims(out).sum()
