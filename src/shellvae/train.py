"""The one training loop every method uses.

Data lives in memory as tensors on the training device; a batch is an index slice of a seeded
permutation, so there is no per-sample Python work and no DataLoader. The method computes the
loss (and, for alternating methods, runs the step); the loop owns the data order, the
non-finite guard, per-epoch evaluation, checkpoints and the progress bar.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from shellvae import io
from shellvae.errors import NonFiniteError
from shellvae.geometry import ClusterGeometry
from shellvae.methods import Batch, Method, TrainContext
from shellvae.metrics import evaluate
from shellvae.model import GaussianVAE


@dataclass
class TrainData:
    """Training tensors: shell data and (for methods that need them) each row's cluster centre."""

    X: torch.Tensor
    centers: torch.Tensor | None = None

    @classmethod
    def build(cls, X_shell: np.ndarray, geometry: ClusterGeometry | None, method: Method, device="cpu") -> "TrainData":
        X = torch.as_tensor(X_shell, dtype=torch.float32, device=device)
        centers = None
        if method.needs_centers:
            table = torch.as_tensor(geometry.centers_, dtype=torch.float32, device=device)
            centers = table[torch.as_tensor(geometry.labels_, device=device)]
        return cls(X, centers)

    def batch(self, idx: torch.Tensor) -> Batch:
        return Batch(self.X[idx], None if self.centers is None else self.centers[idx])


def train(
    model: GaussianVAE,
    method: Method,
    data: TrainData,
    ctx: TrainContext,
    *,
    geometry: ClusterGeometry | None = None,
    X_val: torch.Tensor | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    eval_every: int = 1,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Train ``model`` in place for ``ctx.n_epochs`` epochs; returns the per-epoch history.

    Each history row holds the epoch's mean of every logged loss term (``train_*``), the KL
    weight used, timings, and, every ``eval_every`` epochs, the held-out metrics of
    ``metrics.evaluate`` on ``X_val`` (``val_*``). With ``checkpoint`` set, the full training
    state is saved atomically after every epoch; ``resume=True`` continues from it and reaches
    the same parameters as an uninterrupted run.
    """
    if X_val is not None and geometry is None:
        raise ValueError("held-out metrics (X_val) need the cluster geometry: pass geometry=")
    device = data.X.device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)  # the epochs' batch order
    inner = torch.Generator().manual_seed(seed + 1)  # extra batches for alternating methods' inner steps
    torch.manual_seed(seed)  # the reparameterisation noise
    n = len(data.X)
    ctx.sample_batch = lambda: data.batch(torch.randint(n, (min(batch_size, n),), generator=inner).to(device))
    history: list[dict] = []
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        start, history = _restore(checkpoint, model, optimizer, method, order, inner)
    bar = tqdm(range(start, ctx.n_epochs), initial=start, total=ctx.n_epochs, disable=not progress,
               desc=f"{method.name}", unit="epoch", leave=False)
    for epoch in bar:
        ctx.epoch = epoch
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=order).to(device)
        step_logs = [method.train_step(model, optimizer, data.batch(perm[i:i + batch_size]), ctx)
                     for i in range(0, n, batch_size)]
        row = {"epoch": epoch + 1, "kl_weight": method.kl_weight(ctx)}
        row.update(_epoch_means(step_logs, epoch))
        _check_parameters(model, epoch)
        row["train_time_s"] = time.perf_counter() - t0
        method.after_epoch(ctx, row)
        if X_val is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == ctx.n_epochs):
            t1 = time.perf_counter()
            metrics = evaluate(model, X_val, geometry, ctx.r_min, ctx.r_max, seed=seed)
            row.update({f"val_{k}": v for k, v in metrics.items()})
            row["eval_time_s"] = time.perf_counter() - t1
        history.append(row)
        if checkpoint is not None:
            _save(checkpoint, model, optimizer, method, order, inner, epoch + 1, history)
        bar.set_postfix(loss=f"{row['train_loss']:.3g}", kl=f"{row.get('val_kl', row['train_kl']):.3f}",
                        au=row.get("val_active_units", "-"))
    bar.close()
    return history


def _epoch_means(step_logs: list[dict], epoch: int) -> dict[str, float]:
    """Mean of each logged term over the epoch's steps; a non-finite value stops training."""
    row = {}
    for key in step_logs[0]:
        values = torch.stack([logs[key] for logs in step_logs])
        bad = ~torch.isfinite(values)
        if bad.any():
            step = int(bad.nonzero()[0, 0])
            raise NonFiniteError(
                f"training diverged: term '{key}' became non-finite at epoch {epoch + 1}, step {step + 1}. "
                "Parameters of the last finished epoch are kept in the checkpoint (if one was set). "
                "Try a smaller learning rate or penalty weights, or check the data scale."
            )
        row[f"train_{key}"] = float(values.mean())
    return row


def _check_parameters(model: torch.nn.Module, epoch: int) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NonFiniteError(
                f"training diverged: parameter '{name}' became non-finite in epoch {epoch + 1} "
                "(a non-finite gradient). The checkpoint keeps the last finite epoch."
            )


def _save(path, model, optimizer, method, order, inner, epoch, history) -> None:
    io.save(path, {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "method_state": io.to_safe(method.state_dict()),
        "order_rng": order.get_state(),
        "inner_rng": inner.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": history,
    }, kind="checkpoint")


def _restore(path, model, optimizer, method, order, inner) -> tuple[int, list[dict]]:
    state = io.load(path, kind="checkpoint")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    method.load_state_dict(io.from_safe(state["method_state"]))
    order.set_state(state["order_rng"])
    inner.set_state(state["inner_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["epoch"], state["history"]
