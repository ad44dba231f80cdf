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

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from shellvae.training import checkpoint as checkpoints
from shellvae.base import distributed
from shellvae.training.acceleration import adam, compiled, flushing_denormals, with_amp
from shellvae.training.batches import MemmapTrainData, TrainData
from shellvae.errors import NonFiniteError, ShellVAEError
from shellvae.training.methods import Epoch, EpochPlan, Method, Objective, Schedule
from shellvae.core.contract import TrainableModel


@dataclass(frozen=True)
class EarlyStopping:
    """Train until a held-out quantity stops improving, then keep the best weights.

    ``monitor``: a key of the metrics ``validate(model)`` returns, lower is better (e.g. a held-out
    NLL). A validation that does not improve the best value by more than ``min_delta`` plus
    ``rel_delta`` x |best| is a bad one (a run still creeping down by less has converged for any use
    that cannot tell such differences apart). Every ``lr_patience`` bad validations in a row, the
    learning rate is multiplied by ``lr_factor`` (halve-on-plateau: a smaller step often finds the
    improvement a large one overshoots); after ``patience`` in a row, training stops. Validations
    while the method still warms up (a KL weight below the one its schedule ends with, a shell
    method's stage one) count no bad streak. The best validation's model weights are then restored (the method's own state, e.g.
    a multiplier, is not: it only steers training). ``patience`` and ``lr_patience`` count
    validations, one every ``eval_every`` epochs.
    """

    monitor: str = "nll"
    patience: int = 3
    lr_patience: int | None = 1
    lr_factor: float = 0.5
    min_delta: float = 0.0
    rel_delta: float = 0.0

    def __post_init__(self):
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise ShellVAEError(f"patience={self.patience!r}: give the number of validations without improvement "
                                "before training stops, an integer >= 1.")
        if self.lr_patience is not None and (isinstance(self.lr_patience, bool)
                                             or not isinstance(self.lr_patience, int) or self.lr_patience < 1):
            raise ShellVAEError(f"lr_patience={self.lr_patience!r}: an integer >= 1, or None for a fixed step.")
        if not 0 < self.lr_factor <= 1:
            raise ShellVAEError(f"lr_factor={self.lr_factor!r}: the step's multiplier on a plateau, in (0, 1].")


def settled(schedule: Schedule, final: Schedule) -> bool:
    """Whether an epoch's schedule has reached the one the run ends with (its KL weight, its constraints)."""
    return schedule.kl_weight >= final.kl_weight and (schedule.constraints_on or not final.constraints_on)


class _Plateau:
    """``EarlyStopping``'s state over one run: the best value, its epoch and weights, the bad streak."""

    def __init__(self, rule: EarlyStopping):
        self.rule, self.best, self.best_epoch, self.best_state, self.bad = rule, math.inf, None, None, 0

    def update(self, row: dict, model: torch.nn.Module, optimizer, counting: bool = True) -> bool:
        """Record one validated epoch's row; True when training should stop. ``counting`` False (the
        method is still warming up) records an improvement but counts no bad validation."""
        key = f"val_{self.rule.monitor}"
        if key not in row:
            raise ShellVAEError(f"early stopping monitors {self.rule.monitor!r}, which validate(model) did not "
                                f"return (it returned {', '.join(k[4:] for k in row if k.startswith('val_'))}).")
        value = float(row[key])
        slack = self.rule.min_delta + (self.rule.rel_delta * abs(self.best) if math.isfinite(self.best) else 0.0)
        if value < self.best - slack:
            self.best, self.best_epoch, self.bad = value, row["epoch"], 0
            # a copy, not a view: the next steps update the parameters in place
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        if not counting:
            return False
        self.bad += 1
        if self.rule.lr_patience is not None and self.bad % self.rule.lr_patience == 0:
            for group in optimizer.param_groups:
                group["lr"] *= self.rule.lr_factor
        return self.bad >= self.rule.patience

    def restore(self, model: torch.nn.Module, history: list[dict]) -> None:
        """Put the best epoch's weights back and mark its row (``best``: True; other validated rows False)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        for row in history:
            if f"val_{self.rule.monitor}" in row:
                row["best"] = row["epoch"] == self.best_epoch


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
    early_stopping: EarlyStopping | None = None,
    desc: str | None = None,
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

    ``early_stopping``: an ``EarlyStopping`` rule on a quantity ``validate`` returns; then ``epochs``
    is the maximum, the learning rate drops on a plateau (each row records its ``lr``), training
    stops when the quantity stops improving, the best validation's weights are restored, and every
    validated row says whether it was the ``best``. ``desc``: the progress bar's label (the method's
    name by default).
    """
    if early_stopping is not None:
        if validate is None:
            raise ShellVAEError("early stopping needs held-out data: give validate=, a callable returning the "
                                f"monitored {early_stopping.monitor!r} of the model.")
        if checkpoint is not None:
            # the best weights live in memory only; a resumed run would restore weights it never saw
            raise ShellVAEError("early stopping cannot be combined with checkpoint= (resuming would lose the best "
                                "weights): give one or the other.")
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
               desc=desc or method.name, unit="epoch", leave=False)
    plateau = None if early_stopping is None else _Plateau(early_stopping)
    final = method.schedule(objective.beta, Epoch(epochs - 1, epochs))  # where the method's schedule ends
    stop = False
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
            if plateau is not None:
                row["lr"] = optimizer.param_groups[0]["lr"]  # the step this epoch took
            if validate is not None and ((index + 1) % eval_every == 0 or index + 1 == epochs):
                t1 = time.perf_counter()
                metrics = distributed.run_once(validate, model)  # every rank gets rank 0's: all stop together
                row.update({f"val_{k}": v for k, v in metrics.items() if v is not None})
                row["eval_time_s"] = time.perf_counter() - t1
                if plateau is not None:
                    # a KL weight still ramping up to where it ends (kl_anneal, cyclical) or constraints still
                    # off (the shell methods' stage one) makes a worse held-out bound expected, not a plateau;
                    # a constant weight below beta (beta-VAE's kl_beta < 1) is where it ends, so it counts
                    stop = plateau.update(row, model, optimizer, counting=settled(plan.schedule, final))
            history.append(row)
            if checkpoint is not None:
                checkpoints.save(checkpoint, model, optimizer, method, order, inner, index + 1, history)
            bar.set_postfix(loss=f"{row['train_loss']:.3g}", kl=f"{row.get('val_kl', row['train_kl']):.3f}",
                            au=row.get("val_active_units", "-"))
            if stop:
                break
    bar.close()
    if plateau is not None:
        plateau.restore(model, history)
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
