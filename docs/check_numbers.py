"""Keep prose and result files in step: every cited number carries a marker that recomputes it.

A marker is an HTML comment right after the number it checks (invisible on the rendered page):

    `shell` keeps KL 0.455<!--= t1("moderate", "synthetic", "shell", "kl_mean") --> nats

The expression between ``<!--=`` and ``-->`` is evaluated with the lookups below (paths are
relative to the repository root); the number before the marker must equal its value rounded to the
digits the prose shows (``0.455`` checks to 3 decimals, ``67.5%`` to 1, ``1e-9`` to 1 significant
digit; thousands separators are ignored). A lookup that returns text (``"3/3"``) must match the
word before the marker exactly. So a rerun that moves a number fails ``tests/test_prose_numbers.py``
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
#: the token a marker checks: a number (sign, separators, decimals, exponent, a trailing %) or k/n
TOKEN = re.compile(r"([-+−]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?|\d+/\d+)\s*$")


class Lookups:
    """The functions a marker may call, reading files under ``root``."""

    def __init__(self, root: Path = ROOT):
        self.root = Path(root)

    @lru_cache(maxsize=None)
    def _rows(self, path: str) -> tuple:
        with open(self.root / path, newline="") as f:
            return tuple(_csv.DictReader(f))

    def csv(self, path: str, where: str, column: str) -> float:
        """The ``column`` of the one row of a CSV file whose columns match ``where`` ("k=v; k=v")."""
        want = dict(part.split("=", 1) for part in where.split(";") if part.strip())
        want = {k.strip(): v.strip() for k, v in want.items()}
        rows = [r for r in self._rows(path) if all(r.get(k) == v for k, v in want.items())]
        if len(rows) != 1:
            raise LookupError(f"{path}: {len(rows)} rows match {where!r} (need exactly 1)")
        return float(rows[0][column])

    def t1(self, condition: str, dataset: str, label: str, column: str,
           path: str = "docs/results/full/table1.csv") -> float:
        """A value of the full protocol's Table 1 (one row per condition, dataset and row label)."""
        return self.csv(path, f"condition={condition}; dataset={dataset}; label={label}", column)

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
        mean = self.t1(condition, dataset, label, f"{column}_mean", path)
        n = int(self.t1(condition, dataset, label, "n_seeds", path))
        return f"{round(mean * n)}/{n}"

    def namespace(self) -> dict:
        return {"csv": self.csv, "t1": self.t1, "json": self.json, "txt": self.txt, "share": self.share,
                "abs": abs, "round": round, "min": min, "max": max}


def _matches(token: str, value) -> bool:
    if isinstance(value, str):
        return token == value
    text = token.replace(",", "").replace("−", "-")
    percent = text.endswith("%")
    text = text.rstrip("%")
    shown = float(text)
    if "e" in text.lower():  # scientific: the mantissa's significant digits
        mantissa = text.lower().split("e")[0]
        digits = len(mantissa.replace("-", "").replace("+", "").replace(".", "")) - 1
        return f"{float(value):.{digits}e}" == f"{shown:.{digits}e}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    del percent  # a percentage is compared as written: the marker's expression scales it
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
            value = eval(expr, {"__builtins__": {}}, lookups.namespace())  # noqa: S307 (our own docs)
        except Exception as exc:  # noqa: BLE001 (any failure is a broken citation)
            problems.append(f"line {line}: {expr!r} fails: {type(exc).__name__}: {exc}")
            continue
        if not _matches(before.group(1), value):
            problems.append(f"line {line}: the prose says {before.group(1)} but {expr} = {value!r}")
    return problems


def unmarked(text: str) -> list[str]:
    """Measured-looking numbers (with decimals, or percentages) that carry no marker."""
    bare = re.compile(r"(?<![\w.])[-+−]?\d[\d,]*\.\d+(?:e[-+]?\d+)?%?(?![\w.])|(?<![\w.])\d+%")
    out = []
    for m in bare.finditer(text):
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
