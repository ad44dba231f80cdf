"""The one registry of held-out metrics that both model families register into (docs/metrics.md).

A metric is registered where it is defined, with the family (or families) it is computed for:
``"vector"`` (``ShellVAE``, ``metrics.evaluate``; the default) or ``"sequence"`` (``SequenceVAE``,
``sequence_metrics.evaluate_sequences``), in one of two kinds:

- ``@register_per_row_metric(name, doc)``: a function of one ``metrics.EvalBatch`` giving a value per row;
  ``evaluate`` sums it over the held-out set and divides by the rows (``per="row"``) or by rows x features
  (``per="value"``) (vectors only);
- ``@register_whole_set_metric(name, doc, family=...)``: a function of the whole evaluated set (all latents, the
  per-row means already computed, the labels), for what is not a mean over rows (KL over the set, active
  units, mutual information, margins, and every sequence metric).

What both families mean alike is registered once and computed by one function on what both sets carry
(``metrics.LatentSet``: the posterior means and log-variances, the labels): ``kl``, ``mutual_info``, ``active_units``,
``probe_accuracy``, ``chance_accuracy``. A family lists a metric registered for another with
``METRICS.include(family, *names)``, at the place it reports it. A name is unique within a family; ``nll_iw``
and ``elbo`` are each family's own estimator (Gaussian rows, categorical sequences).
``needs``: the set's inputs a metric needs (``"logvar"``, ``"y"``, ...); without them ``evaluate`` reports None
and ``evaluate_sequences`` leaves the key out.

Each family's evaluation returns ``{name: value}`` in that family's registration order; ``metrics_for(family)``
lists them with a one-line description, and the result tables derive their columns from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from shellvae.base.deprecation import deprecated_function
from shellvae.base.registry import Registry
from shellvae.errors import ShellVAEError

#: the model families a metric is registered for
FAMILIES = ("vector", "sequence")


@dataclass(frozen=True)
class Metric:
    name: str
    doc: str
    compute: Callable
    kind: str  # "per_row" or "whole_set"
    per: str = "row"  # per_row metrics: mean over rows ("row") or over rows x features ("value")
    needs: tuple[str, ...] = ()  # the evaluated set's inputs it needs (module docstring)


class MetricRegistry:
    """Every family's metrics, each family's in its registration order (a ``Registry`` per family). A metric of
    several families is one entry listed in each. ``METRICS[name]`` is the metric of that name (one object
    whichever family lists it; ``METRICS[family, name]`` where two families have their own); iterating gives
    every name once."""

    def __init__(self):
        self.families = {family: Registry(f"{family} metric") for family in FAMILIES}

    def add(self, metric: Metric, family: str | tuple[str, ...] = "vector") -> Metric:
        for f in (family,) if isinstance(family, str) else family:
            self.family(f).add(metric.name, metric)
        return metric

    def include(self, family: str, *names: str) -> None:
        """List in ``family``, here in its order, metrics registered for another family: one function for both."""
        for name in names:
            self.family(family).add(name, self[name])

    def family(self, family: str) -> Registry[Metric]:
        if family not in self.families:
            raise ShellVAEError(f"unknown model family {family!r}; available: {', '.join(FAMILIES)}.")
        return self.families[family]

    def families_of(self, name: str) -> list[str]:
        return [f for f, registry in self.families.items() if name in registry]

    def __getitem__(self, key: str | tuple[str, str]) -> Metric:
        if isinstance(key, tuple):
            return self.family(key[0])[key[1]]
        found = {id(r.get(key)): r.get(key) for r in self.families.values() if key in r}
        if len(found) > 1:
            raise ShellVAEError(f"the families {self.families_of(key)} each have their own {key!r}: "
                                f"ask for METRICS[family, {key!r}].")
        if not found:
            raise ShellVAEError(f"unknown metric {key!r}; available: {', '.join(self)}.")
        return found.popitem()[1]

    def __contains__(self, name: object) -> bool:
        return any(name in r for r in self.families.values())

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for r in self.families.values() for name in r))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def remove(self, name: str) -> None:
        """Take ``name`` out of every family that lists it (e.g. after an example registered a throwaway metric)."""
        for registry in self.families.values():
            if name in registry:
                registry.remove(name)

    def __repr__(self) -> str:
        return "MetricRegistry(" + "; ".join(f"{f}: {', '.join(r)}" for f, r in self.families.items()) + ")"


METRICS = MetricRegistry()


def metrics_for(family: str) -> list[Metric]:
    """The metrics ``family`` reports (``"vector"`` or ``"sequence"``), in the order its evaluation returns them;
    each with its one-line ``doc``."""
    return list(METRICS.family(family).values())


def register_per_row_metric(name: str, doc: str, per: str = "row"):
    """Register ``fn(batch: EvalBatch) -> (B,) tensor`` as the held-out mean ``name`` of the vector family."""
    def register(fn):
        METRICS.add(Metric(name, doc, fn, "per_row", per))
        return fn
    return register


def register_whole_set_metric(name: str, doc: str, family: str | tuple[str, ...] = "vector",
                              needs: tuple[str, ...] = ()):
    """Register ``fn(s) -> value`` as the held-out metric ``name`` of ``family`` (or families): ``s`` an ``EvalSet``
    (vectors), a ``sequence_metrics.SequenceEvalSet`` (sequences), or for both only what a ``LatentSet`` has.
    ``needs``: attributes of ``s`` the metric needs (without them: None for vectors, left out for sequences)."""
    def register(fn):
        METRICS.add(Metric(name, doc, fn, "whole_set", needs=tuple(needs)), family)
        return fn
    return register


def has_inputs(s, metric: Metric) -> bool:
    """Whether the evaluated set ``s`` has every input ``metric`` needs."""
    return all(getattr(s, need) is not None for need in metric.needs)


#: the released names of the two metric decorators
per_row = deprecated_function("shellvae.per_row", register_per_row_metric)
whole_set = deprecated_function("shellvae.whole_set", register_whole_set_metric)
