"""The text-VAE results table on a real English corpus: every sequence method, both decoders, 3 seeds.

    python scripts/text_results.py --out docs/results

writes docs/results/text.md (the tables, the recommendation, samples, the command, the runtime),
text.csv (one row per training) and text.json (the rows and the language-model floors). Each training
is kept as a JSON cell under --cells (committed beside the table, so an interrupted run resumes where
it stopped, in this session or the next); the fitted models go to --models (not committed: the
qualitative samples are drawn from them). One torch thread.

Protocol (docs/sequences.md, "Real text"):

- Data: Debian's ``fortunes`` (``load_fortunes``): every category, quotations of at most
  ``MAX_WORDS`` tokens (words and punctuation, lowercased), a seeded 90/10 split, the vocabulary of
  the training split (words seen at least twice there, the ``MAX_VOCAB`` most frequent).
- Model: ``SequenceVAE``'s defaults (latent 16, embeddings 64, LSTM states 128, Adam 5e-3, batch 64)
  with early stopping on held-out NLL (``patience``; a seeded tenth of the training rows is held
  out for it), at most ``MAX_EPOCHS`` epochs; both decoders (LSTM, causal Transformer), z at every step.
- The floor: for each decoder and seed, the z-free language model of the same architecture is trained
  once, with its own settings (no word dropout, early stopping), and shared by every method of that
  decoder and seed (``fit(..., lm=...)``).
- Scores on the held-out quotations: NLL by importance sampling (``IW_SAMPLES`` a sequence) and
  perplexity per token, ELBO, KL, MI, active units, the category probe against chance, and the
  language-model-floor certificate (margin 1% of the floor's NLL, one-sided paired t-tests at 0.01).
- Ranking: by mean NLL among the methods certified in every seed; a difference within 2 paired
  standard errors (over seeds) of the row above it is a tie (``experiments.paired``).
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

from shellvae import SequenceVAE, load_fortunes
from shellvae.base import storage
from shellvae.experiments.paired import TIE_SE, paired

MAX_WORDS, MAX_VOCAB, TEST_SIZE, DATA_SEED = 20, 2_000, 0.1, 0
MAX_EPOCHS, PATIENCE = 30, 3
MODEL = dict(latent_dim=16, embed_dim=64, hidden_dim=128, batch_size=64, lr=5e-3, epochs=MAX_EPOCHS,
             patience=PATIENCE)
IW_SAMPLES = 100
CELLS = "docs/results/text_cells"
N_CLUSTERS = 16
DECODERS = ("lstm", "transformer")
PAPER_METHOD = "shell"
#: (method, hyperparameters): the methods' defaults, except aggressive's inner loop, shortened to fit the
#: CPU budget (its default takes ~20x a vanilla training), as on the generated corpus (scripts/sequence_results.py)
METHODS = [
    ("vanilla", {}), ("beta", {}), ("kl_anneal", {}), ("cyclical", {}), ("free_bits", {"free_bits": 0.25}),
    ("bn_vae", {}), ("aggressive", {"max_inner_steps": 10, "check_every": 5}), ("em", {}), ("shell", {}),
    ("shell_lagrange", {}),
]
COLUMNS = ["decoder", "seed", "method", "nll_iw", "ppl_iw", "elbo", "kl", "mutual_info", "active_units",
           "shuffle_gap", "nll_lm", "lm_gap", "lm_gap_p", "shuffle_gap_p", "certified", "probe_accuracy",
           "chance_accuracy", "region_certified", "n_epochs", "best_epoch", "fit_seconds"]


def cell_path(cells: Path, decoder: str, seed: int, name: str) -> Path:
    return cells / f"{decoder}_seed{seed}_{name}.json"


def run_cell(path: Path, work) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    record = work()
    storage.write_json(path, record)
    return record


def load_data():
    return load_fortunes(max_words=MAX_WORDS, min_count=2, max_vocab=MAX_VOCAB, test_size=TEST_SIZE, seed=DATA_SEED)


def fit(data, method: str, params: dict, decoder: str, seed: int, floor: SequenceVAE | None) -> SequenceVAE:
    est = SequenceVAE(method, method_params=params, decoder=decoder, n_clusters=N_CLUSTERS, random_state=seed,
                      language_model=floor is None, **MODEL)
    return est.fit(data.X_train, vocab=data.vocab, **({} if floor is None else {"lm": floor}))


def score(est: SequenceVAE, data) -> dict:
    metrics = est.evaluate(data.X_test, data.y_test, iw_samples=IW_SAMPLES)
    cert = est.certify(data.X_test)
    record = {**metrics, "certified": cert.certified, "lm_gap_p": cert.lm_test.p_value,
              "shuffle_gap_p": cert.shuffle_test.p_value, "certificate_margin": cert.margin,
              "n_epochs": est.n_epochs_, "best_epoch": est.best_epoch_}
    if est.region_ is not None:
        record["region_certified"] = est.certify_region(data.X_test, metrics=metrics).certified
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/results", help="folder for text.md/.csv/.json")
    parser.add_argument("--cells", default=CELLS, help="resumable per-training JSON cells")
    parser.add_argument("--models", default="/tmp/shellvae-text-models", help="fitted models (for the samples)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--decoders", default=",".join(DECODERS))
    parser.add_argument("--methods", default=",".join(m for m, _ in METHODS))
    parser.add_argument("--tables-only", action="store_true", help="write the tables from the cells there are")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out, cells = storage.check_writable_folder(args.out), storage.check_writable_folder(args.cells)
    models = storage.check_writable_folder(args.models)
    chosen = args.methods.split(",")
    start = time.perf_counter()
    data = load_data()
    print(data.description, flush=True)
    # seed-major order: a run stopped early has every method at seed 0 before any at seed 1
    for seed in range(0 if args.tables_only else args.seeds):
        for decoder in args.decoders.split(","):
            floor = None  # the vanilla fit that carries this decoder and seed's language model

            def floor_fit():
                nonlocal floor
                if floor is None:
                    path = models / f"{decoder}_seed{seed}_vanilla.model"
                    if path.exists():
                        floor = SequenceVAE.load(path)
                    else:
                        t0 = time.perf_counter()
                        floor = fit(data, "vanilla", {}, decoder, seed, None)
                        floor.fit_seconds_ = time.perf_counter() - t0
                        floor.save(path)
                return floor

            def floor_record():
                est = floor_fit()
                return {"decoder": decoder, "seed": seed, **est.lm_info_}

            run_cell(cell_path(cells, decoder, seed, "floor"), floor_record)
            for method, params in METHODS:
                if method not in chosen:
                    continue

                def work(method=method, params=params):
                    print(f"[{time.perf_counter() - start:7.0f} s] {decoder}, seed {seed}: {method}", flush=True)
                    if method == "vanilla":
                        est = floor_fit()
                        fit_seconds = getattr(est, "fit_seconds_", float("nan"))
                    else:
                        t0 = time.perf_counter()
                        est = fit(data, method, params, decoder, seed, floor_fit())
                        fit_seconds = time.perf_counter() - t0
                        est.save(models / f"{decoder}_seed{seed}_{method}.model")
                    return {"decoder": decoder, "seed": seed, "method": method, "method_params": params,
                            "fit_seconds": fit_seconds, **score(est, data)}
                run_cell(cell_path(cells, decoder, seed, method), work)
    rows = [json.loads(p.read_text()) for p in sorted(cells.glob("*.json")) if not p.stem.endswith("_floor")]
    floors = [json.loads(p.read_text()) for p in sorted(cells.glob("*_floor.json"))]
    seconds = time.perf_counter() - start
    # the command that makes these files (where they go and what runs, not where scratch models are kept)
    options = {"--seeds": (args.seeds, 3), "--decoders": (args.decoders, ",".join(DECODERS)),
               "--methods": (args.methods, ",".join(m for m, _ in METHODS)), "--cells": (args.cells, CELLS)}
    command = " ".join(["python", "scripts/text_results.py", "--out", args.out,
                        *(f"{k} {v}" for k, (v, default) in options.items() if v != default)])
    planned = len(args.decoders.split(",")) * args.seeds * len(chosen)
    write_outputs(out, data, rows, floors, models, command, planned)
    print(f"wrote {out / 'text.md'}, {out / 'text.csv'}, {out / 'text.json'} ({seconds:.0f} s)")
    return 0


# -- the tables ---------------------------------------------------------------------------------------------
def mean_sd(values, digits: int = 2) -> str:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(values):
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def ranked_methods(rows: list[dict]) -> list[tuple[str, str, dict]]:
    """(rank or '—', method, {"nll": mean, "by_seed": {seed: nll}, "vs_above": Paired}) for one decoder:
    the methods certified in every seed first, by mean held-out NLL, ties within TIE_SE paired
    standard errors of the certified row above; then the others by NLL."""
    table = {}
    for r in rows:
        table.setdefault(r["method"], []).append(r)
    entries = []
    for method, mr in table.items():
        entries.append({"method": method, "nll": float(np.mean([r["nll_iw"] for r in mr])),
                        "by_seed": {r["seed"]: r["nll_iw"] for r in mr}, "certified": all(r["certified"] for r in mr)})
    certified = sorted((e for e in entries if e["certified"]), key=lambda e: e["nll"])
    others = sorted((e for e in entries if not e["certified"]), key=lambda e: e["nll"])
    ranked, first = [], 0
    for i, e in enumerate(certified, 1):
        e["vs_above"] = paired(e["by_seed"], certified[i - 2]["by_seed"]) if i > 1 else None
        tied = e["vs_above"] is not None and not e["vs_above"].separated
        first = first if tied else i
        ranked.append((f"={first}" if tied else str(i), e["method"], e))
    return ranked + [("—", e["method"], e) for e in others]


def recommendation(ranked, rows) -> str:
    """The paper's method's standing first, then the method to use, in plain words."""
    n_seeds = len({r["seed"] for r in rows})
    paper = [r for r in rows if r["method"] == PAPER_METHOD]
    certified = [(rank, m, e) for rank, m, e in ranked if rank != "—"]
    words = []
    if paper:
        n_cert = sum(r["certified"] for r in paper)
        position = next(rank for rank, m, _ in ranked if m == PAPER_METHOD)
        paper_tied = position.startswith("=") or any(rank == f"={position}" for rank, _, _ in certified)
        standing = ("not certified in every seed" if position == "—"
                    else f"{'tied for rank' if paper_tied else 'ranked'} {position.lstrip('=')} of {len(certified)} "
                         "certified methods")
        words.append(f"The paper's method (`{PAPER_METHOD}`) is certified in {n_cert}/{len(paper)} seeds, KL "
                     f"{mean_sd((r['kl'] for r in paper), 3)} nats: {standing}.")
    if not certified:
        return " ".join(words + [f"No method is certified in all {n_seeds} seeds with this decoder."])
    best = certified[0]
    tied = [m for rank, m, _ in certified[1:] if rank == "=1"]
    if tied:
        names = [f"`{m}`" for m in [best[1], *tied]]
        words.append(f"Use {', '.join(names[:-1])} or {names[-1]}: tied for the best held-out NLL among "
                     f"the methods certified in every seed (within {TIE_SE:g} paired standard errors).")
    else:
        nxt = f"; the next, `{certified[1][1]}`, is {certified[1][2]['vs_above']} behind" if len(certified) > 1 else ""
        words.append(f"Use `{best[1]}`: the best held-out NLL among the methods certified in every seed "
                     f"({best[2]['nll']:.2f} nats{nxt}).")
    better = [(m, e) for rank, m, e in ranked if rank == "—" and e["nll"] < best[2]["nll"]]
    if better:
        m, e = better[0]
        gap = paired(best[2]["by_seed"], e["by_seed"])
        words.append(f"An uncertified model has a lower NLL (`{m}`, {e['nll']:.2f} nats): the certified latent costs "
                     f"{gap}" + ("" if gap is None or gap.separated else ", within noise") + ".")
    return " ".join(words)


def write_outputs(out: Path, data, rows: list[dict], floors: list[dict], models: Path, command: str,
                  planned: int) -> None:
    with open(out / "text.csv.tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["decoder"], r["method"], r["seed"])))
    (out / "text.csv.tmp").replace(out / "text.csv")
    fit_total = sum(r["fit_seconds"] for r in rows if r["fit_seconds"] == r["fit_seconds"])
    summary = {}
    lines = ["# Sequence VAEs on real text: Debian's fortunes", "",
             "Generated by `scripts/text_results.py` (do not edit by hand); the protocol and how to read it: "
             "[Sequence VAEs](../sequences.md#real-text).", "", "```bash", command, "```", "",
             f"Data: {data.description}. Training (VAEs and floors) took {fit_total / 60:.0f} min on one torch "
             "thread of a 2-core machine shared with other jobs; held-out scoring is not counted. The fit times are "
             "wall times there (the run was also paused at times for other work): an order of magnitude, not a "
             "benchmark.", ""]
    if len(rows) < planned:
        lines += [f"**Incomplete: {len(rows)} of the {planned} trainings ({len(DECODERS)} decoders x 3 seeds x "
                  f"{len(METHODS)} methods) are done.** The tables show those; the command above resumes the run "
                  "from its cells. Below 2 seeds no difference is separated from noise (paired standard errors), "
                  "so every certified method ties.", ""]
    for decoder in DECODERS:
        drows = [r for r in rows if r["decoder"] == decoder]
        if not drows:
            continue
        dfloors = [f for f in floors if f["decoder"] == decoder]
        ranked = ranked_methods(drows)
        n_seeds = len({r["seed"] for r in drows})
        words = recommendation(ranked, drows)
        summary[decoder] = {"recommendation": words, "ranking": [
            {"rank": rank, "method": m, "nll_iw_mean": e["nll"], "nll_iw_by_seed": e["by_seed"],
             "vs_above": None if e.get("vs_above") is None else vars(e["vs_above"])} for rank, m, e in ranked]}
        lines += [f"## {decoder.upper() if decoder == 'lstm' else 'Transformer'} decoder", "", words, "",
                  f"The z-free language model (the certificate's floor, trained without word dropout, early-stopped): "
                  f"held-out NLL {mean_sd(f['held_out_nll'] for f in dfloors)} nats per sequence on its validation rows, "
                  f"{mean_sd((f['epochs'] for f in dfloors), 0)} epochs. Mean ± sd over {n_seeds} seed(s); certified = "
                  "seeds certified / seeds; probe = category-probe accuracy on the held-out latents (chance: the "
                  "majority category's share).", "",
                  "| rank | method | NLL (IW) | ppl | ELBO | KL | MI | AU | LM gap | shuffle gap | probe | chance | "
                  "certified | epochs | fit (s) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for rank, method, e in ranked:
            mr = [r for r in drows if r["method"] == method]
            lines.append("| " + " | ".join([
                rank, f"`{method}`", mean_sd(r["nll_iw"] for r in mr), mean_sd(r["ppl_iw"] for r in mr),
                mean_sd(-r["elbo"] for r in mr), mean_sd((r["kl"] for r in mr), 3),
                mean_sd(r["mutual_info"] for r in mr), mean_sd(r["active_units"] for r in mr),
                mean_sd(r["lm_gap"] for r in mr), mean_sd(r["shuffle_gap"] for r in mr),
                mean_sd(r.get("probe_accuracy") for r in mr), mean_sd(r.get("chance_accuracy") for r in mr),
                f"{sum(r['certified'] for r in mr)}/{len(mr)}", mean_sd((r["n_epochs"] for r in mr), 0),
                mean_sd((r["fit_seconds"] for r in mr), 0)]) + " |")
        lines += ["", "ELBO is shown as -ELBO (nats per sequence, an upper bound like the NLL). MI is the He et al. "
                  "(2019) estimator: biased, near 0 reads as 0.", ""]
        lines += samples_section(decoder, ranked, models, data)
    storage.write_json(out / "text.json", {"command": command, "data": data.description, "planned": planned, "rows": rows,
                                           "floors": floors, "summary": summary})
    storage.write_text(out / "text.md", "\n".join(lines))


def samples_section(decoder: str, ranked, models: Path, data) -> list[str]:
    """Bowman-style samples (prior samples, reconstructions, a homotopy) for vanilla and the recommended
    method, seed 0, from the saved models (none where the models are not on this machine)."""
    from shellvae.reporting.text_samples import qualitative_report

    certified = [m for rank, m, _ in ranked if rank != "—"]
    lines = []
    for method in dict.fromkeys(["vanilla", *certified[:1]]):
        path = models / f"{decoder}_seed0_{method}.model"
        if not path.exists():
            continue
        lines += [qualitative_report(SequenceVAE.load(path), data.X_test, seed=0,
                                     title=f"Samples: `{method}`, {decoder} decoder, seed 0"), ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
