"""Did retraining in a new cell format reproduce the old cells? Field by field, from git history.

    python scripts/compare_cell_formats.py docs/results/full --old 2 --new 3

A cell format change (``experiments/cells.py``: ``CELL_FORMAT``) changes every cell's key, so a
reproduction retrains its cells; the superseded files are then deleted from the repository. This
reads each deleted cell of format ``--old`` back from the commit before its deletion, pairs it
with the stored cell of format ``--new`` whose configuration is the same apart from the format,
and prints, per dataset, how many pairs agree exactly on the metrics that both formats record.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections import Counter
from pathlib import Path

#: the results both formats hold, compared exactly (as stored: 7 significant digits), with the status
FIELDS = ("kl", "nll_iw", "elbo", "l_clu", "recon_mse", "active_units", "mutual_info", "W", "delta")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def deleted_cells(folder: str) -> list[dict]:
    """Every cell file deleted from ``folder``/cells in the history, read from its last version."""
    records, commit = [], None
    for line in git("log", "--diff-filter=D", "--name-only", "--format=COMMIT %H", "--", f"{folder}/cells").splitlines():
        if line.startswith("COMMIT "):
            commit = line.split()[1]
        elif line.endswith(".json"):
            records.append(json.loads(git("show", f"{commit}^:{line}")))
    return records


def without_format(config: dict) -> str:
    return json.dumps({k: v for k, v in config.items() if k != "format"}, sort_keys=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="a reproduction folder committed in this repository, e.g. docs/results/full")
    ap.add_argument("--old", type=int, required=True, help="the superseded cell format")
    ap.add_argument("--new", type=int, required=True, help="the format that retrained them")
    args = ap.parse_args()
    new = {}
    for path in Path(args.folder, "cells").glob("*.json"):
        record = json.loads(path.read_text())
        if record["config"].get("format") == args.new:
            new[without_format(record["config"])] = record
    old = [r for r in deleted_cells(args.folder) if r["config"].get("format") == args.old]
    pairs, same, unmatched, differing = Counter(), Counter(), Counter(), []
    for record in old:
        dataset = record["cell"]["dataset"]
        match = new.get(without_format(record["config"]))
        if match is None:
            unmatched[dataset] += 1
            continue
        pairs[dataset] += 1
        diff = [f for f in ("status", *FIELDS) if record.get(f) != match.get(f)]
        if diff:
            differing.append((record["cell"], diff))
        else:
            same[dataset] += 1
    print(f"format {args.old} cells deleted from {args.folder}/cells: {len(old)}; paired with a format {args.new} "
          f"retraining: {sum(pairs.values())}")
    for dataset in sorted(set(pairs) | set(unmatched)):
        print(f"  {dataset}: {pairs[dataset]} pairs, {same[dataset]} identical on {', '.join(FIELDS)}; "
              f"{unmatched[dataset]} without a retraining yet")
    for cell, diff in differing:
        print(f"  differs: {cell['dataset']} {cell['condition']} {cell['method']} seed {cell['seed']}: {', '.join(diff)}")


if __name__ == "__main__":
    main()
