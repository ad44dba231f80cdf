"""The model contract: what every trainable model gives the training loop, the methods and the
metrics, whichever family it belongs to (``GaussianVAE`` for vectors, ``SequenceVAEModel`` and the
z-free ``LanguageModel`` for token sequences, or a user's own module).

A model's forward pass returns a ``VAEOutput``: the posterior's ``mu`` and ``logvar``, the drawn
``z`` and the reconstruction ``xhat`` (for vectors the decoded rows, for sequences the T steps'
logits). An output that is neither goes in a named field of its own, never packed into ``xhat``:
a sequence model trained with a feasible region adds ``log_bag``, the log of its decoder's
bag of tokens from z alone, which ``SequenceRegion`` bounds.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn


class VAEOutput(NamedTuple):
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    xhat: torch.Tensor
    #: log of the decoder's z-only bag of tokens (B, V) (a sequence model with a region: ``bag_output``);
    #: None otherwise. The log, clamped at 1e-12, is what the released version computed and kept
    log_bag: torch.Tensor | None = None


@runtime_checkable
class TrainableModel(Protocol):
    """What ``training.loop.train``, every ``Method`` and the metrics ask of a model (besides being a
    ``torch.nn.Module``): an ``encoder`` and a ``decoder`` module (alternating methods step them
    apart, BN-VAE wraps the encoder), ``latent_dim``, ``encode(x) -> (mu, logvar)``,
    ``reparameterize(mu, logvar) -> z`` and a forward pass returning a ``VAEOutput``. ``decode`` is
    the family's own: ``decode(z)`` for vectors, ``decode(z, x)`` (teacher-forced) for sequences."""

    encoder: nn.Module
    decoder: nn.Module
    latent_dim: int

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, x: torch.Tensor) -> VAEOutput: ...


@runtime_checkable
class VectorModel(TrainableModel, Protocol):
    """A trainable model of vectors (``GaussianVAE``, a user's own): ``decode(z)`` gives the rows the
    Gaussian likelihood, the region and the vector metrics read."""

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...
