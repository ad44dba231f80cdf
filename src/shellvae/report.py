"""Writing results: metrics JSON, history CSV and plain-text / Markdown tables."""

from __future__ import annotations

import csv
import io as _io

from shellvae import io


def write_history_csv(path, history: list[dict]) -> None:
    """One row per epoch; columns are the union of keys (evaluation columns are empty on skipped epochs)."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    io.write_text(path, buf.getvalue())


def _fmt(value, digits: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str], digits: int = 3) -> str:
    """A Markdown table of ``rows`` restricted to ``columns`` (missing cells left blank)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, ""), digits) for c in columns) + " |")
    return "\n".join(lines)


#: the columns of ``shellvae summarize``: what a reader needs to judge collapse and the certificate
SUMMARY_COLUMNS = ["dataset", "method", "n_clusters", "W", "delta_collapse", "feasible", "kl", "active_units",
                   "mutual_info", "recon_mse", "l_clu", "eps", "cluster_accuracy", "certified", "epochs",
                   "fit_seconds"]


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
        rows.append(json.loads(file.read_text()))
    return rows
