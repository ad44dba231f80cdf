"""Gaussian VAE: encode -> reparameterize -> decode (names as in pytorch/examples vae/main.py).

The decoder variance sigma^2 is *not* a parameter of the model: it is fixed, part of the
objective (the collapse condition of METHOD.md §5 is about it), and lives in ``TrainContext``.
Encoder and decoder are any modules mapping (B, D) -> (B, 2d) and (B, d) -> (B, D); the
MLP of the paper is built by ``mlp_vae``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from shellvae.errors import ShellVAEError


class VAEOutput(NamedTuple):
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    xhat: torch.Tensor


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last). ``mlp([a, b])`` is linear."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class GaussianVAE(nn.Module):
    """q(z|x) = N(mu(x), diag(exp(logvar(x)))), p(z) = N(0, I), p(x|z) = N(decode(z), sigma^2 I)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int):
        super().__init__()
        self.encoder, self.decoder, self.latent_dim = encoder, decoder, latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return VAEOutput(mu, logvar, z, self.decode(z))


def mlp_vae(
    input_dim: int,
    latent_dim: int = 8,
    encoder_hidden: Sequence[int] = (256, 128),
    decoder_hidden: Sequence[int] = (128, 256),
) -> GaussianVAE:
    """The paper's MLP VAE. Empty hidden lists give the linear VAE of METHOD.md §5."""
    if latent_dim < 1:
        raise ShellVAEError(f"latent_dim={latent_dim}: need at least 1 latent dimension.")
    encoder = mlp([input_dim, *encoder_hidden, 2 * latent_dim])
    decoder = mlp([latent_dim, *decoder_hidden, input_dim])
    return GaussianVAE(encoder, decoder, latent_dim)
