"""Paired comparisons over seeds: is a difference between two methods larger than its noise?

Two rows of a table (say BN-VAE and `shell_lagrange` on one dataset and condition) were trained
with the same seeds and scored on the same held-out rows, so their per-seed values pair up: the
difference d_s = a_s - b_s removes what the seed does to both (K-means, initialisation, batch
order). Its mean over seeds, with standard error std(d, ddof 1) / sqrt(n), says whether the
ranking is real: a difference within ``TIE_SE`` standard errors of zero is a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: a difference is a tie unless it is more than this many paired standard errors from zero
TIE_SE = 2.0


@dataclass(frozen=True)
class Paired:
    """a - b over the seeds both have: mean, standard error (NaN for one seed) and seed count."""

    mean: float
    se: float
    n: int

    @property
    def separated(self) -> bool:
        """More than ``TIE_SE`` standard errors from zero (never with fewer than 2 seeds)."""
        return self.n >= 2 and abs(self.mean) > TIE_SE * self.se

    def __str__(self) -> str:
        se = "n/a" if math.isnan(self.se) else f"{self.se:.3f}"
        return f"{self.mean:+.3f} ± {se} (paired s.e., {self.n} seed{'s' if self.n != 1 else ''})"


def paired(a: dict, b: dict) -> Paired | None:
    """The paired difference of two {seed: value} maps over their common seeds (None without any)."""
    seeds = sorted(s for s in a.keys() & b.keys() if _finite(a[s]) and _finite(b[s]))
    if not seeds:
        return None
    d = [float(a[s]) - float(b[s]) for s in seeds]
    mean = sum(d) / len(d)
    if len(d) < 2:
        return Paired(mean, float("nan"), 1)
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
    return Paired(mean, math.sqrt(var / len(d)), len(d))


def by_seed(records: list[dict], value: str) -> dict:
    """{seed: record[value]} of finished records (a diverged seed has no value to pair)."""
    return {r["cell"]["seed"]: r.get(value) for r in records if r.get("status") == "ok"}


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)
