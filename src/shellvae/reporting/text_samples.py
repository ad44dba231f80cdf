"""Bowman-style qualitative output of a fitted ``SequenceVAE`` as Markdown (Bowman et al. 2016, §5).

Three views that show at a glance whether a text VAE uses its latent:

- **sentences from the prior**: codes z ~ N(0, I), each decoded greedily and by sampling. A decoder
  that ignores z decodes every z greedily to the same sentence (its language model's most likely
  one), however different the codes; sampling still varies, so the greedy column is the telling one.
- **reconstructions**: held-out sentences beside the greedy decoding of their posterior means.
- **a homotopy**: greedy decodings of evenly spaced points between two held-out sentences'
  posterior means; a used latent moves from one to the other through sentences in between.

    from shellvae.reporting.text_samples import qualitative_report
    print(qualitative_report(vae, data.X_test))
"""

from __future__ import annotations

import numpy as np

from shellvae.base.validation import check_scalar
from shellvae.errors import DataError, ShellVAEError


def _cell(text: str) -> str:
    """Text as one Markdown table cell: a pipe would end the cell, an empty one would vanish."""
    return text.replace("\\", "\\\\").replace("|", "\\|") if text else "*(empty)*"


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def prior_sentences(est, n: int = 5, seed: int = 0) -> list[tuple[str, str]]:
    """(greedy, sampled) text of n codes drawn from the prior with ``seed``, each decoded both ways."""
    check_scalar(n, "n_samples", integer=True)
    check_scalar(seed, "seed", integer=True, low_open=False)
    z = np.random.default_rng(seed).standard_normal((n, est.latent_dim))
    greedy = est.decode_text(est.inverse_transform(z, greedy=True))
    sampled = est.decode_text(est.inverse_transform(z, greedy=False, seed=seed))
    return list(zip(greedy, sampled))


def qualitative_report(est, X_test, *, n_samples: int = 5, n_reconstructions: int = 5, pair: tuple[int, int] = (0, 1),
                       steps: int = 5, seed: int = 0, title: str | None = None) -> str:
    """Markdown: sentences from the prior, held-out sentences beside their reconstructions, and a
    homotopy between held-out sentences ``pair`` (row indices of X_test), for a fitted ``SequenceVAE``
    with a vocabulary. Greedy decoding throughout, except the prior's sampled column (seeded by ``seed``),
    so the same model and arguments give the same text."""
    est._check_fitted()
    if getattr(est, "vocab_", None) is None:
        raise ShellVAEError("the model has no vocabulary to print words with: fit with vocab=data.vocab.")
    X_test = est._rows(X_test, "X_test")
    check_scalar(n_reconstructions, "n_reconstructions", integer=True, low_open=False)
    check_scalar(steps, "steps", integer=True, low=2, low_open=False)
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in pair)):
        raise ShellVAEError(f"pair={pair!r}: give two row indices of X_test, e.g. (0, 1).")
    if not all(0 <= i < len(X_test) for i in pair):
        raise DataError(f"pair={tuple(pair)}: X_test has {len(X_test)} rows (indices 0 to {len(X_test) - 1}).")

    name = title or f"{est.method_.name}, {est.decoder} decoder"
    prior = (f"**Sentences from the prior** ({n_samples} codes z ~ N(0, I), seed {seed}; a decoder that ignores z "
             "decodes every code greedily to the same sentence):")
    lines = [f"### {name}", "", prior, ""]
    lines += _table(("", "greedy", "sampled"),
                    [(i + 1, _cell(g), _cell(s)) for i, (g, s) in enumerate(prior_sentences(est, n_samples, seed))])

    shown = X_test[:n_reconstructions]
    if len(shown):
        lines += ["", "**Held-out sentences and their reconstructions** (greedy, from the posterior mean):", ""]
        pairs = zip(est.decode_text(shown), est.decode_text(est.reconstruct(shown)))
        lines += _table(("held-out", "reconstruction"), [(_cell(a), _cell(b)) for a, b in pairs])

    a, b = (int(i) for i in pair)
    path = est.decode_text(est.homotopy(X_test[a], X_test[b], steps=steps))
    ends = est.decode_text(X_test[[a, b]])
    homotopy = (f"**Homotopy** between held-out sentences {a} and {b} (greedy decodings of {steps} evenly spaced "
                "points between their posterior means):")
    lines += ["", homotopy, "",
              f"- from: {_cell(ends[0])}", f"- to: {_cell(ends[1])}", ""]
    lines += _table(("t", "decoded"), [(f"{t:.2f}", _cell(text)) for t, text in zip(np.linspace(0, 1, steps), path)])
    return "\n".join(lines) + "\n"
