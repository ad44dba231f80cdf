"""Learning curve of the certificate's floor (the z-free language model) on the generated corpus.

    python scripts/lm_learning_curve.py --out docs/results

writes docs/results/lm_learning_curve.md (the command, the table, what limits the floor),
lm_learning_curve.csv (one row per epoch of every run) and lm_learning_curve.json. Each run is kept
as a JSON cell under --cells, so an interrupted run resumes. One torch thread.

Why: an autoregressive model can infer a sequence's topic from its prefix, so a converged z-free
language model approaches the oracle's marginal NLL (-log p(x) under the true model). A floor far
above the oracle is a low bar for the certificate and leaves every method far from the oracle.
This script tells whether training sequences, epochs or the network's size keep it there.

Protocol: each setting of scripts/sequence_results.py is generated once (seed 0) with the largest
training size and 1,000 held-out sequences; smaller training sets are prefixes of the largest one,
so every run is scored on the same held-out sequences. Each run trains the floor by its own recipe
(``FLOOR_RECIPE``: no word dropout, Adam at its step halved on every epoch without improvement,
early stopping on the exact NLL of a seeded 10% of its training rows, best weights kept), exactly
as ``SequenceVAE.fit`` trains it, and additionally records the held-out NLL after every epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from shellvae.base import storage
from shellvae.core.sequence_model import language_model, token_nll
from shellvae.data.sequences import make_topic_corpus
from shellvae.estimators.sequence_floor import FLOOR_RECIPE, VALIDATION_SHARE, hold_out
from shellvae.evaluation.sequence_metrics import lm_nll
from shellvae.training.batches import TrainData
from shellvae.training.loop import EarlyStopping, train
from shellvae.training.methods import Objective, get_method

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sequence_results import MODEL, SETTINGS  # (the table's corpus settings and network)

N_TEST, CORPUS_SEED, SEED = 1_000, 0, 0
SIZES = (1_000, 2_500, 5_000, 10_000, 20_000)
COLUMNS = ["setting", "n_train", "hidden_dim", "epoch", "lr", "train_loss", "val_nll", "test_nll", "test_minus_oracle",
           "best", "train_time_s"]


def run_floor(X_train: np.ndarray, X_test: np.ndarray, vocab_size: int, hidden_dim: int) -> dict:
    """One floor trained by ``FLOOR_RECIPE`` on X_train (the same calls as ``sequence_floor.train_floor``), its
    held-out NLL on X_test after every epoch, and at the end (the best epoch's weights)."""
    fit_rows, stop_rows = hold_out(X_train, VALIDATION_SHARE, SEED)
    torch.manual_seed(SEED)
    lm = language_model(vocab_size, X_train.shape[1], MODEL["latent_dim"], decoder="lstm", embed_dim=MODEL["embed_dim"],
                        hidden_dim=hidden_dim, word_dropout=FLOOR_RECIPE["word_dropout"])

    def validate(model):
        model.eval()
        try:
            return {"nll": float(lm_nll(model.log_likelihood, stop_rows).mean()),  # what early stopping watches
                    "test_nll": float(lm_nll(model.log_likelihood, X_test).mean())}  # the curve: recorded only
        finally:
            model.train()

    t0 = time.perf_counter()
    history = train(lm, get_method("vanilla"), TrainData(torch.as_tensor(fit_rows)),
                    Objective(sigma2=None, reconstruction=token_nll), epochs=FLOOR_RECIPE["max_epochs"],
                    batch_size=MODEL["batch_size"], lr=FLOOR_RECIPE["lr"], seed=SEED, validate=validate,
                    progress=False,
                    early_stopping=EarlyStopping(monitor="nll", patience=FLOOR_RECIPE["patience"],
                                                 rel_delta=FLOOR_RECIPE["rel_delta"]))
    seconds = time.perf_counter() - t0
    lm.eval()
    with torch.no_grad():
        final = float(lm_nll(lm.log_likelihood, X_test).mean())  # the restored best epoch
    best = next(row for row in history if row.get("best"))
    return {"hidden_dim": hidden_dim, "n_train": len(X_train), "epochs": len(history), "best_epoch": int(best["epoch"]),
            "converged": len(history) < FLOOR_RECIPE["max_epochs"], "test_nll": final, "seconds": seconds,
            "history": [{k: row.get(k) for k in ("epoch", "lr", "train_loss", "val_nll", "val_test_nll", "best",
                                                 "train_time_s")} for row in history]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/results", help="folder for lm_learning_curve.md/.csv/.json")
    parser.add_argument("--cells", default="docs/results/lm_curve_cells", help="resumable per-run JSON cells")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="training-set sizes")
    parser.add_argument("--wide", default="A:5000:128,B:5000:128,B:10000:128",
                        help="extra runs with a wider LSTM (does capacity limit it?): setting:n_train:hidden,...")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out, cells = storage.check_writable_folder(args.out), storage.check_writable_folder(args.cells)
    sizes = [int(s) for s in args.sizes.split(",")]
    plan = [(s, n, MODEL["hidden_dim"]) for s in args.settings.split(",") for n in sizes]
    plan += [(s, int(n), int(h)) for s, n, h in (w.split(":") for w in args.wide.split(",") if w)]
    start = time.perf_counter()
    runs, corpora = [], {}
    for setting, n, hidden in plan:
        if setting not in corpora:  # the largest training set of the plan; smaller ones are its prefixes
            n_max = max(m for s, m, _ in plan if s == setting)
            data = make_topic_corpus(n_max, N_TEST, seed=CORPUS_SEED, **SETTINGS[setting])
            corpora[setting] = (data, data.corpus.oracle(data.X_test, data.y_test))
        data, oracle = corpora[setting]
        path = cells / f"{setting}_n{n}_h{hidden}.json"
        if path.exists():
            run = json.loads(path.read_text())
        else:
            print(f"[{time.perf_counter() - start:6.0f} s] setting {setting}, {n} sequences, hidden {hidden}",
                  flush=True)
            fitted = run_floor(data.X_train[:n], data.X_test, len(data.vocab), hidden)
            run = {"setting": setting, "n_max": len(data.X_train), **fitted}
            storage.write_json(path, run)
            print(f"    held-out NLL {run['test_nll']:.2f} (oracle {oracle['oracle_nll']:.2f}) after "
                  f"{run['epochs']} epochs, {run['seconds']:.0f} s", flush=True)
        runs.append({**run, "oracle_nll": oracle["oracle_nll"], "oracle_nll_topic": oracle["oracle_nll_topic"]})
    command = " ".join(["python", "scripts/lm_learning_curve.py", *(sys.argv[1:] if argv is None else argv)])
    write_outputs(out, runs, command)
    print(f"wrote {out / 'lm_learning_curve.md'} in {time.perf_counter() - start:.0f} s")
    return 0


def write_outputs(out: Path, runs: list[dict], command: str) -> None:
    with open(out / "lm_learning_curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for run in runs:
            for row in run["history"]:
                writer.writerow({"setting": run["setting"], "n_train": run["n_train"], "hidden_dim": run["hidden_dim"],
                                 **row, "test_nll": row["val_test_nll"],
                                 "test_minus_oracle": row["val_test_nll"] - run["oracle_nll"]})
    storage.write_json(out / "lm_learning_curve.json", {"command": command, "floor_recipe": FLOOR_RECIPE,
                                                        "model": MODEL, "runs": runs})
    lines = ["# The z-free language model's learning curve on the generated corpus", "",
             "Generated by `scripts/lm_learning_curve.py` (do not edit by hand); why and how: its docstring and "
             "[Sequence VAEs](../sequences.md).", "", "```bash", command, "```", "",
             f"The certificate's floor, trained by its own recipe (no word dropout, Adam {FLOOR_RECIPE['lr']:g} halved "
             f"on each epoch without improvement, early stopping with patience {FLOOR_RECIPE['patience']} on a seeded "
             f"10% of the training rows, at most {FLOOR_RECIPE['max_epochs']} epochs), with the results table's "
             f"network (LSTM, embeddings {MODEL['embed_dim']}, batch {MODEL['batch_size']}) unless the hidden width "
             "says otherwise; held-out NLL in nats per sequence on the same 1,000 held-out sequences for every "
             "training size, against the oracle's exact marginal NLL. 'within 5%': (NLL - oracle) / oracle <= 0.05. "
             "'train s': training seconds on one torch thread of a 2-core machine shared with other jobs.",
             ""]
    for setting in dict.fromkeys(r["setting"] for r in runs):
        rs = [r for r in runs if r["setting"] == setting]
        spec = SETTINGS[setting]
        lines += [f"## Setting {setting}: {spec['n_topics']} topics, {spec['vocab_size']} tokens, length "
                  f"{spec['length']}, support {spec['support']}", "",
                  f"Oracle marginal NLL **{rs[0]['oracle_nll']:.2f}**; given the topic "
                  f"{rs[0]['oracle_nll_topic']:.2f}.",
                  "", "| training sequences | hidden | epochs (best) | stopped by itself | held-out NLL | NLL - oracle "
                  "| % above oracle | within 5% | train s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rs:
            excess = (r["test_nll"] - r["oracle_nll"]) / r["oracle_nll"]
            lines.append(f"| {r['n_train']:,} | {r['hidden_dim']} | {r['epochs']} ({r['best_epoch']}) | "
                         f"{'yes' if r['converged'] else 'no'} | {r['test_nll']:.2f} | "
                         f"{r['test_nll'] - r['oracle_nll']:.2f} | {100 * excess:.1f}% | "
                         f"{'yes' if excess <= 0.05 else 'no'} | {r['seconds']:.0f} |")
        lines += ["", "Held-out NLL after each epoch (the curve; `*` marks the kept epoch):", ""]
        for r in rs:
            curve = ", ".join(f"{row['val_test_nll']:.2f}{'*' if row.get('best') else ''}" for row in r["history"])
            lines.append(f"- {r['n_train']:,} sequences, hidden {r['hidden_dim']}: {curve}")
        lines.append("")
    storage.write_text(out / "lm_learning_curve.md", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
