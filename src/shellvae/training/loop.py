"""The one training loop every method uses.

Each epoch the loop asks the method for its ``Schedule`` (a value: the KL weight, whether the
constraints are on), hands every step an ``EpochPlan`` with it, and runs the steps over a seeded
permutation of the rows (``training.batches``: in memory or from a memory map). The method computes
the loss and takes the step; the loop owns the data order, the non-finite guard, the per-epoch
validation (a callable it is given), checkpoints (``checkpoint.py``), speed-ups
(``acceleration.py``) and the progress bar. Under ``torchrun`` it trains with
DistributedDataParallel (``distributed.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from shellvae.training import checkpoint as checkpoints
from shellvae.base import distributed
from shellvae.training.acceleration import adam, compiled, flushing_denormals, with_amp
from shellvae.training.batches import MemmapTrainData, TrainData
from shellvae.errors import NonFiniteError, ShellVAEError
from shellvae.training.methods import Epoch, EpochPlan, Method, Objective
from shellvae.core.contract import TrainableModel


def train(
    model: TrainableModel,
    method: Method,
    data: TrainData | MemmapTrainData,
    objective: Objective,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    validate: Callable[[TrainableModel], dict] | None = None,
    eval_every: int = 1,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    compile: bool | str = False,
    amp: bool = False,
    flush_denormal: bool = True,
) -> list[dict]:
    """Train ``model`` in place for ``epochs`` epochs; returns the per-epoch history.

    Each history row holds the epoch's mean of every logged loss term (``train_*``), the KL
    weight used, timings, and, every ``eval_every`` epochs and after the last, the metrics
    ``validate(model)`` returns (``val_*``; run on rank 0 under DDP). With ``checkpoint`` set, the
    full training state is saved atomically after every epoch; ``resume=True`` continues from it
    and reaches the same parameters as an uninterrupted run.

    ``compile``: ``torch.compile`` the method's forward and loss as one graph (True, or a mode of
    ``acceleration.COMPILE_MODES``); ``amp``: the forward in bf16 autocast on CUDA (ignored
    elsewhere); ``flush_denormal``: subnormal floats count as 0 on the CPU while training.
    """
    group = distributed.info()
    if group is not None:
        distributed.check_method(method)
    if method.needs_centers and objective.region is None:
        raise ShellVAEError(f"method {method.name!r} needs the feasible region: give Objective(region=...).")
    optimizer = adam(model, lr)
    order = torch.Generator().manual_seed(seed)  # the epochs' batch order (the same on every rank)
    inner = torch.Generator().manual_seed(seed + 1)  # extra batches for alternating methods' inner steps
    rank = 0 if group is None else group.rank
    torch.manual_seed(seed + rank)  # the reparameterisation noise
    n, device = len(data), data.index_device
    shard_size = batch_size if group is None else -(-batch_size // group.world_size)

    def draw_batch():
        return data.batch(torch.randint(n, (min(shard_size, n),), generator=inner).to(device))

    history: list[dict] = []
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        start, history = checkpoints.restore(checkpoint, model, optimizer, method, order, inner, rank)
    net = distributed.wrap(with_amp(model, amp), group)
    forward_loss = compiled(method.forward_loss, compile)
    main = group is None or group.is_main
    bar = tqdm(range(start, epochs), initial=start, total=epochs, disable=not progress or not main,
               desc=method.name, unit="epoch", leave=False)
    with flushing_denormals(flush_denormal):
        for index in bar:
            plan = EpochPlan(objective, method.schedule(objective.beta, Epoch(index, epochs)), forward_loss,
                             draw_batch)
            t0 = time.perf_counter()
            net.train()
            perm = torch.randperm(n, generator=order).to(device)
            logs = StepLogs(-(-n // batch_size))
            steps = (distributed.shard(perm[i:i + batch_size], group) for i in range(0, n, batch_size))
            for batch in data.batches(idx for idx in steps if idx is not None):
                logs.add(method.train_step(net, optimizer, batch, plan))
            row = {"epoch": index + 1, "kl_weight": plan.schedule.kl_weight, **epoch_means(logs, index)}
            check_parameters(model, index)
            row["train_time_s"] = time.perf_counter() - t0
            method.after_epoch(row)
            if validate is not None and ((index + 1) % eval_every == 0 or index + 1 == epochs):
                t1 = time.perf_counter()
                metrics = distributed.run_once(validate, model)
                row.update({f"val_{k}": v for k, v in metrics.items() if v is not None})
                row["eval_time_s"] = time.perf_counter() - t1
            history.append(row)
            if checkpoint is not None:
                checkpoints.save(checkpoint, model, optimizer, method, order, inner, index + 1, history)
            bar.set_postfix(loss=f"{row['train_loss']:.3g}", kl=f"{row.get('val_kl', row['train_kl']):.3f}",
                            au=row.get("val_active_units", "-"))
    bar.close()
    return history


class StepLogs:
    """Every step's logged terms, one row of a preallocated table each: no small tensor per term
    and step lives until the epoch's end (thousands of them, between the steps' large temporaries,
    kept the C heap from shrinking: +80 MB on a 1M-row epoch)."""

    def __init__(self, max_steps: int):
        self.max_steps, self.keys, self.table, self.count = max_steps, None, None, 0

    def add(self, logs: dict[str, torch.Tensor]) -> None:
        if self.table is None:
            self.keys = list(logs)
            first = next(iter(logs.values()))
            self.table = torch.empty(len(self.keys), self.max_steps, device=first.device)
        self.table[:, self.count] = torch.stack([logs[key].float() for key in self.keys])
        self.count += 1

    def values(self) -> torch.Tensor:
        """(terms, steps) of the steps taken."""
        return self.table[:, :self.count]


def epoch_means(logs: StepLogs, index: int) -> dict[str, float]:
    """Mean of each logged term over the epoch's steps (and over ranks under DDP); a non-finite
    value stops training (every rank sees the same reduced values, so all stop together)."""
    if not logs.count:
        raise ShellVAEError("no training step was taken: there are fewer training rows than processes.")
    values = distributed.all_reduce_mean(logs.values().clone()).cpu()  # one transfer for every term and step
    bad = ~torch.isfinite(values)
    if bad.any():
        step = int(bad.any(dim=0).nonzero()[0])  # the earliest bad step; its first bad term ('loss' comes last)
        k = int(bad[:, step].nonzero()[0])
        raise NonFiniteError(
            f"training diverged: term '{logs.keys[k]}' became non-finite at epoch {index + 1}, step {step + 1}. "
            "Parameters of the last finished epoch are kept in the checkpoint (if one was set). "
            "Try a smaller learning rate or penalty weights, or check the data scale."
        )
    return {f"train_{key}": float(v) for key, v in zip(logs.keys, values.mean(dim=1))}


def check_parameters(model: torch.nn.Module, index: int) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NonFiniteError(
                f"training diverged: parameter '{name}' became non-finite in epoch {index + 1} "
                "(a non-finite gradient). The checkpoint keeps the last finite epoch."
            )
