"""Training that moves the encoder and the decoder in separate steps (aggressive, em).

The loop gives every method one Adam optimiser over all parameters. A step that must move
only some of them backpropagates into those alone (``backward(inputs=...)``) after clearing
every gradient to None: Adam skips parameters whose ``.grad`` is None, so the others stay
bit-identical, their moment estimates included (a zero gradient would not do: Adam's momentum
would still move them).

Inner steps want fresh batches, but ``train_step`` receives one. When the loop provides
``plan.draw_batch`` (a random training batch), inner steps after the first use it; otherwise
they reuse the step's own batch, a documented deviation: the encoder then fits that batch's
posteriors for the current decoder rather than the posteriors of the data at large.
"""

from __future__ import annotations

from typing import Iterable

import torch

from shellvae.training.methods.base import Batch, EpochPlan, Method
from shellvae.core.contract import TrainableModel, VAEOutput


class Alternating(Method):
    """Shared step mechanics of alternating methods (not registered itself)."""

    # their encoder-only and decoder-only steps reach model.encoder / model.decoder, which DDP's wrapper
    # hides, and take a data-dependent number of inner steps, which would desynchronise the ranks
    ddp = "not supported: encoder-only and decoder-only inner steps would desynchronise the ranks"

    def step_on(self, params: Iterable[torch.nn.Parameter], model: TrainableModel, optimizer: torch.optim.Optimizer,
                batch: Batch, plan: EpochPlan) -> tuple[VAEOutput, dict[str, torch.Tensor]]:
        """One optimiser step on the method's loss that moves only ``params``; returns the output and logs."""
        optimizer.zero_grad(set_to_none=True)
        out, loss, logs = plan.loss(model, batch)
        loss.backward(inputs=[p for p in params if p.requires_grad])
        optimizer.step()
        return out, {k: v.detach() for k, v in logs.items()}

    def encoder_step(self, model, optimizer, batch, plan):
        return self.step_on(model.encoder.parameters(), model, optimizer, batch, plan)

    def decoder_step(self, model, optimizer, batch, plan):
        return self.step_on(model.decoder.parameters(), model, optimizer, batch, plan)

    def inner_batch(self, batch: Batch, plan: EpochPlan) -> Batch:
        """The batch of the next inner step: a fresh one if the loop offers it, else the step's own."""
        return batch if plan.draw_batch is None else plan.draw_batch()
