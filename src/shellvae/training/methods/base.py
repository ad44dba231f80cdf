"""What every method shares: the loss's constants, the epoch's schedule, a batch, and ``Method``.

A method decides how the terms of ``objectives`` are weighted or scheduled, nothing else. Once
per epoch the training loop asks it for the epoch's ``Schedule`` (a value: the KL weight, whether
the constraints are on) and hands every step an ``EpochPlan``: the run's ``Objective``, that
schedule, the forward-and-loss function to call (``Method.forward_loss``, or its compiled
version) and, for methods with inner steps, a way to draw more batches. Nothing is attached to
the method or the model from outside.

Hyperparameters are the fields of each method's dataclass, declared with ``hyperparameter``
(type from the annotation, range in the field): ``get_method`` and ``-p KEY=VALUE`` convert and
check them before any data is read.
"""

from __future__ import annotations

import math
import numbers
import typing
import abc
from dataclasses import dataclass, field, fields
from typing import Callable, ClassVar

import torch

from shellvae.errors import ShellVAEError
from shellvae.core.contract import TrainableModel, VAEOutput
from shellvae.core.objectives import gaussian_nll, kl_divergence


@dataclass(frozen=True)
class Objective:
    """The constants of a run's loss: decoder variance sigma^2, KL weight beta, and (for methods
    that use it) the fitted ``FeasibleRegion`` with W, delta, the shell radii and the penalties.

    ``reconstruction``: the reconstruction term -log p(x|z) as a batch mean, from the batch's rows
    and the model's output; None is the Gaussian decoder of fixed variance ``sigma2``
    (``objectives.gaussian_nll``). Another likelihood (e.g. a categorical decoder over tokens)
    plugs in here, and every method works with it unchanged.
    """

    sigma2: float | None
    beta: float = 1.0
    region: object | None = None  # a region.FeasibleRegion (methods that need_centers)
    reconstruction: Callable[[torch.Tensor, VAEOutput], torch.Tensor] | None = None

    def nll(self, x: torch.Tensor, out: VAEOutput) -> torch.Tensor:
        """-log p(x|z), batch mean."""
        if self.reconstruction is not None:
            return self.reconstruction(x, out)
        return gaussian_nll(x, out.xhat, self.sigma2)


@dataclass(frozen=True)
class Epoch:
    """Where training is: ``index`` (0-based) of ``total`` epochs."""

    index: int
    total: int

    @property
    def progress(self) -> float:
        """0 at the first epoch, 1 at the last."""
        return self.index / max(self.total - 1, 1)


@dataclass(frozen=True)
class Schedule:
    """What the loss takes from where training is, fixed for one epoch. It holds no epoch number,
    so a compiled loss never gets one as a graph input (with CUDA graphs: a recording per epoch)."""

    kl_weight: float
    constraints_on: bool = True


@dataclass
class Batch:
    x: torch.Tensor  # (B, D) shell data
    centers: torch.Tensor | None = None  # (B, D) each sample's cluster centre mu_c(i)


ForwardLoss = Callable[[TrainableModel, Batch, Objective, Schedule], tuple[VAEOutput, torch.Tensor, dict]]


@dataclass(frozen=True)
class EpochPlan:
    """What one epoch's steps get from the loop."""

    objective: Objective
    schedule: Schedule
    forward_loss: ForwardLoss  # the method's own, or its torch.compile'd version
    draw_batch: Callable[[], Batch] | None = None  # a fresh random training batch (inner steps)

    def loss(self, model: TrainableModel, batch: Batch) -> tuple[VAEOutput, torch.Tensor, dict]:
        return self.forward_loss(model, batch, self.objective, self.schedule)


def hyperparameter(default, *, low: float | None = None, high: float | None = None, low_open: bool = False,
                   high_open: bool = False, doc: str = ""):
    """A method hyperparameter: a dataclass field whose type is its annotation and whose range is
    [low, high] (open ends with ``low_open`` / ``high_open``); ``doc`` says what it does."""
    return field(default=default, metadata={"low": low, "high": high, "low_open": low_open, "high_open": high_open,
                                            "doc": doc})


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class Method(abc.ABC):
    """The base of every training method, abstract: a method is a registered subclass with its own
    ``name``. What it inherits is the negative ELBO with a fixed KL weight beta (``Vanilla`` adds
    nothing to it); a subclass overrides ``kl_weight`` / ``kl_term`` / ``extra_terms`` / ``train_step``.

    Capabilities (class attributes, read by the loop, the estimator and the experiments):
    ``needs_centers`` (batches carry each row's cluster centre, so the method needs a fitted
    feasible region), ``ddp`` ("exact", "approximate" or a reason it is not supported), and
    ``paper_protocol`` (hyperparameters the paper's experiments use for it).
    """

    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    needs_centers: ClassVar[bool] = False
    ddp: ClassVar[str] = "exact"
    paper_protocol: ClassVar[dict] = {}

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The registry name, a class attribute of each method (``name = "vanilla"``)."""

    def __post_init__(self):
        self.check_params()

    # -- hyperparameters ------------------------------------------------------------------------
    @classmethod
    def hyperparameters(cls) -> dict[str, tuple[type, dict]]:
        """name -> (type, range metadata) of every hyperparameter, in declaration order."""
        if not hasattr(cls, "__dataclass_fields__"):
            return {}
        hints = typing.get_type_hints(cls)
        return {f.name: (hints[f.name], dict(f.metadata)) for f in fields(cls)}

    @classmethod
    def convert(cls, key: str, value):
        """``value`` (e.g. the text of ``-p KEY=VALUE``) as hyperparameter ``key``'s type, range-checked."""
        spec = cls.hyperparameters()
        if key not in spec:
            allowed = ", ".join(spec) or "none"
            raise ShellVAEError(f"bad hyperparameters for method {cls.name!r}: it has no hyperparameter {key!r}. "
                                f"Allowed: {allowed}.")
        kind, meta = spec[key]
        expected = {bool: "true or false", int: "an integer", float: "a number"}[kind]
        converted = _convert(value, kind)
        if converted is None:
            raise ShellVAEError(f"method {cls.name!r}: {key}={value!r} is not {expected}{_range_text(meta)}.")
        if not _in_range(converted, meta):
            raise ShellVAEError(f"method {cls.name!r}: {key}={value!r} is out of range: need {expected}"
                                f"{_range_text(meta)}.")
        return converted

    def check_params(self) -> None:
        for key in self.hyperparameters():
            setattr(self, key, self.convert(key, getattr(self, key)))

    def params(self) -> dict:
        return {key: getattr(self, key) for key in self.hyperparameters()}

    # -- the loss -------------------------------------------------------------------------------
    def prepare(self, model: TrainableModel) -> TrainableModel:
        """Adapt a freshly built model before training (e.g. BN-VAE adds a batch norm on mu). Must be
        deterministic: it also runs when a saved model is loaded, before its weights are restored."""
        return model

    def check_region(self, region) -> None:
        """Refuse, before training, a feasible region this method cannot use (none by default; the
        estimators call it once the region is fitted)."""

    def kl_weight(self, beta: float, epoch: Epoch) -> float:
        return beta

    def schedule(self, beta: float, epoch: Epoch) -> Schedule:
        """The epoch's schedule (the loop evaluates it once per epoch, outside compiled code)."""
        return Schedule(kl_weight=self.kl_weight(beta, epoch))

    def kl_term(self, out: VAEOutput, kl: torch.Tensor) -> torch.Tensor:
        """The KL term the loss weights; ``kl`` is the plain KL. Free bits floors it per dimension."""
        return kl

    def extra_terms(self, out: VAEOutput, batch: Batch, objective: Objective,
                    schedule: Schedule) -> dict[str, tuple[float, torch.Tensor]]:
        """Additional terms as {name: (weight, value)}; weight 0 only logs the value. None by default."""
        return {}

    def loss(self, out: VAEOutput, batch: Batch, objective: Objective,
             schedule: Schedule) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        nll = objective.nll(batch.x, out)
        kl = kl_divergence(out.mu, out.logvar)
        kl_used = self.kl_term(out, kl)
        total = nll + schedule.kl_weight * kl_used
        logs = {"nll": nll, "kl": kl}  # always the plain KL, whatever the loss uses
        if kl_used is not kl:
            logs["kl_term"] = kl_used
        for name, (weight, value) in self.extra_terms(out, batch, objective, schedule).items():
            if weight:
                total = torch.add(total, value, alpha=weight)
            logs[name] = value
        logs["loss"] = total
        return total, logs

    def forward_loss(self, model: TrainableModel, batch: Batch, objective: Objective,
                     schedule: Schedule) -> tuple[VAEOutput, torch.Tensor, dict[str, torch.Tensor]]:
        """The model's output on the batch, the loss and its logged terms: the part of a step that
        ``compile=True`` compiles as one graph (forward and every loss term together)."""
        out = model(batch.x)
        loss, logs = self.loss(out, batch, objective, schedule)
        return out, loss, logs

    # -- training -------------------------------------------------------------------------------
    def train_step(self, model: TrainableModel, optimizer: torch.optim.Optimizer, batch: Batch,
                   plan: EpochPlan) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached logs. Alternating methods override this."""
        optimizer.zero_grad(set_to_none=True)
        _, loss, logs = plan.loss(model, batch)
        loss.backward()
        optimizer.step()
        return {k: v.detach() for k, v in logs.items()}

    def after_epoch(self, epoch_logs: dict[str, float]) -> None:
        """Hook for state updated once an epoch (modes) from the epoch's mean logs."""

    def state_dict(self) -> dict:
        """Learned state that a checkpoint must keep (e.g. a Lagrange multiplier)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _convert(value, kind: type):
    """``value`` as ``kind`` (bool, int or float), or None if it is not one. Text is parsed;
    a bool is never taken for a number, nor a fractional number for an integer."""
    if isinstance(value, str):
        text = value.strip().lower()
        if kind is bool:
            return _BOOL_WORDS.get(text)
        try:
            value = float(text)  # "5", "5.0" and "1e3" all name numbers; an int must then be whole
        except ValueError:
            return None
    if type(value).__name__ in ("bool", "bool_"):  # Python's and NumPy's booleans
        return bool(value) if kind is bool else None
    if kind is bool or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return None
    if kind is int:
        return int(value) if value == int(value) else None
    return float(value)


def _in_range(value, meta: dict) -> bool:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value <= low if meta.get("low_open") else value < low):
        return False
    return high is None or (value < high if meta.get("high_open") else value <= high)


def _range_text(meta: dict) -> str:
    low, high = meta.get("low"), meta.get("high")
    if low is None and high is None:
        return ""
    left = "" if low is None else f"{'>' if meta.get('low_open') else '>='} {low:g}"
    right = "" if high is None else f"{'<' if meta.get('high_open') else '<='} {high:g}"
    return " " + " and ".join(p for p in (left, right) if p)
