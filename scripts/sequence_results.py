"""The sequence-VAE results table: every method on two generated corpus settings, 3 seeds, trained to convergence.

    python scripts/sequence_results.py --out docs/results

writes docs/results/sequences.md (the tables, the command, the runtime), sequences.csv (one row per
training) and sequences.json (the rows with the per-setting measurements). Each training is kept
as a JSON cell under --cells (a committed folder by default), so an interrupted run resumes where
it stopped, across sessions. One torch thread.

Protocol (docs/sequences.md): each corpus setting is generated once (seed 0; N_TRAIN training and
1,000 held-out sequences); every method trains the same SequenceVAE (LSTM encoder and decoder,
latent 16, embeddings 32, LSTM states 64, batch 64, Adam 1e-2, no word dropout) to convergence:
the estimator's early stopping on the held-out negative ELBO of a seeded 10% of the training rows
(patience 3, the step halved on each epoch without improvement, at most MODEL["epochs"] epochs,
the best epoch's weights kept; ``n_epochs_`` and ``best_epoch_`` recorded). For each training seed
the z-free language model (the certificate's floor) is trained once by its own recipe
(``FLOOR_RECIPE``: no word dropout, early stopping on its held-out NLL) inside the vanilla fit and
shared by every method of that seed through ``fit(..., lm=...)``, which refuses a floor weaker than
the recipe. Each fit is scored on the held-out set: NLL by importance sampling (100 samples a
sequence) against the oracle's exact marginal NLL and its NLL given the true topic, KL, MI, active
units, the shuffled-latent and language-model gaps, and the language-model-floor certificate
(margin 1% of the floor's NLL, one-sided paired t-tests at 0.01).

The training size: scripts/lm_learning_curve.py (docs/results/lm_learning_curve.md) measures how
close the floor gets to the oracle with more sequences and epochs; N_TRAIN is the largest size
whose whole re-run fits the CPU budget (about an hour on one core).
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
from shellvae.core.sequence_region import SequenceRegion
from shellvae.estimators.sequence_vae import SequenceVAE
from shellvae.data.sequences import make_topic_corpus
from shellvae.evaluation.bag_metrics import teacher_forced_l_clu, topic_bag_l_clu

SETTINGS = {
    "A": dict(n_topics=8, vocab_size=40, length=24, support=3),  # the corpus
    "B": dict(n_topics=16, vocab_size=40, length=24, support=6),  # more topics, denser chains
}
N_TRAIN, N_TEST, CORPUS_SEED = 5_000, 1_000, 0
#: ``epochs`` is a cap (the estimator's default 30): early stopping (``patience``, the default 3) ends a run once
#: its held-out negative ELBO stops improving
MODEL = dict(latent_dim=16, embed_dim=32, hidden_dim=64, epochs=30, patience=3, batch_size=64, lr=1e-2)
IW_SAMPLES = 100
N_CLUSTERS = 16
#: (method, hyperparameters): the methods' defaults, except aggressive's inner loop, shortened to fit the CPU
#: budget (its default takes ~20x a vanilla training). The schedules meet early stopping thus: an epoch whose KL
#: weight is below beta, or whose constraints are off, counts no bad validation (training.loop.EarlyStopping),
#: so kl_anneal (default warm-up 10 epochs) trains at least 13; cyclical lays its 4 cycles over the epoch cap
#: (7.5 epochs each, the weight ramping over the first half) and only a cycle's full-weight epochs count; the
#: shell methods ramp their KL weight over the whole cap (stage one: the first 20%), so they train all 30 epochs
#: and keep their best one
METHODS = [
    ("vanilla", {}), ("beta", {}), ("kl_anneal", {}), ("cyclical", {}),
    ("free_bits", {"free_bits": 0.25}), ("bn_vae", {}), ("aggressive", {"max_inner_steps": 10, "check_every": 5}),
    ("em", {}), ("shell", {}), ("shell_lagrange", {}),
]
COLUMNS = ["setting", "seed", "method", "nll_iw", "nll_iw_minus_oracle", "nll_iw_minus_oracle_topic", "ppl_iw", "elbo",
           "kl", "mutual_info",
           "active_units", "nll_own", "shuffle_gap", "nll_lm", "lm_gap", "lm_gap_p", "certified", "probe_accuracy",
           "bag_l_clu", "bag_collapse_floor", "region_certified", "oracle_nll", "oracle_nll_topic", "n_epochs",
           "best_epoch", "fit_seconds"]


def cell_path(cells: Path, setting: str, seed: int, name: str) -> Path:
    return cells / f"{setting}_seed{seed}_{name}.json"


def run_cell(path: Path, work):
    if path.exists():
        return json.loads(path.read_text())
    record = work()
    storage.write_json(path, record)
    return record


def train_lm(data, seed: int) -> SequenceVAE:
    """The floor: a z-free language model of the shared architecture, trained by its own recipe inside a
    vanilla fit's ``language_model=True`` (the VAE half of that fit is the vanilla cell's own training)."""
    return SequenceVAE("vanilla", **MODEL, random_state=seed, language_model=True).fit(data.X_train, vocab=data.vocab)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/results", help="folder for sequences.md/.csv/.json")
    parser.add_argument("--cells", default="docs/results/sequence_cells",
                        help="resumable per-training JSON cells (committed, so a run resumes across sessions)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--methods", default=",".join(m for m, _ in METHODS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out, cells = storage.check_writable_folder(args.out), storage.check_writable_folder(args.cells)
    chosen = args.methods.split(",")
    start = time.perf_counter()
    rows, measurements = [], []
    corpora = {}  # setting -> (data, region): generated once
    for setting in args.settings.split(","):
        data = make_topic_corpus(N_TRAIN, N_TEST, seed=CORPUS_SEED, **SETTINGS[setting])
        region = SequenceRegion(N_CLUSTERS, vocab_size=len(data.vocab), random_state=0).fit(data.X_train)
        corpora[setting] = data, region
    # seed by seed, so that a run stopped part-way has every setting for its first seeds
    for seed in range(args.seeds):
        for setting, (data, region) in corpora.items():
            base = None  # the vanilla fit that carries this seed's language model

            def base_fit():
                nonlocal base
                if base is None:
                    t0 = time.perf_counter()
                    base = train_lm(data, seed)
                    base.fit_seconds_ = time.perf_counter() - t0
                return base

            def measure():
                lm = base_fit().lm_.eval()
                with torch.no_grad():
                    lm_nll = float(-lm.log_likelihood(torch.as_tensor(data.X_test)).double().mean())
                return {"setting": setting, "seed": seed, "n_train": len(data.X_train), "delta": region.delta_,
                        "data_W": region.data_W_,
                        "topic_bag_l_clu": topic_bag_l_clu(data.corpus, data.X_test, data.y_test, region),
                        "lm_teacher_forced_l_clu": teacher_forced_l_clu(lambda x: lm.decode(None, x), data.X_test,
                                                                        region),
                        "lm_nll": lm_nll, "lm_info": base_fit().lm_info_,
                        "lm_seconds": sum(r["train_time_s"] for r in base_fit().lm_history_)}
            measurements.append(run_cell(cell_path(cells, setting, seed, "measure"), measure))
            for method, params in METHODS:
                if method not in chosen:
                    continue

                def work(method=method, params=params):
                    print(f"[{time.perf_counter() - start:7.0f} s] setting {setting}, seed {seed}: {method}",
                          flush=True)
                    if method == "vanilla":
                        est = base_fit()
                        fit_seconds = est.fit_seconds_ - sum(r["train_time_s"] for r in est.lm_history_)
                    else:
                        t0 = time.perf_counter()
                        est = SequenceVAE(method, method_params=params, **MODEL, n_clusters=N_CLUSTERS,
                                          random_state=seed).fit(data.X_train, lm=base_fit(), vocab=data.vocab)
                        fit_seconds = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    metrics = est.evaluate(data.X_test, data.y_test, iw_samples=IW_SAMPLES, oracle=data.corpus)
                    cert = est.certify(data.X_test)
                    eval_seconds = time.perf_counter() - t0
                    record = {"setting": setting, "seed": seed, "method": method, "method_params": params,
                              "fit_seconds": fit_seconds, "eval_seconds": eval_seconds, "n_epochs": est.n_epochs_,
                              "best_epoch": est.best_epoch_,
                              **metrics, "nll_iw_minus_oracle_topic": metrics["nll_iw"] - metrics["oracle_nll_topic"],
                              "certified": cert.certified,
                              "lm_gap_p": cert.lm_test.p_value, "shuffle_gap_p": cert.shuffle_test.p_value,
                              "certificate_margin": cert.margin}
                    if est.region_ is not None:
                        record["region_certified"] = est.certify_region(data.X_test, metrics=metrics).certified
                    return record
                rows.append(run_cell(cell_path(cells, setting, seed, method), work))
    seconds = time.perf_counter() - start
    command = " ".join(["python", "scripts/sequence_results.py", *(sys.argv[1:] if argv is None else argv)])
    write_outputs(out, rows, measurements, seconds, command, args.cells)
    print(f"wrote {out / 'sequences.md'}, {out / 'sequences.csv'}, {out / 'sequences.json'} in {seconds:.0f} s")
    return 0


def mean_sd(values) -> str:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(values):
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def epochs_by_seed(rows: list[dict]) -> str:
    """Epochs trained and the best (kept) epoch, seed by seed, e.g. "14/17/12 (11/14/9)"; ``*`` marks a run
    that reached the epoch cap still improving (it did not stop by itself)."""
    trained = "/".join(f"{r['n_epochs']}{'*' if r['best_epoch'] == r['n_epochs'] == MODEL['epochs'] else ''}"
                       for r in rows)
    return f"{trained} ({'/'.join(str(r['best_epoch']) for r in rows)})"


def write_outputs(out: Path, rows: list[dict], measurements: list[dict], seconds: float, command: str,
                  cells: str = "docs/results/sequence_cells") -> None:
    with open(out / "sequences.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    storage.write_json(out / "sequences.json", {"command": command, "seconds": seconds, "rows": rows,
                                           "measurements": measurements})
    # summed over the cells, not this invocation's wall time: a resumed run reads finished cells back
    fit_total = sum(r["fit_seconds"] for r in rows) + sum(m["lm_seconds"] for m in measurements)
    eval_total = sum(r.get("eval_seconds", 0.0) for r in rows)
    lines = ["# Sequence VAEs on the generated corpus", "",
             "Generated by `scripts/sequence_results.py` (do not edit by hand); the protocol and how to read it: "
             "[Sequence VAEs](../sequences.md).", "", "```bash", command, "```", "",
             f"Compute, summed over the cells (one torch thread, on a 2-core machine shared with other jobs): "
             f"training {fit_total / 60:.1f} min (the floors' {sum(m['lm_seconds'] for m in measurements) / 60:.1f} "
             f"min of it), held-out evaluation {eval_total / 60:.1f} min. The cells are in `{cells}/` (a resumed run "
             f"reads the finished ones back; the invocation that wrote this page took "
             f"{seconds / 60:.1f} min).", ""]
    for setting, spec in SETTINGS.items():
        setting_rows = [r for r in rows if r["setting"] == setting]
        if not setting_rows:
            continue
        m = [x for x in measurements if x["setting"] == setting]
        oracle = setting_rows[0]["oracle_nll"]
        n_seeds = len({r["seed"] for r in setting_rows})
        floor = [x["lm_nll"] for x in m]
        floor_epochs = [f"{x['lm_info']['epochs']} ({x['lm_info']['best_epoch']})" for x in m]
        lines += [f"## Setting {setting}: {spec['n_topics']} topics, {spec['vocab_size']} tokens, length "
                  f"{spec['length']}, support {spec['support']}; {m[0]['n_train']:,} training sequences", "",
                  f"Oracle (the true model's exact held-out NLL): **{oracle:.2f}** nats per sequence; given the topic: "
                  f"{setting_rows[0]['oracle_nll_topic']:.2f}; H(X|K) = {setting_rows[0]['entropy_given_topic']:.2f}. "
                  f"z-free language model (the certificate's floor): {mean_sd(floor)} nats, "
                  f"{mean_sd(np.asarray(floor) - oracle)} above the oracle "
                  f"({100 * (np.mean(floor) - oracle) / oracle:.1f}%), trained {', '.join(floor_epochs)} epochs "
                  "(best) by seed, each stopping by itself" + ("" if all(x["lm_info"]["converged"] for x in m) else
                                                              " (not all: see sequences.json)") + ". "
                  f"Mean ± sd over {n_seeds} training seeds; vs topic = NLL - the oracle given the true topic; "
                  f"epochs = epochs trained by seed (the best epoch, kept; at most {MODEL['epochs']}); "
                  "certified = seeds certified / seeds.", "",
                  "| method | NLL (IW) | NLL - oracle | vs topic | epochs (best) | KL | MI | AU | shuffle gap | "
                  "LM gap | probe acc. | certified | region cert. |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for method, _ in METHODS:
            mr = [r for r in setting_rows if r["method"] == method]
            if not mr:
                continue
            region = [r["region_certified"] for r in mr if "region_certified" in r]
            lines.append("| " + " | ".join([
                f"`{method}`", mean_sd(r["nll_iw"] for r in mr), mean_sd(r["nll_iw_minus_oracle"] for r in mr),
                mean_sd(r["nll_iw_minus_oracle_topic"] for r in mr),
                epochs_by_seed(mr),
                mean_sd(r["kl"] for r in mr), mean_sd(r["mutual_info"] for r in mr),
                mean_sd(r["active_units"] for r in mr), mean_sd(r["shuffle_gap"] for r in mr),
                mean_sd(r["lm_gap"] for r in mr), mean_sd(r["probe_accuracy"] for r in mr),
                f"{sum(r['certified'] for r in mr)}/{len(mr)}",
                f"{sum(region)}/{len(region)}" if region else "-"]) + " |")
        lines.append("")
    if measurements:
        lines += ["## The feasible region on bags of tokens (item 5's measurement)", "",
                  "Held-out L_clu of bags of tokens against the K = 16 clusters of the training bags (scaled to total "
                  "variance 1). A decoder whose bag does not depend on z scores at least delta (the collapse value).", "",
                  "| setting | delta | data W | true topic-conditional bags | z-free LM, teacher-forced bags |",
                  "|---|---|---|---|---|"]
        for setting in SETTINGS:
            m = [x for x in measurements if x["setting"] == setting]
            if m:
                lines.append(f"| {setting} | {m[0]['delta']:.3f} | {m[0]['data_W']:.3f} | "
                             f"{m[0]['topic_bag_l_clu']:.3f} | {mean_sd(x['lm_teacher_forced_l_clu'] for x in m)} |")
        lines.append("")
    storage.write_text(out / "sequences.md", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
