"""Which method should I use? Table 1's trainings, ranked for a user.

Per dataset and violating condition, every method's held-out likelihood (nll_iw, ELBO), KL, MI,
active units, probe accuracy and certificate. Methods certified in every seed at the auto-K
geometry (the one test shared by every method on a dataset) come first, ranked by nll_iw (lower is better: the one likelihood every method is judged by); the rest follow,
unranked. The recommendation line under each table is generated from those numbers: the best
certified method, where the paper's method (``shell``) stands, and whether a simple baseline
(free bits, BN-VAE) beats it. The cells are Table 1's (same keys): run into the same folder, it
trains nothing new.
"""

from __future__ import annotations

from shellvae.base import storage as io
from shellvae.experiments import table1
from shellvae.experiments.common import (
    CONDITION_TEXT,
    Report,
    RunContext,
    aggregate,
    md_table,
    pct,
    certified_share,
    pm,
    register_experiment,
)

NAME = "recommend"
TITLE = "Which method should I use? Likelihood among certified models"
DATASETS = table1.DATASETS
PAPER_METHOD = "shell"
SIMPLE_BASELINES = ("free_bits", "bn_vae")


def cells(run: RunContext):
    return table1.cells(run)


def ranking(rows: list[dict]) -> list[tuple[str, dict]]:
    """(rank or '—', row): certified in every seed first, by mean nll_iw; then the others by nll_iw."""
    def nll(r):
        value = r.get("nll_iw_mean")
        return float("inf") if value is None or value != value else value

    certified = sorted((r for r in rows if r.get("certified_auto_n") and r["certified_auto_mean"] == 1), key=nll)
    others = sorted((r for r in rows if r not in certified), key=nll)
    return [(str(i), r) for i, r in enumerate(certified, 1)] + [("—", r) for r in others]


def recommendation(ranked: list[tuple[str, dict]]) -> str:
    """One plain sentence (or a few) from the ranked rows."""
    certified = [r for rank, r in ranked if rank != "—"]
    if not certified:
        return "No method is certified in every seed here: none gives held-out proof that its latent is used."
    best = certified[0]
    words = [f"Use `{best['method']}`: the best held-out likelihood among the methods certified in every seed "
             f"(nll_iw {pm(best, 'nll_iw', 2)} nats)."]
    position = next((rank for rank, r in ranked if r["method"] == PAPER_METHOD), None)
    simple = [(int(rank), r["method"]) for rank, r in ranked if rank != "—" and r["method"] in SIMPLE_BASELINES]
    named = ", ".join  # of method names in backticks
    if position == "—":
        words.append(f"The paper's method (`{PAPER_METHOD}`) is not certified in every seed here.")
        if simple:
            words.append(f"A simple baseline is certified where it is not: {named(f'`{m}`' for _, m in simple)}.")
    elif position is not None and position != "1":
        words.append(f"The paper's method (`{PAPER_METHOD}`) ranks {position} of {len(certified)}.")
        beats = [m for rank, m in simple if rank < int(position)]
        if beats:
            words.append(f"A simple baseline beats it: {named(f'`{m}`' for m in beats)}.")
    uncertified = [r for rank, r in ranked if rank == "—" and _finite(r.get("nll_iw_mean"))]
    if uncertified and uncertified[0]["nll_iw_mean"] < best["nll_iw_mean"]:
        other = uncertified[0]
        cost = best["nll_iw_mean"] - other["nll_iw_mean"]
        if other.get("active_units_mean") == 0:  # collapsed in every seed: the gap is the price of a used latent
            tail = (f"in this condition the latent that `{best['method']}` is certified to use costs {cost:.2f} "
                    "nats of held-out likelihood.")
        else:
            tail = f"`{best['method']}` is {cost:.2f} nats behind it, and certified where it is not."
        words.append(f"An uncertified model has a lower nll_iw here (`{other['method']}`, {pm(other, 'nll_iw', 2)} "
                     f"nats, KL {pm(other, 'kl', 3)}): {tail}")
    return " ".join(words)


def _finite(value) -> bool:
    return value is not None and value == value and value not in (float("inf"), float("-inf"))


def write(run: RunContext, records: list[dict]) -> Report:
    rows = aggregate(records, ["condition", "dataset", "method"], run.certificate_margin)
    parts = [run.header(TITLE, [
        "rank: among methods certified in every seed at the auto-K geometry (the same test for every method), by "
        "held-out nll_iw (importance-weighted bound on -log p(x) in shell space, 500 samples; lower is better); '—': "
        "not certified in every seed there (listed by nll_iw)",
        "probe: 5-fold cross-validated logistic-regression accuracy on the posterior means (chance: the majority class)",
        *table1.skipped_note(run),
    ])]
    verdict = {}
    for condition in table1.CONDITIONS:
        for dataset in run.datasets:
            group = [r for r in rows if r["condition"] == condition and r["dataset"] == dataset]
            if not group:
                continue
            ranked = ranking(group)
            parts.append(f"## {dataset}, {CONDITION_TEXT[condition]}\n")
            header = ["rank", "method", "nll_iw", "ELBO", "KL", "MI", "AU", "probe acc. %", "chance %",
                      "certified (auto K)", "certified (own K)"]
            body = [[rank, r["method"], pm(r, "nll_iw", 2), pm(r, "elbo", 2), pm(r, "kl"), pm(r, "mutual_info"),
                     pm(r, "active_units", 1), pct(r, "probe_accuracy"), pct(r, "chance_accuracy"),
                     table1.certified_auto(r), certified_share(r)] for rank, r in ranked]
            parts.append(md_table(header, body) + "\n")
            sentence = recommendation(ranked)
            parts.append(f"**Recommendation.** {sentence}\n")
            verdict[f"{condition}/{dataset}"] = {"ranking": [r["method"] for rank, r in ranked if rank != "—"],
                                                 "recommendation": sentence}
    path = run.out / f"{NAME}.md"
    io.write_text(path, "\n".join(parts))
    json_path = run.out / f"{NAME}.json"
    io.write_json(json_path, verdict)
    return Report([path, json_path], summary=f"{len(records)} cells; wrote {path}", verdict=verdict)


register_experiment(NAME, TITLE, "beyond the paper", DATASETS, cells, write)
