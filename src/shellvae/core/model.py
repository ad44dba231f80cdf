"""Gaussian VAE: encode -> reparameterize -> decode (names as in pytorch/examples vae/main.py).

The decoder variance sigma^2 is *not* a parameter of the model: it is fixed, part of the
objective (the collapse condition of docs/method.md §5 is about it), and lives in ``Objective``.

The encoder/decoder contract (docs/custom_models.md), for shellvae's own nets and for yours:

- the encoder maps a float32 batch of shell-space rows (B, D) to the posterior's ``(mu, logvar)``,
  either as a tuple of two (B, d) tensors or as one (B, 2d) tensor (mu first, then logvar);
- the decoder maps (B, d) latents to reconstructions of the input's shape, (B, D).

``check_contract`` checks it on a few rows before training, naming the module and the expected
and actual shapes. Architectures are registered by name (``ARCHITECTURES``): the paper's MLP
("mlp"), its conv nets ("conv"), and any factory a user adds with ``register_architecture``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from shellvae.core.contract import VAEOutput
from shellvae.errors import ShellVAEError
from shellvae.base.registry import Registry


#: the default latent dimension (docs/method.md §7, a choice: the paper's active-unit counts reach 7.8)
LATENT_DIM = 8
#: the paper's MLP widths (docs/method.md §7)
ENCODER_HIDDEN, DECODER_HIDDEN = (256, 128), (128, 256)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last). ``mlp([a, b])`` is linear."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def split_posterior(out) -> tuple[torch.Tensor, torch.Tensor]:
    """An encoder's output as (mu, logvar): a pair as it is, one (B, 2d) tensor cut in two halves."""
    if isinstance(out, (tuple, list)):
        mu, logvar = out
        return mu, logvar
    mu, logvar = out.chunk(2, dim=-1)
    return mu, logvar


def sample_posterior(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * epsilon, epsilon ~ N(0, I): a draw from q(z|x) (the reparameterisation trick).
    ``generator``: a seeded stream for the draw (default: torch's global one)."""
    # randn_like when no generator is given: torch.compile traces it with dynamic batch shapes
    noise = torch.randn_like(mu) if generator is None else torch.randn(mu.shape, generator=generator,
                                                                       device=mu.device, dtype=mu.dtype)
    return mu + noise * torch.exp(0.5 * logvar)


class GaussianVAE(nn.Module):
    """q(z|x) = N(mu(x), diag(exp(logvar(x)))), p(z) = N(0, I), p(x|z) = N(decode(z), sigma^2 I)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int):
        super().__init__()
        self.encoder, self.decoder, self.latent_dim = encoder, decoder, latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split_posterior(self.encoder(x))

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
    latent_dim: int = LATENT_DIM,
    encoder_hidden: Sequence[int] = ENCODER_HIDDEN,
    decoder_hidden: Sequence[int] = DECODER_HIDDEN,
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
    latent_dim: int = LATENT_DIM,
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


# -- architectures by name ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Architecture:
    """A named network factory: ``factory(input_dim, latent_dim, **settings) -> (encoder, decoder)``."""

    name: str
    factory: Callable[..., tuple[nn.Module, nn.Module]]
    summary: str = ""

    def build(self, input_dim: int, latent_dim: int, **settings) -> tuple[nn.Module, nn.Module]:
        """Call the factory with the settings it names (all of them if it takes ``**kwargs``)."""
        params = inspect.signature(self.factory).parameters.values()
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            names = {p.name for p in params}
            settings = {k: v for k, v in settings.items() if k in names}
        built = self.factory(input_dim, latent_dim, **settings)
        if isinstance(built, GaussianVAE):
            return built.encoder, built.decoder
        if not (isinstance(built, (tuple, list)) and len(built) == 2
                and all(isinstance(m, nn.Module) for m in built)):
            raise ShellVAEError(f"architecture {self.name!r}: its factory returned {type(built).__name__}; it must "
                                "return (encoder, decoder), two torch.nn.Modules.")
        return tuple(built)


#: every architecture ``ShellVAE(arch=NAME)`` (and ``ShellVAE.load``) can build, by name
ARCHITECTURES: Registry[Architecture] = Registry("architecture")


def register_architecture(name: str, factory: Callable | None = None, *, summary: str = ""):
    """Register ``factory(input_dim, latent_dim, **settings) -> (encoder, decoder)`` as ``arch=name``.

    The factory is called with the data's width and ``latent_dim``, and with those of the
    estimator's settings ``encoder_hidden``, ``decoder_hidden`` and ``image_shape`` that it names as
    parameters. A model trained with ``arch=name`` is saved by name and rebuilt by the factory on
    ``ShellVAE.load`` (the file holds weights only, never code), so register it before loading.
    Usable as a decorator: ``@register_architecture("resmlp")``.
    """
    def add(fn):
        ARCHITECTURES.add(name, Architecture(name, fn, summary or (fn.__doc__ or "").strip().split("\n")[0]))
        return fn
    return add if factory is None else add(factory)


@register_architecture("mlp", summary="the paper's MLP (encoder_hidden, decoder_hidden widths; any flat data)")
def _mlp(input_dim, latent_dim, encoder_hidden=ENCODER_HIDDEN, decoder_hidden=DECODER_HIDDEN):
    vae = mlp_vae(input_dim, latent_dim, encoder_hidden, decoder_hidden)
    return vae.encoder, vae.decoder


@register_architecture("conv", summary="the paper's conv nets (images; needs image_shape)")
def _conv(input_dim, latent_dim, image_shape=None):
    if image_shape is None:
        raise ShellVAEError("arch='conv' needs image_shape=(channels, height, width) (image datasets set it).")
    if int(torch.tensor(image_shape).prod()) != input_dim:
        raise ShellVAEError(f"image_shape={tuple(image_shape)} does not match {input_dim} features.")
    vae = conv_vae(image_shape, latent_dim)
    return vae.encoder, vae.decoder


def build_vae(arch: str, input_dim: int, latent_dim: int = LATENT_DIM, *, encoder_hidden=ENCODER_HIDDEN,
              decoder_hidden=DECODER_HIDDEN, image_shape=None) -> GaussianVAE:
    """The model of a registered architecture: "mlp" for any flat data, "conv" for images, or yours."""
    if latent_dim < 1:
        raise ShellVAEError(f"latent_dim={latent_dim}: need at least 1 latent dimension.")
    if arch not in ARCHITECTURES:
        raise ShellVAEError(f"arch={arch!r}: choose one of {', '.join(ARCHITECTURES)} (or register yours with "
                            "shellvae.register_architecture).")
    encoder, decoder = ARCHITECTURES[arch].build(input_dim, latent_dim, encoder_hidden=encoder_hidden,
                                                 decoder_hidden=decoder_hidden, image_shape=image_shape)
    return GaussianVAE(encoder, decoder, latent_dim)


# -- the contract, checked before training ------------------------------------------------------------
def _shape(out) -> str:
    if isinstance(out, torch.Tensor):
        return str(tuple(out.shape))
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}: ({', '.join(_shape(o) for o in out)})"
    return f"a {type(out).__name__}"


@torch.no_grad()
def check_contract(model: GaussianVAE, x: torch.Tensor) -> None:
    """Run the encoder and decoder once on the rows ``x`` (B, D) and check the contract; a
    ``ShellVAEError`` names the module, the expected shape and the one it gave. Runs in eval mode
    (no batch-norm statistics are updated, no dropout) and restores the mode."""
    b, d, latent = len(x), x.shape[1], model.latent_dim
    was_training = model.training
    model.eval()
    try:
        encoder, decoder = type(model.encoder).__name__, type(model.decoder).__name__
        out = _run(model.encoder, x, f"the encoder ({encoder})", f"a float32 batch of shape {tuple(x.shape)}")
        pair = isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(o, torch.Tensor) for o in out)
        ok = (pair and all(tuple(o.shape) == (b, latent) for o in out)) or (
            isinstance(out, torch.Tensor) and tuple(out.shape) == (b, 2 * latent))
        if not ok:
            raise ShellVAEError(
                f"the encoder ({encoder}) returned {_shape(out)} for a batch of shape {tuple(x.shape)}; expected "
                f"(mu, logvar) with latent_dim={latent}: a tuple of two ({b}, {latent}) tensors, or one ({b}, "
                f"{2 * latent}) tensor (mu, then logvar). Make its last layer output 2 * latent_dim values, or set "
                "latent_dim to what it gives."
            )
        mu, _ = split_posterior(out)
        xhat = _run(model.decoder, mu, f"the decoder ({decoder})", f"latents of shape {tuple(mu.shape)}")
        if not isinstance(xhat, torch.Tensor) or tuple(xhat.shape) != (b, d):
            hint = " End it with nn.Flatten() (rows of images are flat)." if (
                isinstance(xhat, torch.Tensor) and xhat.ndim > 2 and xhat[0].numel() == d) else ""
            raise ShellVAEError(
                f"the decoder ({decoder}) returned {_shape(xhat)} for latents of shape {tuple(mu.shape)}; expected "
                f"reconstructions of the input's shape, ({b}, {d}).{hint}"
            )
        if xhat.dtype != x.dtype:
            raise ShellVAEError(f"the decoder ({decoder}) returned {xhat.dtype} values; expected {x.dtype}, the "
                                "dtype of the rows it reconstructs.")
    finally:
        model.train(was_training)


def _run(module, x, who: str, what: str):
    try:
        return module(x)
    except Exception as exc:  # the user's module: any error, reported with what it was given
        raise ShellVAEError(f"{who} failed on {what}: {type(exc).__name__}: {str(exc).strip()[:300]}") from exc
