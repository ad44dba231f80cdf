"""Held-out metrics of sequence VAEs, as the text-VAE literature reports them.

Every function takes callables rather than a shellvae class, so any sequence VAE can be scored:

- ``encode(x) -> (mu, logvar)``: the Gaussian posterior q(z|x) of a batch of token rows (B, T);
- ``log_likelihood(z, x) -> (B,)``: log p(x|z) of each sequence under the decoder (teacher-forced,
  summed over its non-``<pad>`` tokens), for codes z (B, d).

Put the model in ``eval()`` mode first (no word dropout); the functions run under ``no_grad``.

- ``iw_log_likelihood``: log p_K(x) = logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,
  z_k ~ q(z|x) (Burda et al. 2016; as ``shellvae.evaluation.likelihood`` with a categorical decoder), a
  lower bound on log p(x) that tightens as K grows. ``nll_iw`` = -its mean, in nats per sequence;
  ``ppl_iw`` = exp(sum of the NLLs / number of scored tokens), the perplexity per token as He et al.
  (2019) and Zhu et al. (2020) report it.
- ``elbo``: E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), one sampled z, exact KL.
- ``kl``, ``mutual_info`` (He et al. 2019 estimator), ``active_units`` (Burda et al. 2016).
- ``nll_own`` / ``nll_shuffled``: -log p(x|z) decoding each sequence's own posterior mean, or
  another held-out sequence's; their difference says whether the decoder uses z at all.
- ``nll_lm``: the z-free language model's NLL (the collapse floor of ``sequence_certificate``).
- with the generator's ``TopicChains``: the exact oracle (``TopicChains.oracle``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from tqdm.auto import tqdm

from shellvae.errors import ShellVAEError
from shellvae.evaluation.likelihood import (SEQUENCE_IW_SAMPLES, iw_bound, kl_to_standard_normal,
                                            log_prior_minus_log_posterior, posterior_draws)
from shellvae.evaluation.metric_registry import METRICS, has_inputs, metrics_for, register_whole_set_metric
from shellvae.evaluation.metrics import MI_SAMPLES, LatentSet
from shellvae.data.sequences import PAD

Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
LogLikelihood = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: sequences decoded at once (rows x importance samples)
DECODE_ROWS = 2048


def n_tokens(X) -> np.ndarray:
    """The scored tokens of each sequence: its non-``<pad>`` positions, (N,)."""
    return (np.asarray(X) != PAD).sum(axis=1)


def perplexity(nll_per_sequence, X) -> float:
    """exp(total NLL / total scored tokens) over the sequences of X."""
    return float(math.exp(float(np.sum(nll_per_sequence)) / max(int(n_tokens(X).sum()), 1)))


def _batches(X, batch_size: int, device) -> list[torch.Tensor]:
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    return [X[i:i + batch_size].to(device) for i in range(0, len(X), batch_size)]


def _generator(generator, device):
    return torch.Generator(device=device).manual_seed(0) if generator is None else generator


@torch.no_grad()
def iw_log_likelihood(encode: Encoder, log_likelihood: LogLikelihood, X, *, n_samples: int = SEQUENCE_IW_SAMPLES,
                      batch_size: int = 256, max_decode_rows: int = DECODE_ROWS,
                      generator: torch.Generator | None = None, device="cpu",
                      progress: bool = False) -> torch.Tensor:
    """log p_K(x) of every sequence of X (N, T): (N,) float64 (module docstring).

    The one importance-weighted estimator of both families (``evaluation.likelihood``: the draws, the
    latent terms, the bound) with a categorical decoder. ``batch_size`` sequences are encoded at once and
    their samples decoded ``max_decode_rows`` sequences at a time. ``progress``: a bar over the batches
    (the slowest part of an evaluation: K decoder passes a sequence).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ShellVAEError(f"n_samples={n_samples!r}: must be a positive integer.")
    generator = _generator(generator, device)
    out = []
    batches = _batches(X, batch_size, device)
    for x in tqdm(batches, desc=f"held-out NLL ({n_samples} importance samples)", unit="batch", leave=False,
                  disable=not progress):
        mu, logvar = encode(x)
        chunk = max(1, min(n_samples, max_decode_rows // len(x)))
        parts = []
        for eps, z in posterior_draws(mu, logvar, n_samples, chunk, generator):
            s = len(z)
            log_px = log_likelihood(z.reshape(s * len(x), -1), x.repeat(s, 1)).reshape(s, len(x)).double()
            parts.append(log_px + log_prior_minus_log_posterior(z, eps, logvar))
        out.append(iw_bound(torch.cat(parts), n_samples))
    return torch.cat(out)


@torch.no_grad()
def elbo(encode: Encoder, log_likelihood: LogLikelihood, X, *, batch_size: int = 1024,
         generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """E_q[log p(x|z)] - KL(q(z|x) || N(0, I)) of every sequence, one sampled z, exact KL: (N,) float64."""
    generator = _generator(generator, device)
    out = []
    for x in _batches(X, batch_size, device):
        mu, logvar = encode(x)
        z = mu + torch.randn(mu.shape, generator=generator, device=mu.device) * (0.5 * logvar).exp()
        out.append(log_likelihood(z, x).double() - kl_to_standard_normal(mu, logvar))
    return torch.cat(out)


@torch.no_grad()
def encode_all(encode: Encoder, X, *, batch_size: int = 1024, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances of every sequence, (N, d) each."""
    parts = [encode(x) for x in _batches(X, batch_size, device)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def nll_given_codes(log_likelihood: LogLikelihood, Z: torch.Tensor, X, *, batch_size: int = 1024,
                    device="cpu") -> np.ndarray:
    """-log p(x_i | z_i) of every sequence decoding the given codes Z (N, d): (N,) float64."""
    parts = []
    for i, x in enumerate(_batches(X, batch_size, device)):
        parts.append(-log_likelihood(Z[i * batch_size:i * batch_size + len(x)].to(device), x).double().cpu())
    return torch.cat(parts).numpy()


@torch.no_grad()
def lm_nll(lm_log_likelihood: Callable[[torch.Tensor], torch.Tensor], X, *, batch_size: int = 1024,
           device="cpu") -> np.ndarray:
    """-log p(x) of every sequence under a z-free language model, (N,) float64."""
    return torch.cat([-lm_log_likelihood(x).double().cpu() for x in _batches(X, batch_size, device)]).numpy()


def shuffled_order(n: int, seed: int) -> np.ndarray:
    """The seeded derangement-like permutation behind ``nll_shuffled``: each sequence decodes the posterior
    mean of the sequence ``n // 2`` places further round a seeded shuffle (never its own, for n >= 2)."""
    perm = np.random.default_rng(seed).permutation(n)
    partner = np.empty(n, dtype=np.int64)
    partner[perm] = perm[(np.arange(n) + n // 2) % n] if n > 1 else perm
    return partner


@dataclass
class SequenceEvalSet(LatentSet):
    """The held-out sequences X (N, T) and what a sequence model makes of them, per sequence (float64 arrays)."""

    X: np.ndarray
    nll_iw: np.ndarray  # -log p_K(x), importance-weighted
    elbo: np.ndarray
    nll_own: np.ndarray  # -log p(x | its own posterior mean)
    nll_shuffled: np.ndarray  # -log p(x | another sequence's)
    lm: np.ndarray | None  # the z-free language model's NLL (None: not given)
    oracle: object | None  # the generator's ``TopicChains`` (None: not given)
    precision = torch.float64

    @cached_property
    def oracle_values(self) -> dict:
        return self.oracle.oracle(self.X, self.y)


# -- the sequence family's metrics, in the order evaluate_sequences returns them ------------------------
def _register(name: str, doc: str, needs: tuple[str, ...] = ()):
    return register_whole_set_metric(name, doc, family="sequence", needs=needs)


@_register("nll_iw", "-log p(x) by importance sampling (Burda et al. 2016), nats per sequence")
def _nll_iw(s: SequenceEvalSet) -> float:
    return float(s.nll_iw.mean())


@_register("ppl_iw", "perplexity per token: exp(total importance-weighted NLL / scored tokens)")
def _ppl_iw(s: SequenceEvalSet) -> float:
    return perplexity(s.nll_iw, s.X)


@_register("elbo", "E_q[log p(x|z)] - KL, nats per sequence, one sampled z, exact KL")
def _elbo(s: SequenceEvalSet) -> float:
    return float(s.elbo.mean())


METRICS.include("sequence", "kl", "mutual_info", "active_units")


@_register("nll_own", "-log p(x|z) decoding each sequence's own posterior mean")
def _nll_own(s: SequenceEvalSet) -> float:
    return float(s.nll_own.mean())


@_register("nll_shuffled", "-log p(x|z) decoding another held-out sequence's posterior mean")
def _nll_shuffled(s: SequenceEvalSet) -> float:
    return float(s.nll_shuffled.mean())


@_register("shuffle_gap", "nll_shuffled - nll_own: does the decoder use z at all?")
def _shuffle_gap(s: SequenceEvalSet) -> float:
    return float((s.nll_shuffled - s.nll_own).mean())


@_register("tokens_per_sequence", "mean scored (non-<pad>) tokens of a sequence")
def _tokens_per_sequence(s: SequenceEvalSet) -> float:
    return float(n_tokens(s.X).mean())


@_register("nll_lm", "the z-free language model's NLL, nats per sequence", needs=("lm",))
def _nll_lm(s: SequenceEvalSet) -> float:
    return float(s.lm.mean())


@_register("ppl_lm", "the language model's perplexity per token", needs=("lm",))
def _ppl_lm(s: SequenceEvalSet) -> float:
    return perplexity(s.lm, s.X)


@_register("lm_gap", "nll_lm - nll_own: how far decoding z beats the z-free floor", needs=("lm",))
def _lm_gap(s: SequenceEvalSet) -> float:
    return float((s.lm - s.nll_own).mean())


def _oracle_metric(key: str, doc: str, needs: tuple[str, ...] = ("oracle",)) -> None:
    _register(key, doc, needs)(lambda s: s.oracle_values[key])


_oracle_metric("oracle_nll", "the generator's exact -log p(x), nats per sequence")
_oracle_metric("oracle_ppl", "the generator's perplexity per token")
_oracle_metric("entropy_given_topic", "the generator's entropy of a sequence given its topic (a lower bound)")
_oracle_metric("entropy_upper", "the generator's entropy of a sequence (an upper bound)")
_oracle_metric("oracle_nll_topic", "the generator's exact -log p(x | topic), given the topics y", ("oracle", "y"))


@_register("nll_iw_minus_oracle", "nll_iw - oracle_nll: how far the model is from the true likelihood",
           needs=("oracle",))
def _nll_iw_minus_oracle(s: SequenceEvalSet) -> float:
    return _nll_iw(s) - s.oracle_values["oracle_nll"]


@_register("probe_dropped_classes", "label classes with fewer rows than the probe's 5 folds, left out",
           needs=("y",))
def _probe_dropped_classes(s: SequenceEvalSet) -> list:
    return s.probe["probe_dropped_classes"]


@_register("probe_dropped_rows", "the rows of those classes", needs=("y",))
def _probe_dropped_rows(s: SequenceEvalSet) -> int:
    return s.probe["probe_dropped_rows"]


METRICS.include("sequence", "probe_accuracy", "chance_accuracy")


@_register("probe_note", "what the probe dropped, or why it gave None (None: nothing to say)", needs=("y",))
def _probe_note(s: SequenceEvalSet):
    return s.probe["probe_note"]


@torch.no_grad()
def evaluate_sequences(encode: Encoder, log_likelihood: LogLikelihood, X, *, lm=None, oracle=None, topics=None,
                       iw_samples: int = SEQUENCE_IW_SAMPLES, seed: int = 0, device="cpu", extra=None,
                       progress: bool = False) -> dict:
    """Every held-out metric of the sequence family (``metric_registry.metrics_for("sequence")``, the module docstring)
    on token rows X (N, T), in its registration order; a metric whose input is not given is left out.

    ``lm``: the z-free language model's per-sequence NLL on X (an (N,) array) or its
    ``log_likelihood(x)`` callable; ``oracle``: the generator's ``TopicChains``; ``topics``: each
    sequence's label (the oracle given the topic, and ``probes.probe_metrics``: the linear probe's
    accuracy against chance over the classes with enough rows, the rest dropped and reported);
    ``extra(mu, shuffled) -> dict``: more metrics from the posterior means (the region's);
    ``progress``: a progress bar over the importance-weighted NLL's batches.
    """
    X = np.asarray(X)
    if X.ndim != 2 or len(X) < 2:
        raise ShellVAEError(f"X has shape {X.shape}: evaluate needs at least 2 sequences (N, T).")
    gen = torch.Generator(device=device).manual_seed(seed)
    mu, logvar = encode_all(encode, X, device=device)
    partner = shuffled_order(len(X), seed)
    own = nll_given_codes(log_likelihood, mu, X, device=device)
    shuffled = nll_given_codes(log_likelihood, mu[torch.as_tensor(partner, device=mu.device)], X, device=device)
    # the random draws, in a fixed order from one seeded generator: the importance samples, the ELBO's z, the
    # MI's rows, then the MI's z (a metric)
    iw = -iw_log_likelihood(encode, log_likelihood, X, n_samples=iw_samples, generator=gen, device=device,
                            progress=progress).cpu().numpy()
    el = elbo(encode, log_likelihood, X, generator=gen, device=device).cpu().numpy()
    mi_rows = torch.randperm(len(X), generator=gen, device=device)[:MI_SAMPLES]
    if lm is not None:
        lm = lm_nll(lm, X, device=device) if callable(lm) else np.asarray(lm, dtype=np.float64)
    s = SequenceEvalSet(mu, logvar, gen, mi_rows, seed, None if topics is None else np.asarray(topics),
                        X, iw, el, own, shuffled, lm, oracle)
    out = {m.name: m.compute(s) for m in metrics_for("sequence") if has_inputs(s, m)}
    if extra is not None:
        out.update(extra(mu, torch.as_tensor(partner, device=mu.device)))
    return out
