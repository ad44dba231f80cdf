"""Lagging inference networks: aggressive encoder training (He et al., ICLR 2019, Algorithm 1).

Collapse starts when the encoder lags behind the decoder: q(z|x) is still uninformative when
the decoder learns to ignore z. In aggressive mode each step therefore first optimises the
encoder alone, over inner steps, until its loss stops improving (the mean loss of a window of
``check_every`` inner steps exceeds the previous window's, or ``max_inner_steps`` is reached),
then takes one decoder-only step on the step's batch. After each epoch the mutual information
I(x; z) is compared with the previous epoch's; once it falls, the method leaves aggressive mode
for good and trains encoder and decoder jointly, like the vanilla VAE.

Deviations, both documented: MI is the He et al. estimator (``metrics.mutual_information``)
on each training batch's posteriors, averaged over the epoch (logged as ``mi``), rather than on
a validation set after the epoch; the method sees no validation data. Inner batches come from
``plan.draw_batch`` when the loop offers it, else the step's batch is reused (see
``alternating.py``). He et al. allow up to 100 inner steps; the default 50 keeps CPU runs short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from shellvae.training.methods.alternating import Alternating
from shellvae.training.methods.base import hyperparameter
from shellvae.training.methods.registry import register_method
from shellvae.core.objectives import mutual_information


@register_method
@dataclass(repr=False)
class Aggressive(Alternating):
    name = "aggressive"
    summary = "lagging-encoder training: encoder-only steps to convergence before each decoder step, while MI rises"
    reference = "He et al., ICLR 2019"

    max_inner_steps: int = hyperparameter(50, low=1, doc="most encoder-only steps before each decoder step")
    check_every: int = hyperparameter(15, low=1, doc="inner steps per convergence check (He et al.: 15)")

    def __post_init__(self):
        super().__post_init__()
        self.aggressive = True
        self.prev_mi = 0.0  # He et al. start from 0, so the first epoch is always aggressive

    def encoder_phase(self, model, optimizer, batch, plan) -> int:
        """Encoder-only steps until the windowed loss stops falling; returns how many were taken."""
        prev, window, x = math.inf, 0.0, batch
        for step in range(1, self.max_inner_steps + 1):
            _, logs = self.encoder_step(model, optimizer, x, plan)
            window = window + logs["loss"]
            x = self.inner_batch(batch, plan)
            if step % self.check_every == 0:
                current = float(window) / self.check_every
                if current > prev:
                    break
                prev, window = current, 0.0
        return step

    def train_step(self, model, optimizer, batch, plan):
        if self.aggressive:
            inner = self.encoder_phase(model, optimizer, batch, plan)
            out, logs = self.decoder_step(model, optimizer, batch, plan)
        else:
            inner = 0
            out, logs = self.step_on(model.parameters(), model, optimizer, batch, plan)
        device = logs["loss"].device
        logs["mi"] = torch.tensor(mutual_information(out.mu.detach(), out.logvar.detach()), device=device)
        logs["aggressive"] = torch.tensor(float(self.aggressive), device=device)
        logs["inner_steps"] = torch.tensor(float(inner), device=device)
        return logs

    def after_epoch(self, epoch_logs):
        if self.aggressive:
            mi = epoch_logs["train_mi"]
            if mi < self.prev_mi:
                self.aggressive = False
            self.prev_mi = mi

    def state_dict(self) -> dict:
        return {"aggressive": self.aggressive, "prev_mi": self.prev_mi}

    def load_state_dict(self, state: dict) -> None:
        self.aggressive, self.prev_mi = bool(state["aggressive"]), float(state["prev_mi"])
