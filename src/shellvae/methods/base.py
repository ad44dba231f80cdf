"""What every method shares: the per-run context, a batch, and the ``Method`` base class.

A method decides how the terms of ``objectives`` are weighted or scheduled, nothing else: the
training loop asks it for the loss of a batch (``loss``) and, for methods that alternate which
parameters move, lets it run the whole optimisation step (``train_step``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, ClassVar

import torch

from shellvae.model import GaussianVAE, VAEOutput
from shellvae.objectives import gaussian_nll, kl_divergence


@dataclass
class TrainContext:
    """Constants of a run (decoder variance, KL weight, geometry) and where training is now."""

    sigma2: float
    beta: float = 1.0
    n_epochs: int = 1
    W: float | None = None  # within-cluster variance of the training shell data
    delta: float | None = None  # collapse loss (between-cluster variance)
    r_min: float = 0.9
    r_max: float = 1.1
    epoch: int = 0  # 0-based
    #: draws a random training batch; set by the loop, used by methods whose inner steps need fresh
    #: batches (aggressive, em). None: they reuse the step's own batch (see methods/alternating.py).
    sample_batch: Callable[[], "Batch"] | None = None

    @property
    def progress(self) -> float:
        """0 at the first epoch, 1 at the last."""
        return self.epoch / max(self.n_epochs - 1, 1)


@dataclass
class Batch:
    x: torch.Tensor  # (B, D) shell data
    centers: torch.Tensor | None = None  # (B, D) each sample's cluster centre mu_c(i)


class Method:
    """Vanilla ELBO with a fixed KL weight beta. Subclasses override ``kl_weight`` / ``extra_terms``."""

    name: ClassVar[str] = "vanilla"
    summary: ClassVar[str] = "Gaussian VAE, negative ELBO with KL weight beta"
    reference: ClassVar[str] = "Kingma & Welling 2014"
    #: whether batches must carry their cluster centres (the loop gathers them only then)
    needs_centers: ClassVar[bool] = False

    def prepare(self, model: GaussianVAE) -> GaussianVAE:
        """Adapt a freshly built model before training (e.g. BN-VAE adds a batch norm on mu). Must be
        deterministic: it also runs when a saved model is loaded, before its weights are restored."""
        return model

    def kl_weight(self, ctx: TrainContext) -> float:
        return ctx.beta

    def schedule(self, ctx: TrainContext) -> dict:
        """What the loss takes from where training is (the KL weight; shell methods add the stage).

        ``train()`` evaluates it once per epoch, before the epoch and outside any compiled code,
        and the loss reads that copy (``current``): a compiled loss then never reads the epoch
        itself, which would make it a graph input (with CUDA graphs, one recording per epoch).
        """
        return {"kl_weight": self.kl_weight(ctx)}

    def fix_schedule(self, ctx: TrainContext | None) -> dict | None:
        """Freeze ``schedule`` at ``ctx`` for the loss to read (the loop, before each epoch); None releases it."""
        self._epoch_schedule = None if ctx is None else self.schedule(ctx)
        return self._epoch_schedule

    def current(self, ctx: TrainContext) -> dict:
        """This epoch's ``schedule``: the frozen copy while the loop runs, else evaluated now."""
        fixed = getattr(self, "_epoch_schedule", None)
        return fixed if fixed is not None else self.schedule(ctx)

    def kl_term(self, out: VAEOutput, kl: torch.Tensor) -> torch.Tensor:
        """The KL term the loss weights; ``kl`` is the plain KL. Free bits floors it per dimension."""
        return kl

    def extra_terms(self, out: VAEOutput, batch: Batch, ctx: TrainContext) -> dict[str, tuple[float, torch.Tensor]]:
        """Additional terms as {name: (weight, value)}; weight 0 only logs the value. Vanilla has none."""
        return {}

    def loss(self, out: VAEOutput, batch: Batch, ctx: TrainContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        nll = gaussian_nll(batch.x, out.xhat, ctx.sigma2)
        kl = kl_divergence(out.mu, out.logvar)
        kl_used = self.kl_term(out, kl)
        total = nll + self.current(ctx)["kl_weight"] * kl_used
        logs = {"nll": nll, "kl": kl}  # always the plain KL, whatever the loss uses
        if kl_used is not kl:
            logs["kl_term"] = kl_used
        for name, (weight, value) in self.extra_terms(out, batch, ctx).items():
            if weight:
                total = torch.add(total, value, alpha=weight)
            logs[name] = value
        logs["loss"] = total
        return total, logs

    def forward_loss(self, model: GaussianVAE, batch: Batch,
                     ctx: TrainContext) -> tuple[VAEOutput, torch.Tensor, dict[str, torch.Tensor]]:
        """The model's output on the batch, the loss and its logged terms: the part of a step that
        ``train(compile=True)`` compiles as one graph (forward and every loss term together)."""
        out = model(batch.x)
        loss, logs = self.loss(out, batch, ctx)
        return out, loss, logs

    def train_step(self, model: GaussianVAE, optimizer: torch.optim.Optimizer, batch: Batch,
                   ctx: TrainContext) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached logs. Alternating methods override this."""
        optimizer.zero_grad(set_to_none=True)
        _, loss, logs = self.forward_loss(model, batch, ctx)
        loss.backward()
        optimizer.step()
        return {k: v.detach() for k, v in logs.items()}

    def after_epoch(self, ctx: TrainContext, epoch_logs: dict[str, float]) -> None:
        """Hook for state updated once an epoch (multipliers, modes)."""

    # Method objects are small dataclasses: their fields are their hyperparameters.
    def params(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)} if hasattr(self, "__dataclass_fields__") else {}

    def state_dict(self) -> dict:
        """Learned state that a checkpoint must keep (e.g. a Lagrange multiplier)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
