"""Keep prose and result files in step: every cited number carries a marker that recomputes it.

A marker is an HTML comment right after the number it checks (invisible on the rendered page):

    `shell` keeps KL 0.455<!--= t1("moderate", "synthetic", "shell", "kl_mean") --> nats

The expression between ``<!--=`` and ``-->`` is evaluated with the lookups below (paths are
relative to the repository root); the number before the marker must equal its value rounded to the
digits the prose shows (``0.455`` checks to 3 decimals, ``67.5%`` to 1, ``1e-9`` to 1 significant
digit; thousands separators are ignored). A lookup that returns text (``"3/3"``) must match the
word before the marker exactly. A range's ends are marked one by one
(``0.15<!--= .. -->-0.75<!--= .. -->``), and a marker may use a generator expression over the lookups
(``max(abs(t1(c, ...)) for c in (...))``). So a rerun that moves a number fails ``tests/test_prose_numbers.py``
until the prose is updated, and a number whose file is gone fails too.

    python docs/check_numbers.py README.md docs/results.md     # lists every marker that does not hold
"""

from __future__ import annotations

import csv as _csv
import json as _json
import math
import re
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--=(.*?)-->", re.S)
#: the token a marker checks: a number (sign, separators, decimals, exponent, a trailing %) or k/n;
#: a hyphen right after a digit or a marker is a range's dash ("0.15<!--= .. -->-0.75"), not a sign
TOKEN = re.compile(r"((?:(?<![\d>])[-+−])?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?|\d+/\d+)\s*$")


class Lookups:
    """The functions a marker may call, reading files under ``root``."""

    def __init__(self, root: Path = ROOT):
        self.root = Path(root)

    @lru_cache(maxsize=None)
    def _rows(self, path: str) -> tuple:
        with open(self.root / path, newline="") as f:
            return tuple(_csv.DictReader(f))

    def _select(self, path: str, where: str) -> list:
        """The rows of a CSV file whose columns match ``where``: "k=v; k!=v" (equal / not equal)."""
        tests = []
        for part in (p.strip() for p in where.split(";")):
            if part:
                key, sep, value = part.partition("!=") if "!=" in part else part.partition("=")
                tests.append((key.strip(), sep == "=", value.strip()))
        return [r for r in self._rows(path) if all((r.get(k) == v) is eq for k, eq, v in tests)]

    def csv(self, path: str, where: str, column: str) -> float:
        """The ``column`` of the one row of a CSV file whose columns match ``where`` ("k=v; k=v")."""
        rows = self._select(path, where)
        if len(rows) != 1:
            raise LookupError(f"{path}: {len(rows)} rows match {where!r} (need exactly 1)")
        return float(rows[0][column])

    def values(self, path: str, where: str, column: str) -> list:
        """The ``column`` of every row matching ``where`` (empty cells left out), for ``min``/``max``
        over rows: ``max(values("docs/results/full/table1.csv", "dataset=mnist", "norm_satisfaction_mean"))``."""
        rows = self._select(path, where)
        if not rows:
            raise LookupError(f"{path}: no row matches {where!r}")
        return [float(r[column]) for r in rows if r[column] != ""]

    def t1(self, condition: str, dataset: str, label: str, column: str,
           path: str = "docs/results/full/table1.csv") -> float:
        """A value of the full protocol's Table 1 (one row per condition, dataset and row label)."""
        return self.csv(path, f"condition={condition}; dataset={dataset}; label={label}", column)

    def t2(self, condition: str, dataset: str, method: str, column: str,
           path: str = "docs/results/full/table2.csv") -> float:
        """A value of the full protocol's Table 2 (the paper's ablation: one row per variant)."""
        return self.csv(path, f"condition={condition}; dataset={dataset}; method={method}", column)

    def t1q(self, condition: str, dataset: str, method: str, column: str,
            path: str = "docs/results/table1.csv") -> float:
        """A value of the ``quick`` profile's Table 1 (one row per condition, dataset and method)."""
        return self.csv(path, f"condition={condition}; dataset={dataset}; method={method}", column)

    def json(self, path: str, key: str):
        """A value of a JSON file by dotted key (list indices as numbers): "runs.0.wall_seconds"."""
        value = _json.loads((self.root / path).read_text())
        for part in key.split("."):
            value = value[int(part)] if isinstance(value, list) else value[part]
        return value

    def txt(self, path: str, pattern: str):
        """The first group of the first match of ``pattern`` in a text file, as a number where it is one."""
        match = re.search(pattern, (self.root / path).read_text(), flags=re.M)
        if match is None:
            raise LookupError(f"{path}: no match for {pattern!r}")
        try:
            return float(match.group(1).replace(",", ""))
        except ValueError:
            return match.group(1)

    def share(self, condition: str, dataset: str, label: str, column: str = "certified_auto",
              path: str = "docs/results/full/table1.csv") -> str:
        """'k/n' seeds of a boolean Table 1 column (certified, certified_auto)."""
        return self.share_of(path, f"condition={condition}; dataset={dataset}; label={label}", column)

    def share_of(self, path: str, where: str, column: str = "certified") -> str:
        """'k/n' seeds of a boolean column (``<column>_mean`` times ``n_seeds``) of the rows matching
        ``where``; where several rows match they must all give the same k/n ("every point 3/3")."""
        shares = {f"{round(float(r[column + '_mean']) * int(float(r['n_seeds'])))}/{int(float(r['n_seeds']))}"
                  for r in self._select(path, where)}
        if len(shares) != 1:
            raise LookupError(f"{path}: the rows matching {where!r} give {sorted(shares) or 'no'} k/n")
        return shares.pop()

    @lru_cache(maxsize=None)
    def _cells(self, folder: str) -> tuple:
        return tuple(_json.loads(f.read_text()) for f in sorted((self.root / folder).glob("*.json")))

    def _matching_cells(self, where: str, folder: str) -> list:
        want = dict(part.split("=", 1) for part in where.split(";") if part.strip())
        want = {k.strip(): v.strip() for k, v in want.items()}
        found = [c for c in self._cells(folder) if all(str(c["cell"].get(k)) == v for k, v in want.items())]
        if not found:
            raise LookupError(f"{folder}: no cell matches {where!r}")
        return sorted(found, key=lambda c: c["cell"]["seed"])

    def cells(self, where: str, key: str, folder: str = "docs/results/full/cells") -> list:
        """The value at dotted ``key`` of every stored cell whose ``cell`` fields (experiment, dataset,
        condition, method, label, seed) match ``where``, in seed order; with ``min``/``max`` over
        seeds: ``min(cells("experiment=dynamics; dataset=synthetic; method=shell", "history.20.val_kl"))``
        (``history.20`` is epoch 21)."""
        out = []
        for c in self._matching_cells(where, folder):
            value = c
            for part in key.split("."):
                value = value[int(part)] if isinstance(value, list) else value[part]
            out.append(value)
        return out

    def last_epoch(self, where: str, key: str, folder: str = "docs/results/full/cells") -> list:
        """For every matching cell (seed order): the last epoch of its ``history`` whose ``key`` is
        above zero (0 where it never is): "norm satisfaction is 0 after epoch N"."""
        return [max([h["epoch"] for h in c["history"] if (h.get(key) or 0) > 0] or [0])
                for c in self._matching_cells(where, folder)]

    def default(self, name: str):
        """A default of the library (a stated setting, not a measurement): ``ShellVAE``'s parameter
        ``name``, or ``ClusterGeometry``'s where the estimator has none (``auto_margin``)."""
        from shellvae import ClusterGeometry, ShellVAE

        params = ShellVAE().get_params()
        return params[name] if name in params else getattr(ClusterGeometry(), name)

    def namespace(self) -> dict:
        return {"default": self.default, "csv": self.csv, "t1": self.t1, "t2": self.t2, "t1q": self.t1q, "values": self.values,
                "json": self.json, "txt": self.txt, "share": self.share, "share_of": self.share_of,
                "cells": self.cells, "last_epoch": self.last_epoch,
                "abs": abs, "round": round, "min": min, "max": max, "mean": lambda xs: sum(xs) / len(xs)}


def _matches(token: str, value) -> bool:
    if isinstance(value, str):
        return token == value
    text = token.replace(",", "").replace("−", "-")
    text = text.rstrip("%")
    shown = float(text)
    if "e" in text.lower():  # scientific: the mantissa's significant digits
        mantissa = text.lower().split("e")[0]
        digits = len(mantissa.replace("-", "").replace("+", "").replace(".", "")) - 1
        return f"{float(value):.{digits}e}" == f"{shown:.{digits}e}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    tolerance = 0.5 * 10 ** -decimals + 1e-9 * max(1.0, abs(shown))
    return math.isfinite(float(value)) and abs(float(value) - shown) <= tolerance


def check(text: str, lookups: Lookups | None = None) -> list[str]:
    """Every marker of ``text`` that does not hold, as 'line N: ...' messages (empty: all hold)."""
    lookups = lookups or Lookups()
    problems = []
    for match in MARKER.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = TOKEN.search(text[:match.start()])
        expr = match.group(1).strip()
        if before is None:
            problems.append(f"line {line}: no number right before the marker {expr!r}")
            continue
        try:
            # the lookups as globals, so that a generator expression (max(... for m in ...)) sees them
            value = eval(expr, {"__builtins__": {}, **lookups.namespace()})  # noqa: S307 (our own docs)
        except Exception as exc:  # noqa: BLE001 (any failure is a broken citation)
            problems.append(f"line {line}: {expr!r} fails: {type(exc).__name__}: {exc}")
            continue
        if not _matches(before.group(1), value):
            problems.append(f"line {line}: the prose says {before.group(1)} but {expr} = {value!r}")
    return problems


def unmarked(text: str) -> list[str]:
    """Measured-looking numbers (with decimals, or percentages) that carry no marker."""
    bare = re.compile(r"(?<![\w.])[-+−]?\d[\d,]*\.\d+(?:e[-+]?\d+)?%?(?![\w.])|(?<![\w.])\d+%")
    inside = [(m.start(), m.end()) for m in MARKER.finditer(text)]  # a marker's own expression is not prose
    out = []
    for m in bare.finditer(text):
        if any(a <= m.start() < b for a, b in inside):
            continue
        if not text[m.end():].startswith("<!--="):
            out.append(m.group(0))
    return out


def main(paths: list[str]) -> int:
    bad = 0
    for path in paths:
        for problem in check(Path(path).read_text()):
            print(f"{path}: {problem}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["README.md", "docs/results.md"]))
