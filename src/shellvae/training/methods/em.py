"""EM-type VAE training (Li et al., ICASSP 2023, "Overcoming posterior collapse in variational
autoencoders via EM-type training").

The paper recasts the alternating scheme of He et al. 2019 as EM on the ELBO: the E step fits
the variational posterior q_phi(z|x) with the decoder fixed, the M step fits the decoder
p_theta(x|z) with the posterior fixed. Its text is not available here; this is our reading of
the abstract and that line of work: every training step runs ``e_steps`` encoder-only updates
(the E step, a fixed and therefore controllable amount of inference, unlike He et al.'s
stop-when-converged rule) followed by ``m_steps`` decoder-only updates on the step's batch (the
M step), both on the same ELBO with KL weight beta, for the whole of training (no switch to
joint training). Freezing is shared with ``aggressive`` (``alternating.py``); the E step's
batches after the first come from ``plan.draw_batch`` when the loop offers it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shellvae.training.methods.alternating import Alternating
from shellvae.training.methods.base import hyperparameter
from shellvae.training.methods.registry import register_method


@register_method
@dataclass(repr=False)
class EM(Alternating):
    name = "em"
    summary = "EM-type training: each step = e_steps encoder-only updates (E) then m_steps decoder-only updates (M)"
    reference = "Li et al., ICASSP 2023"

    e_steps: int = hyperparameter(5, low=1, doc="encoder-only updates per step (E)")
    m_steps: int = hyperparameter(1, low=1, doc="decoder-only updates per step (M)")

    def e_phase(self, model, optimizer, batch, plan) -> None:
        x = batch
        for _ in range(self.e_steps):
            self.encoder_step(model, optimizer, x, plan)
            x = self.inner_batch(batch, plan)

    def train_step(self, model, optimizer, batch, plan):
        self.e_phase(model, optimizer, batch, plan)
        for _ in range(self.m_steps):
            _, logs = self.decoder_step(model, optimizer, batch, plan)
        return logs
