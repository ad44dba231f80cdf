"""Compute a reproduction run has used so far: fit seconds per cell, by dataset and method.

    python scripts/cell_times.py docs/results/full

Reads every ``OUT/cells/*.json`` (one training each) of the current cell format and prints, per
dataset and method, the cells finished, their mean fit time and seconds per epoch (the loop's own
timer), and the total; cells of older formats (no longer used by the tables) are counted apart.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from shellvae.experiments.cells import CELL_FORMAT


def main(folder: str) -> None:
    groups = defaultdict(list)
    older = 0
    for path in sorted(Path(folder, "cells").glob("*.json")):
        record = json.loads(path.read_text())
        if record["config"].get("format") != CELL_FORMAT:
            older += 1
        elif record.get("status") == "ok":
            groups[(record["cell"]["dataset"], record["cell"]["method"])].append(record)
    total = 0.0
    print(f"{'dataset':14s} {'method':15s} {'cells':>5s} {'fit s (mean)':>12s} {'s/epoch (mean)':>14s}")
    for (dataset, method), records in sorted(groups.items()):
        fits = [r["fit_seconds"] for r in records]
        epochs = [r["seconds_per_epoch"] for r in records if r.get("seconds_per_epoch")]
        total += sum(fits)
        print(f"{dataset:14s} {method:15s} {len(records):5d} {sum(fits) / len(fits):12.0f} "
              f"{sum(epochs) / max(len(epochs), 1):14.2f}")
    print(f"total: {sum(len(r) for r in groups.values())} cells of format {CELL_FORMAT}, {total / 3600:.1f} core-hours "
          f"of fitting ({older} cells of older formats not counted)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/full")
