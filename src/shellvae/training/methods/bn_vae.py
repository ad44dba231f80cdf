"""BN-VAE: batch normalisation with a fixed scale on the posterior mean (Zhu et al., ACL 2020).

The encoder's mean mu goes through BatchNorm1d whose scale is frozen at gamma (the shift stays
learnable). In training mode every latent dimension then has batch mean b_j and batch variance
gamma^2, so its batch second moment is gamma^2 + b_j^2, and since KL_j >= mu_j^2 / 2,

    mean over the batch of KL >= sum_j (gamma^2 + b_j^2) / 2 >= d * gamma^2 / 2.

The expected KL can never vanish: the prior cannot pull every code to 0. At inference the
running statistics are used, as for any batch norm.

**(choice)** BatchNorm divides by sqrt(var + bn_eps), so the batch variance is really
gamma^2 * var / (var + bn_eps): below bn_eps the bound gives way, and the KL term pushes var
down, weakly, but Adam normalises gradient size. With PyTorch's default bn_eps = 1e-5 (as in
Zhu et al.'s code) that happens in a violating condition: the mean's pre-norm batch variance
falls below bn_eps and the KL under its bound; with bn_eps = 1e-12 (the default here) the bound
holds (``tests/test_methods.py::test_bn_vae_bound_survives_training_in_a_violating_condition``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shellvae.training.methods.base import Method, hyperparameter
from shellvae.training.methods.registry import register_method
from shellvae.core.model import split_posterior
from shellvae.core.contract import TrainableModel


class MeanBatchNorm(nn.Module):
    """Wraps an encoder (B, D) -> (mu, logvar) (a pair, or one (B, 2d) tensor): batch-normalises mu with a
    fixed scale gamma; gives one (B, 2d) tensor."""

    def __init__(self, encoder: nn.Module, latent_dim: int, gamma: float, eps: float = 1e-12):
        super().__init__()
        self.encoder = encoder
        self.bn = nn.BatchNorm1d(latent_dim, eps=eps)
        nn.init.constant_(self.bn.weight, gamma)
        self.bn.weight.requires_grad_(False)  # no gradient, so Adam never moves it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = split_posterior(self.encoder(x))
        if self.training and len(mu) == 1:
            # one sample has no batch variance (the loop's last batch can be that small): use the
            # running statistics for it, without updating them
            bn = self.bn
            mu = F.batch_norm(mu, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            mu = self.bn(mu)
        return torch.cat([mu, logvar], dim=-1)


@register_method
@dataclass(repr=False)
class BNVAE(Method):
    name = "bn_vae"
    summary = "BN-VAE: batch norm with fixed scale gamma on the posterior mean, so KL >= d * gamma^2 / 2"
    reference = "Zhu et al., ACL 2020"

    # bn_vae's batch statistics are each rank's shard (SyncBatchNorm, which would make them global, runs on GPUs only)
    ddp = "approximate"

    gamma: float = hyperparameter(0.5, low=0.0, low_open=True, doc="the fixed scale of the mean's batch norm")
    bn_eps: float = hyperparameter(1e-12, low=0.0, low_open=True,
                                   doc="batch norm's eps; PyTorch's 1e-5 lets the encoder slip under the bound")

    def prepare(self, model: TrainableModel) -> TrainableModel:
        # deterministic (no random init): prepare also runs on load, before the weights are restored
        model.encoder = MeanBatchNorm(model.encoder, model.latent_dim, self.gamma, self.bn_eps)
        return model

    def kl_lower_bound(self, latent_dim: int) -> float:
        """The analytic floor of the batch-mean KL in training mode, d * gamma^2 / 2 nats."""
        return latent_dim * self.gamma ** 2 / 2
