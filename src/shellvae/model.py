"""Gaussian VAE: encode -> reparameterize -> decode (names as in pytorch/examples vae/main.py).

The decoder variance sigma^2 is *not* a parameter of the model: it is fixed, part of the
objective (the collapse condition of docs/method.md §5 is about it), and lives in ``TrainContext``.
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


def sample_posterior(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * epsilon, epsilon ~ N(0, I): a draw from q(z|x) (the reparameterisation trick).
    ``generator``: a seeded stream for the draw (default: torch's global one)."""
    return mu + torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype) * torch.exp(0.5 * logvar)


class GaussianVAE(nn.Module):
    """q(z|x) = N(mu(x), diag(exp(logvar(x)))), p(z) = N(0, I), p(x|z) = N(decode(z), sigma^2 I)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int):
        super().__init__()
        self.encoder, self.decoder, self.latent_dim = encoder, decoder, latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return sample_posterior(mu, logvar)

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
    """The paper's MLP VAE. Empty hidden lists give the linear VAE of docs/method.md §5."""
    if latent_dim < 1:
        raise ShellVAEError(f"latent_dim={latent_dim}: need at least 1 latent dimension.")
    encoder = mlp([input_dim, *encoder_hidden, 2 * latent_dim])
    decoder = mlp([latent_dim, *decoder_hidden, input_dim])
    return GaussianVAE(encoder, decoder, latent_dim)


class _Unflatten(nn.Module):
    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), *self.shape)


def conv_vae(
    image_shape: Sequence[int],
    latent_dim: int = 8,
    channels: Sequence[int] = (32, 64),
) -> GaussianVAE:
    """The paper's CIFAR-10 nets: two stride-2 Conv+ReLU layers, and transposed convolutions back.

    Works on flat rows (B, C*H*W) like the MLP, so the shell transform and every loss term are
    unchanged; H and W must be divisible by 4 (28 and 32 are).
    """
    if latent_dim < 1:
        raise ShellVAEError(f"latent_dim={latent_dim}: need at least 1 latent dimension.")
    if len(image_shape) != 3:
        raise ShellVAEError(f"image_shape={tuple(image_shape)}: give (channels, height, width).")
    c, h, w = image_shape
    if h % 4 or w % 4:
        raise ShellVAEError(f"image_shape={tuple(image_shape)}: the conv nets need height and width divisible by 4.")
    c1, c2 = channels
    hidden = (c2, h // 4, w // 4)
    n_hidden = c2 * (h // 4) * (w // 4)
    encoder = nn.Sequential(
        _Unflatten(image_shape),
        nn.Conv2d(c, c1, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(n_hidden, 2 * latent_dim),
    )
    decoder = nn.Sequential(
        nn.Linear(latent_dim, n_hidden), nn.ReLU(), _Unflatten(hidden),
        nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(c1, c, 4, stride=2, padding=1),
        nn.Flatten(),
    )
    return GaussianVAE(encoder, decoder, latent_dim)


ARCHITECTURES = ("mlp", "conv")


def build_vae(arch: str, input_dim: int, latent_dim: int = 8, *, encoder_hidden=(256, 128),
              decoder_hidden=(128, 256), image_shape=None) -> GaussianVAE:
    """The model for an architecture name: "mlp" for any flat data, "conv" for images."""
    if arch == "mlp":
        return mlp_vae(input_dim, latent_dim, encoder_hidden, decoder_hidden)
    if arch == "conv":
        if image_shape is None:
            raise ShellVAEError("arch='conv' needs image_shape=(channels, height, width) (image datasets set it).")
        if int(torch.tensor(image_shape).prod()) != input_dim:
            raise ShellVAEError(f"image_shape={tuple(image_shape)} does not match {input_dim} features.")
        return conv_vae(image_shape, latent_dim)
    raise ShellVAEError(f"arch={arch!r}: choose one of {', '.join(ARCHITECTURES)}.")
