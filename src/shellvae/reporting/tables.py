"""Writing results: metrics JSON, history CSV and plain-text / Markdown tables."""

from __future__ import annotations

import csv
import io as _io

from shellvae.base import storage


def write_history_csv(path, history: list[dict]) -> None:
    """One row per epoch; columns are the union of keys (evaluation columns are empty on skipped epochs)."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    storage.write_text(path, buf.getvalue())


def _fmt(value, digits: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** -(digits - 1):  # small values keep `digits` significant digits
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def md_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table: a header row and rows of cells (anything ``str`` can show)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(rows: list[dict], columns: list[str], digits: int = 3) -> str:
    """A Markdown table of ``rows`` (dicts) restricted to ``columns`` (missing cells left blank)."""
    return md_table(columns, [[_fmt(row.get(c, ""), digits) for c in columns] for row in rows])


def load_metrics(paths) -> list[dict]:
    """metrics.json files (or folders holding one), in the given order."""
    import json
    from pathlib import Path

    from shellvae.errors import ShellVAEError

    rows = []
    for path in map(Path, paths):
        file = path / "metrics.json" if path.is_dir() else path
        if not file.is_file():
            raise ShellVAEError(f"{file}: no metrics.json here (give folders written by 'shellvae train').")
        try:
            row = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # (nested too deep)
            raise ShellVAEError(f"{file}: not a readable metrics.json ({type(exc).__name__}: {exc}).") from None
        if not isinstance(row, dict):
            raise ShellVAEError(f"{file}: holds a JSON {type(row).__name__}, not the object 'shellvae train' writes.")
        rows.append(row)
    return rows


# -- tables over seeds (shellvae reproduce) --------------------------------------------------------------
def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1; NaN for one value) and count of the non-missing values.

    Booleans count as 0/1, so the mean of ``certified`` is the share of seeds certified.
    """
    import math

    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not xs:
        return float("nan"), float("nan"), 0
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return mean, std, len(xs)


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """'m ± s' ('m' alone when s is undefined, '—' when m is). A mean that rounds to zero prints
    as 0 (not '-0.000': e.g. a collapsed model's KL, -1e-9 from float32 rounding)."""
    import math

    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = f"{mean:.{digits}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return text
    return f"{text} ± {std:.{digits}f}"


def aggregate_seeds(rows: list[dict], by: list[str], values: list[str]) -> list[dict]:
    """Group ``rows`` by the ``by`` columns (first-seen order); per value column give
    ``<v>_mean``, ``<v>_std`` and ``<v>_n`` over the group (one row per seed), plus ``n_seeds``."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in by), []).append(row)
    out = []
    for key, members in groups.items():
        agg = dict(zip(by, key))
        agg["n_seeds"] = len(members)
        for v in values:
            agg[f"{v}_mean"], agg[f"{v}_std"], agg[f"{v}_n"] = mean_std([m.get(v) for m in members])
        out.append(agg)
    return out


def write_csv(path, rows: list[dict], columns: list[str]) -> None:
    """Rows as CSV (atomic write); missing cells empty, floats at full precision."""
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text(path, buf.getvalue())
