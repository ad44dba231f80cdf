"""What a fitted ``SequenceVAE`` writes (Bowman et al. 2016): token rows decoded from codes
(``inverse_transform``), reconstructions, homotopies between two sequences, and rows as text.

A mixin of ``SequenceVAE`` (``estimators/sequence_vae.py``), kept apart so that module stays one
sitting long; it reads the estimator's fitted ``model_``, ``vocab_``, ``latent_dim``, ``length_``,
``decoder``, ``device`` and its ``transform`` / ``_rows`` / ``_check_fitted``. The Markdown report
built on it: ``shellvae.reporting.text_samples``.
"""

from __future__ import annotations

import numpy as np
import torch

from shellvae.base.validation import check_scalar
from shellvae.data.sequences import BOS, EOS, PAD, Vocabulary
from shellvae.errors import DataError, ShellVAEError


class TextOutput:
    """Greedy or seeded sampled decoding of codes, reconstructions, homotopies and text (module docstring)."""

    @torch.no_grad()
    def inverse_transform(self, Z, *, greedy: bool = True, seed: int = 0, length: int | None = None) -> np.ndarray:
        """Token rows decoded autoregressively from the codes Z (N, latent_dim): at each step the most
        likely token (``greedy``) or one drawn from the decoder (seeded by ``seed``); ``<pad>`` after an
        ``<eos>``. ``<pad>`` and ``<bos>`` are never emitted (neither is ever a target)."""
        self._check_fitted()
        try:
            Z = Z.detach().cpu().double().numpy() if isinstance(Z, torch.Tensor) else np.asarray(Z, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ShellVAEError(f"Z could not be read as an array of codes: {exc}") from None
        if Z.ndim != 2 or Z.shape[1] != self.latent_dim or not len(Z):
            raise ShellVAEError(f"Z has shape {Z.shape}; expected (n_codes, {self.latent_dim}) (latent_dim).")
        if not np.isfinite(Z).all():
            raise ShellVAEError("Z holds a non-finite value; codes must be finite.")
        length = self._decode_length(length)
        if not isinstance(greedy, bool):
            raise ShellVAEError(f"greedy={greedy!r}: give True (most likely token) or False (sample).")
        check_scalar(seed, "seed", integer=True, low_open=False)
        gen = torch.Generator().manual_seed(seed)
        z = torch.as_tensor(Z, dtype=torch.float32, device=self.device)
        x = torch.full((len(z), length), PAD, dtype=torch.int64, device=self.device)
        done = torch.zeros(len(z), dtype=torch.bool, device=self.device)
        was_training = self.model_.training
        self.model_.eval()  # no word dropout while decoding
        try:
            for t in range(length):
                # the whole prefix is decoded again at every step: both decoders through the one contract
                # method (decode), at a cost that does not matter for the few rows shown to a reader
                logits = self.model_.decode(z, x[:, :t + 1])[:, t].float()
                logits[:, [PAD, BOS]] = -torch.inf
                if greedy:
                    token = logits.argmax(-1)
                else:  # drawn on the CPU, as sample() does, so a seed gives the same rows on every device
                    token = torch.multinomial(logits.softmax(-1).cpu(), 1, generator=gen).squeeze(1).to(self.device)
                x[:, t] = torch.where(done, torch.full_like(token, PAD), token)
                done |= token == EOS
                if done.all():
                    break
        finally:
            self.model_.train(was_training)
        return x.cpu().numpy()

    def _decode_length(self, length) -> int:
        length = self.length_ if length is None else length
        check_scalar(length, "length", integer=True)
        if self.decoder == "transformer" and length > self.length_:
            raise ShellVAEError(f"length={length}: the Transformer decoder was built for {self.length_} positions.")
        return int(length)

    def reconstruct(self, X, *, greedy: bool = True, seed: int = 0) -> np.ndarray:
        """Token rows decoded from the posterior means of X (N, T): ``inverse_transform(transform(X))``,
        rows of X's length."""
        self._check_fitted()
        X = self._rows(X)
        return self.inverse_transform(self.transform(X), greedy=greedy, seed=seed, length=np.shape(X)[1])

    def homotopy(self, x_a, x_b, *, steps: int = 5, greedy: bool = True, seed: int = 0) -> np.ndarray:
        """Token rows (steps, T) decoded from ``steps`` evenly spaced points on the segment between the
        posterior means of the sequences x_a and x_b (each one token row), both ends included (Bowman et
        al. 2016, section 5.3): the first row is x_a's reconstruction, the last x_b's."""
        self._check_fitted()
        check_scalar(steps, "steps", integer=True, low=2, low_open=False,
                     fix="The two ends are points of the homotopy; 5 shows three between them.")
        ends = []
        for name, row in (("x_a", x_a), ("x_b", x_b)):
            shape = np.shape(row)
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[0] != 1):
                raise DataError(f"{name} has shape {shape}; give one token row, (length,) or (1, length).")
            ends.append(self._rows(np.reshape(row, (1, -1)), name))
        length = max(ends[0].shape[1], ends[1].shape[1])
        mu_a, mu_b = (self.transform(row)[0] for row in ends)
        weights = np.linspace(0.0, 1.0, steps)[:, None]
        return self.inverse_transform((1.0 - weights) * mu_a + weights * mu_b, greedy=greedy, seed=seed,
                                      length=length)

    def decode_text(self, rows, *, vocab: Vocabulary | None = None) -> list[str]:
        """Each token row as text: its words joined by spaces, up to its first ``<eos>`` (``<pad>``
        dropped), with the fitted ``vocab_`` (or ``vocab``)."""
        vocab = getattr(self, "vocab_", None) if vocab is None else vocab
        if vocab is None:
            raise ShellVAEError("no vocabulary to turn ids into words: fit with vocab=data.vocab (load_text, "
                                "make_topic_corpus give one), or pass vocab=.")
        rows = np.asarray(rows)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.dtype.kind not in "iu":
            raise DataError(f"rows have shape {rows.shape} and dtype {rows.dtype}; expected integer token rows (n, length).")
        return [" ".join(vocab.decode(row)) for row in rows]
