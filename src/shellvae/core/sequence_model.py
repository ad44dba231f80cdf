"""Sequence VAEs: an LSTM encoder, an autoregressive decoder (LSTM, or a small causal Transformer)
fed z at every step, and the z-free language model of the same architecture (the collapse floor).

    q(z|x) = N(mu(x), diag exp(logvar(x))),  p(z) = N(0, I),
    p(x|z) = prod_t Cat(x_t; softmax(decoder(z, x_<t)))

The models meet the declared model contract (``core.contract.TrainableModel``), so every method
and the one training loop work with them unchanged: ``encode(x) -> (mu, logvar)``, ``reparameterize``,
``decode(z, x) -> logits``, ``forward(x) -> VAEOutput(mu, logvar, z, logits, log_bag)``, and
``.encoder`` (a module x (B, T) -> (B, 2d), so BN-VAE's wrapper applies as it is), ``.decoder``
(aggressive and em step them separately), ``.latent_dim``.

Teacher forcing: the decoder's input at step t is x_{t-1} (``<bos>`` at t = 0), so the logits of
step t see only tokens before t. Word dropout (Bowman et al. 2016): in training, each input token
after ``<bos>`` is replaced by ``<unk>`` with probability ``word_dropout``; never in evaluation.
``<pad>`` positions are not scored (``token_nll``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shellvae.errors import ShellVAEError
from shellvae.core.contract import VAEOutput
from shellvae.data.sequences import BOS, PAD, UNK

DECODERS = ("lstm", "transformer")


def decoder_inputs(x: torch.Tensor, word_dropout: float = 0.0, training: bool = False) -> torch.Tensor:
    """Teacher forcing: [<bos>, x_0, ..., x_{T-2}]; in training, word dropout replaces each input after
    <bos> that is not <pad> by <unk> with probability ``word_dropout``."""
    inputs = torch.cat([torch.full_like(x[:, :1], BOS), x[:, :-1]], dim=1)
    if training and word_dropout > 0:
        drop = torch.rand(inputs.shape, device=x.device) < word_dropout
        drop[:, 0] = False
        inputs = inputs.masked_fill(drop & (inputs != PAD), UNK)
    return inputs


def z_only_inputs(x: torch.Tensor) -> torch.Tensor:
    """[<bos>, <unk>, ..., <unk>]: inputs that carry no token, so the decoder's predictions depend on z alone
    (word dropout with probability 1)."""
    inputs = torch.full_like(x, UNK)
    inputs[:, 0] = BOS
    return inputs


class SequenceEncoder(nn.Module):
    """Embedding -> LSTM -> the state at each sequence's last token -> (B, 2d) = (mu, logvar)."""

    def __init__(self, vocab_size: int, latent_dim: int, embed_dim: int = 64, hidden_dim: int = 128):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.head = nn.Linear(hidden_dim, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embed(x))
        last = ((x != PAD).sum(dim=1) - 1).clamp(min=0)  # padding is trailing: later pads do not reach this state
        return self.head(h[torch.arange(len(x), device=x.device), last])


class LSTMDecoder(nn.Module):
    """Autoregressive LSTM; z is concatenated to the input embedding at every step."""

    def __init__(self, vocab_size: int, latent_dim: int, embed_dim: int = 64, hidden_dim: int = 128,
                 word_dropout: float = 0.0):
        super().__init__()
        self.latent_dim, self.word_dropout = latent_dim, word_dropout
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim + latent_dim, hidden_dim, batch_first=True)
        self.head = nn.Linear(hidden_dim, vocab_size)

    def run(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for the given input tokens (already shifted)."""
        e = self.embed(inputs)
        h, _ = self.lstm(torch.cat([e, z[:, None, :].expand(-1, e.shape[1], -1)], dim=-1))
        return self.head(h)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.run(z, decoder_inputs(x, self.word_dropout, self.training))


class TransformerDecoder(nn.Module):
    """A small causal Transformer: token + position embeddings + a projection of z at every position."""

    def __init__(self, vocab_size: int, latent_dim: int, max_length: int, embed_dim: int = 64, n_layers: int = 2,
                 n_heads: int = 4, word_dropout: float = 0.0):
        super().__init__()
        if embed_dim % n_heads:
            raise ShellVAEError(f"embed_dim={embed_dim} must be divisible by n_heads={n_heads}.")
        self.latent_dim, self.word_dropout, self.max_length = latent_dim, word_dropout, max_length
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.position = nn.Parameter(torch.randn(max_length, embed_dim) * 0.02)
        self.from_z = nn.Linear(latent_dim, embed_dim)
        layer = nn.TransformerEncoderLayer(embed_dim, n_heads, 4 * embed_dim, dropout=0.0, batch_first=True)
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(embed_dim, vocab_size)

    def run(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        T = inputs.shape[1]
        if T > self.max_length:
            raise ShellVAEError(f"sequences of {T} tokens: this Transformer decoder was built for {self.max_length}.")
        h = self.embed(inputs) + self.position[:T] + self.from_z(z)[:, None, :]
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=inputs.device)
        return self.head(self.layers(h, mask=mask, is_causal=True))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.run(z, decoder_inputs(x, self.word_dropout, self.training))


def build_decoder(kind: str, vocab_size: int, latent_dim: int, *, max_length: int, embed_dim: int = 64,
                  hidden_dim: int = 128, word_dropout: float = 0.0) -> nn.Module:
    if kind == "lstm":
        return LSTMDecoder(vocab_size, latent_dim, embed_dim, hidden_dim, word_dropout)
    if kind == "transformer":
        return TransformerDecoder(vocab_size, latent_dim, max_length, embed_dim, word_dropout=word_dropout)
    raise ShellVAEError(f"decoder={kind!r}: choose one of {', '.join(DECODERS)}.")


def token_nll_per_sequence(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) of each sequence, (B,): the cross-entropy summed over its non-<pad> positions."""
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1), ignore_index=PAD, reduction="none")
    return nll.reshape(x.shape).sum(dim=1)


def token_nll(x: torch.Tensor, out: VAEOutput) -> torch.Tensor:
    """The reconstruction term of ``Objective(reconstruction=token_nll)``: -log p(x|z), batch mean, from
    the T steps' logits ``out.xhat``."""
    logits = out.xhat
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1), ignore_index=PAD,
                           reduction="sum") / len(x)


class SequenceVAEModel(nn.Module):
    """The sequence VAE (module docstring). With ``bag_output`` on (the region methods, see
    ``shellvae.core.sequence_region``), ``forward``'s output also carries ``log_bag``, the log of the
    decoder's z-only bag of tokens (``z_only_bag``), the output the region bounds."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, bag_output: bool = False):
        super().__init__()
        self.encoder, self.decoder, self.latent_dim = encoder, decoder, latent_dim
        self.bag_output = bag_output

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of every step, teacher-forced on x."""
        return self.decoder(z, x)

    def z_only_bag(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The decoder's bag of tokens from z alone, (B, V): the expected token counts, i.e. the sum over all
        T positions of its predicted distributions when its inputs carry no token (``z_only_inputs``).
        Only x's length T is used: ``<pad>`` counts as a token, so the bag does not learn a sequence's
        length from x (a decoder that ignores z gives the same bag for every sequence)."""
        return self.decoder.run(z, z_only_inputs(x)).softmax(dim=-1).sum(dim=1)

    def log_likelihood(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per sequence, (B,)."""
        return -token_nll_per_sequence(self.decode(z, x), x)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        logits = self.decode(z, x)  # first: word dropout draws from the random stream
        if not self.bag_output:
            return VAEOutput(mu, logvar, z, logits)
        # one tensor seen as two fields: the autograd graph of the released version (which appended the bag
        # to the logits), so the gradients of the two paths add in the same order and results stay bit for bit
        both = torch.cat([logits, self.z_only_bag(z, x).clamp(min=1e-12).log()[:, None, :]], dim=1)
        return VAEOutput(mu, logvar, z, both[:, :-1], both[:, -1])


class _NoEncoder(nn.Module):
    """The language model's 'encoder': a zero-dimensional code for every sequence."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((len(x), 0), dtype=torch.float32)


class LanguageModel(nn.Module):
    """The z-free language model: a decoder of the VAE's architecture whose z input is always 0.

    It trains through the same loop and methods as a VAE (its code has 0 dimensions, so the KL is
    0 and the loss is the NLL): the best decoder that ignores z, the collapse floor of
    ``certify_sequence_model``."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder, self.encoder = decoder, _NoEncoder()
        self.latent_dim = 0

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(x)
        return code, code

    def reparameterize(self, mu, logvar):
        return mu

    def _zeros(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), self.decoder.latent_dim, device=x.device)

    def decode(self, z, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._zeros(x), x)

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per sequence, (B,)."""
        return -token_nll_per_sequence(self.decode(None, x), x)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        code = self.encoder(x)
        return VAEOutput(code, code, code, self.decode(code, x))


def sequence_vae(vocab_size: int, max_length: int, latent_dim: int = 16, *, decoder: str = "lstm",
                 embed_dim: int = 64, hidden_dim: int = 128, word_dropout: float = 0.0,
                 bag_output: bool = False) -> SequenceVAEModel:
    """An LSTM encoder and a ``decoder`` ("lstm" or "transformer") over ``vocab_size`` token ids;
    ``bag_output``: its outputs carry the z-only bag a ``SequenceRegion`` bounds (the shell methods)."""
    if latent_dim < 1:
        raise ShellVAEError(f"latent_dim={latent_dim}: need at least 1 latent dimension.")
    if not 0.0 <= word_dropout <= 1.0 or math.isnan(word_dropout):
        raise ShellVAEError(f"word_dropout={word_dropout}: a probability, in [0, 1].")
    return SequenceVAEModel(SequenceEncoder(vocab_size, latent_dim, embed_dim, hidden_dim),
                            build_decoder(decoder, vocab_size, latent_dim, max_length=max_length, embed_dim=embed_dim,
                                          hidden_dim=hidden_dim, word_dropout=word_dropout), latent_dim,
                            bag_output=bag_output)


def language_model(vocab_size: int, max_length: int, latent_dim: int = 16, *, decoder: str = "lstm",
                   embed_dim: int = 64, hidden_dim: int = 128, word_dropout: float = 0.0) -> LanguageModel:
    """The z-free language model of ``sequence_vae``'s decoder architecture (same arguments)."""
    return LanguageModel(build_decoder(decoder, vocab_size, latent_dim, max_length=max_length, embed_dim=embed_dim,
                                       hidden_dim=hidden_dim, word_dropout=word_dropout))
