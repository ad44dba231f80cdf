"""The language-model floor: a non-collapse certificate that needs no Gaussian decoder.

An autoregressive decoder that ignores z is a language model, so the best a collapsed sequence
VAE can do is the best z-free language model of the same architecture trained on the same data
(its *collapse floor*). A model is certified when, on held-out sequences, decoding each
sequence's own posterior mean beats both controls by more than a margin, and a paired one-sided
test over the sequences says that is not noise:

    d_lm_i  = NLL_lm(x_i)                - NLL(x_i | z = mu(x_i))     (beats the z-free LM)
    d_sh_i  = NLL(x_i | z = mu(x_pi(i)))  - NLL(x_i | z = mu(x_i))     (beats other sequences' latents)

    certified  iff  for both d:  H0: mean(d) <= margin is rejected by a one-sided paired t-test
                    at level alpha (t = (mean(d) - margin) / (sd(d) / sqrt(n)), n - 1 d.f.)

The margin defaults to ``LM_FLOOR_MARGIN_SHARE`` = 1% of the language model's held-out NLL (nats
per sequence): a decoder must beat the floor by more than training runs of the floor itself
differ (on the generated corpus its held-out NLL had a standard deviation of 0.4-0.6% over 3
seeds: docs/results/sequences.md), by a difference a paired test over the held-out sequences
resolves. alpha defaults to 0.01.

The contract is three callables or arrays, so any model can be certified (``shellvae.certify_model``
comes here when given ``lm_nll=``):

- ``encode(x) -> codes``: the code decoded for each sequence of a (B, T) batch: a (B, d) tensor,
  or a tuple whose first element is (e.g. ``(mu, logvar)``: the posterior mean is used);
- ``decode_nll(z, x) -> (B,)``: -log p(x|z) of each sequence, teacher-forced (nats);
- ``lm_nll``: the z-free language model's -log p(x) of each held-out sequence, an (N,) array, or
  a callable ``x -> (B,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats

from shellvae.errors import ShellVAEError
from shellvae.evaluation.certificate import CollapseCertificate
from shellvae.evaluation.sequence_metrics import shuffled_order

#: the language-model-floor certificate's default margin, as a share of the language model's held-out
#: NLL per sequence
LM_FLOOR_MARGIN_SHARE = 0.01
#: the default level of its one-sided paired tests
PAIRED_TEST_ALPHA = 0.01


@dataclass
class PairedTest:
    """One-sided paired t-test of H0: mean(d) <= margin over n held-out sequences."""

    name: str
    mean_gap: float
    margin: float
    std_error: float
    t: float
    p_value: float
    n: int
    passed: bool

    def __str__(self) -> str:
        return (f"{self.name}: mean gap {self.mean_gap:+.3f} nats (margin {self.margin:.3f}, s.e. {self.std_error:.3f}, "
                f"t = {self.t:.2f}, one-sided p = {self.p_value:.2g}): {'passed' if self.passed else 'failed'}")


def paired_test(d, margin: float, alpha: float, name: str = "gap") -> PairedTest:
    """Reject H0: mean(d) <= margin at level alpha with a one-sided t-test on the paired differences d."""
    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 1 or len(d) < 2 or not np.isfinite(d).all():
        raise ShellVAEError(f"the paired test needs at least 2 finite per-sequence differences, got {d.shape}.")
    n, mean = len(d), float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    if se > 0:
        t = (mean - margin) / se
        p = float(stats.t.sf(t, n - 1))
    else:  # every difference equal: decided by the value itself
        t = math.inf if mean > margin else -math.inf
        p = 0.0 if mean > margin else 1.0
    return PairedTest(name, mean, float(margin), se, float(t), p, n, bool(p < alpha))


@dataclass
class SequenceCertificate(CollapseCertificate):
    """Whether held-out sequences prove the decoder uses z (module docstring): the language model's floor."""

    nll_own: float
    nll_shuffled: float
    nll_lm: float
    margin: float
    alpha: float
    lm_test: PairedTest
    shuffle_test: PairedTest
    certified: bool
    reasons: list[str] = field(default_factory=list)
    #: how the floor was trained (``SequenceVAE.lm_info_``: architecture, epochs, its held-out NLL,
    #: ``weaker``: how it falls short of the floor's own recipe), or None: a caller's, provenance unknown
    floor: dict | None = None

    def details(self) -> list[str]:
        return [f"  floor: {describe_floor(self.floor)}",
                f"  held-out NLL (nats/sequence): own posterior mean {self.nll_own:.3f}, shuffled latents "
                f"{self.nll_shuffled:.3f}, z-free language model (the collapse floor) {self.nll_lm:.3f}",
                f"  - {self.lm_test}", f"  - {self.shuffle_test}"]


def describe_floor(floor: dict | None) -> str:
    """One line on the floor a certificate used: what it is, how it was trained, and any weakness."""
    if not floor or "word_dropout" not in floor:
        return ("a caller-supplied floor (lm_nll) of unknown provenance: the verdict is only as strong as that "
                "floor")
    arch = f"{floor['decoder']} decoder, embed {floor['embed_dim']}" + (
        f", hidden {floor['hidden_dim']}" if floor["decoder"] == "lstm" else "")
    stop = (f"best epoch {floor['best_epoch']} of {floor['epochs']} run (early stopping)" if floor.get("early_stopping")
            else f"{floor['epochs']} epochs, no early stopping")
    line = (f"z-free language model ({arch}; word dropout {floor['word_dropout']:g}; {stop}; held-out NLL "
            f"{floor['held_out_nll']:.3f} nats/sequence on {floor['n_held_out']} held-out row(s))")
    if floor.get("early_stopping") and not floor.get("converged"):
        line += f"; it hit its cap of {floor['max_epochs']} epochs still improving, so it may be under-trained"
    if floor.get("weaker"):
        line += f"; WEAKER than the floor's recipe (allow_weaker_floor=True): {'; '.join(floor['weaker'])}"
    return line


def _codes(encode: Callable, x: torch.Tensor) -> torch.Tensor:
    codes = encode(x)
    if isinstance(codes, (tuple, list)):
        codes = codes[0]
    if not isinstance(codes, torch.Tensor) or codes.ndim != 2 or len(codes) != len(x):
        raise ShellVAEError(f"encode returned {type(codes).__name__} for {len(x)} sequences; expected a "
                            "(n_sequences, latent_dim) tensor or a tuple starting with one (e.g. (mu, logvar)).")
    return codes


def _nll(fn: Callable, *args) -> torch.Tensor:
    values = torch.as_tensor(fn(*args)).double().cpu()
    if values.shape != (len(args[-1]),):
        raise ShellVAEError(f"a per-sequence NLL callable returned shape {tuple(values.shape)} for "
                            f"{len(args[-1])} sequences; expected ({len(args[-1])},).")
    return values


@torch.no_grad()
def certify_sequence_model(encode: Callable, decode_nll: Callable, X, *, lm_nll, margin: float | None = None,
                           margin_share: float = LM_FLOOR_MARGIN_SHARE, alpha: float = PAIRED_TEST_ALPHA,
                           seed: int = 0, batch_size: int = 1024, device="cpu",
                           floor: dict | None = None) -> SequenceCertificate:
    """The language-model-floor certificate of a sequence VAE on held-out token rows X (N, T).

    ``encode``, ``decode_nll`` and ``lm_nll`` as in the module docstring. ``margin``: nats per
    sequence (default ``margin_share`` x the language model's mean NLL on X); ``alpha``: the
    tests' level; ``seed``: which other sequence's latent each one decodes in the shuffled control;
    ``floor``: how the floor was trained, recorded in the certificate (None: provenance unknown).

    The reasons state what was measured (each gap, its standard error, the margin, the p-value) and
    the verdict. A gap that fails its test is "not enough evidence" that z helps, never a claim that
    the decoder ignores z: the test cannot tell a small real gap from none.
    """
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    if X.ndim != 2 or len(X) < 2:
        raise ShellVAEError(f"X has shape {tuple(X.shape)}: the certificate needs at least 2 held-out sequences.")
    if not 0 < alpha < 1:
        raise ShellVAEError(f"alpha={alpha}: the tests' level must lie strictly between 0 and 1.")
    batches = [X[i:i + batch_size].to(device) for i in range(0, len(X), batch_size)]
    codes = torch.cat([_codes(encode, x) for x in batches])
    partner = torch.as_tensor(shuffled_order(len(X), seed), device=codes.device)
    own, shuffled, lm = [], [], []
    for i, x in enumerate(batches):
        rows = slice(i * batch_size, i * batch_size + len(x))
        own.append(_nll(decode_nll, codes[rows], x))
        shuffled.append(_nll(decode_nll, codes[partner[rows]], x))
        if callable(lm_nll):
            lm.append(_nll(lm_nll, x))
    own, shuffled = torch.cat(own).numpy(), torch.cat(shuffled).numpy()
    lm = torch.cat(lm).numpy() if callable(lm_nll) else np.asarray(lm_nll, dtype=np.float64)
    if lm.shape != own.shape:
        raise ShellVAEError(f"lm_nll has {lm.shape} values for {len(own)} sequences: give the language model's NLL "
                            "of each held-out sequence, in X's order.")
    if margin is None:
        if not 0 <= margin_share < 1:
            raise ShellVAEError(f"margin_share={margin_share}: a share of the LM's NLL, in [0, 1).")
        margin = margin_share * float(lm.mean())
    if not (math.isfinite(margin) and margin >= 0):
        raise ShellVAEError(f"margin={margin}: give a non-negative number of nats per sequence.")
    lm_test = paired_test(lm - own, margin, alpha, "own latent vs z-free language model")
    shuffle_test = paired_test(shuffled - own, margin, alpha, "own latent vs shuffled latents")
    reasons = []
    if not lm_test.passed:
        reasons.append(f"not enough evidence that decoding the own posterior mean beats the z-free floor by more than "
                       f"the margin ({_measured(lm_test)}, alpha = {alpha:g}).")
    if not shuffle_test.passed:
        reasons.append(f"not enough evidence that the decoder's likelihood depends on which z it gets (shuffled "
                       f"latents: {_measured(shuffle_test)}, alpha = {alpha:g}).")
    if lm_test.passed and shuffle_test.passed:
        reasons.append(f"decoding the own posterior mean beats the z-free floor ({_measured(lm_test)}) and other "
                       f"sequences' latents ({_measured(shuffle_test)}) by more than the margin at alpha = {alpha:g}: "
                       "the decoder uses z, not collapsed.")
    return SequenceCertificate(float(own.mean()), float(shuffled.mean()), float(lm.mean()), float(margin),
                               float(alpha), lm_test, shuffle_test, lm_test.passed and shuffle_test.passed, reasons,
                               floor)


def _measured(test: PairedTest) -> str:
    return (f"gap {test.mean_gap:+.3f} \u00b1 {test.std_error:.3f} nats (s.e.), margin {test.margin:.3f}, "
            f"p = {test.p_value:.2g}")
