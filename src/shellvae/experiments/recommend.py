"""Which method should I use? Table 1's trainings, ranked for a user.

Per dataset and violating condition, every method's held-out likelihood (nll_iw, ELBO), KL, MI,
active units, probe accuracy and certificate. Methods certified in every seed at the auto-K
geometry (the one test shared by every method on a dataset) come first, ranked by nll_iw (lower
is better: the one likelihood every method is judged by); the rest follow, unranked. Neighbours
whose paired difference over seeds is within two standard errors share a rank: a tie
(experiments/paired.py). The recommendation line under each table is generated from those
numbers: the best certified method, where the paper's method (``shell``) stands, and whether a
simple baseline (free bits, BN-VAE) beats it. The cells are Table 1's (same keys): run into the
same folder, it trains nothing new.
"""

from __future__ import annotations

from shellvae.base import storage as io
from shellvae.experiments import table1
from shellvae.experiments.paired import TIE_SE, Paired, by_seed, paired
from shellvae.experiments.common import (
    CONDITION_TEXT,
    Report,
    RunContext,
    aggregate,
    pct,
    certified_share,
    pm,
    register_experiment,
)
from shellvae.reporting.tables import md_table

NAME = "recommend"
TITLE = "Which method should I use? Likelihood among certified models"
DATASETS = table1.DATASETS
PAPER_METHOD = "shell"
SIMPLE_BASELINES = ("free_bits", "bn_vae")


def cells(run: RunContext):
    return table1.cells(run)


def ranking(rows: list[dict]) -> list[tuple[str, dict]]:
    """(rank or '—', row): certified in every seed first, by mean nll_iw; then the others by nll_iw.

    Rows that carry their per-seed values (``nll_iw_by_seed``) are compared with the certified row
    above them, paired over seeds (``row["vs_above"]``); a row within ``TIE_SE`` standard errors of
    it is tied and takes its rank, written '=k'."""
    def nll(r):
        value = r.get("nll_iw_mean")
        return float("inf") if value is None or value != value else value

    certified = sorted((r for r in rows if r.get("certified_auto_n") and r["certified_auto_mean"] == 1), key=nll)
    others = sorted((r for r in rows if r not in certified), key=nll)
    ranked, first_of_tie = [], 0
    for i, r in enumerate(certified, 1):
        r["vs_above"] = difference(r, certified[i - 2]) if i > 1 else None
        tied = r["vs_above"] is not None and not r["vs_above"].separated
        first_of_tie = first_of_tie if tied else i
        ranked.append((f"={first_of_tie}" if tied else str(i), r))
    return ranked + [("—", r) for r in others]


def difference(a: dict, b: dict) -> Paired | None:
    """a's nll_iw minus b's, paired over seeds (None where a row lacks its per-seed values)."""
    if "nll_iw_by_seed" not in a or "nll_iw_by_seed" not in b:
        return None
    return paired(a["nll_iw_by_seed"], b["nll_iw_by_seed"])


def rank_number(rank: str) -> int:
    return int(rank.lstrip("="))


def name(row: dict) -> str:
    return row.get("label") or row["method"]


def recommendation(ranked: list[tuple[str, dict]], shell_k: str = "K = the number of classes") -> str:
    """One plain sentence (or a few) from the ranked rows (``shell_k``: the K the paper's method trained at)."""
    certified = [r for rank, r in ranked if rank != "—"]
    if not certified:
        return "No method is certified in every seed here: none gives held-out proof that its latent is used."
    best = certified[0]
    named = ", ".join  # of method names in backticks
    tied_best = [r for rank, r in ranked if rank == "=1"]
    if tied_best:
        words = [f"Use {' or '.join(f'`{name(r)}`' for r in [best, *tied_best])}: tied for the best held-out "
                 f"likelihood among the methods certified in every seed (nll_iw "
                 f"{', '.join(pm(r, 'nll_iw', 2) for r in [best, *tied_best])} nats; "
                 + "; ".join(f"`{name(r)}` {r['vs_above']}" for r in tied_best)
                 + f": within {TIE_SE:g} standard errors, not a ranking)."]
    else:
        words = [f"Use `{name(best)}`: the best held-out likelihood among the methods certified in every seed "
                 f"(nll_iw {pm(best, 'nll_iw', 2)} nats" + (f"; the next is {ranked[1][1]['vs_above']} behind"
                                                             if len(certified) > 1 and ranked[1][1].get("vs_above")
                                                             else "") + ")."]
    position = next((rank for rank, r in ranked if name(r) == PAPER_METHOD), None)
    simple = [(rank_number(rank), name(r)) for rank, r in ranked if rank != "—" and name(r) in SIMPLE_BASELINES]
    if position == "—":
        words.append(f"The paper's method (`{PAPER_METHOD}`, at {shell_k}) is not certified in every seed here.")
        if simple:
            words.append(f"A simple baseline is certified where it is not: {named(f'`{m}`' for _, m in simple)}.")
    elif position is not None and rank_number(position) != 1:
        ties = [name(r) for rank, r in ranked if rank != "—" and rank_number(rank) == rank_number(position)
                and name(r) != PAPER_METHOD]
        tie_text = f" (tied with {named(f'`{m}`' for m in ties)})" if ties else ""
        words.append(f"The paper's method (`{PAPER_METHOD}`) ranks {rank_number(position)} of {len(certified)}"
                     f"{tie_text}.")
        beats = [m for rank, m in simple if rank < rank_number(position)]
        if beats:
            words.append(f"A simple baseline beats it: {named(f'`{m}`' for m in beats)}.")
    elif position is not None and tied_best and name(best) != PAPER_METHOD:
        words.append(f"The paper's method (`{PAPER_METHOD}`) is among them.")
    uncertified = [r for rank, r in ranked if rank == "—" and _finite(r.get("nll_iw_mean"))]
    if uncertified and uncertified[0]["nll_iw_mean"] < best["nll_iw_mean"]:
        other = uncertified[0]
        cost = best["nll_iw_mean"] - other["nll_iw_mean"]
        gap = difference(best, other)
        measured = "" if gap is None else f" ({gap})"
        if gap is not None and not gap.separated:
            tail = f"the difference{measured} is within {TIE_SE:g} standard errors: no measurable cost."
        elif other.get("active_units_mean") == 0:  # collapsed in every seed: the gap is the price of a used latent
            tail = (f"in this condition the latent that `{name(best)}` is certified to use costs {cost:.2f} "
                    f"nats of held-out likelihood{measured}.")
        else:
            tail = f"`{name(best)}` is {cost:.2f} nats behind it{measured}, and certified where it is not."
        words.append(f"An uncertified model has a lower nll_iw here (`{name(other)}`, {pm(other, 'nll_iw', 2)} "
                     f"nats, KL {pm(other, 'kl', 3)}): {tail}")
    return " ".join(words)


def latent_cost(ranked: list[tuple[str, dict]]) -> dict | None:
    """The best certified row's nll_iw minus the best uncertified row's, paired over seeds (None
    where either is missing or the uncertified one is not better)."""
    certified = [r for rank, r in ranked if rank != "—"]
    uncertified = [r for rank, r in ranked if rank == "—" and _finite(r.get("nll_iw_mean"))]
    if not certified or not uncertified or uncertified[0]["nll_iw_mean"] >= certified[0]["nll_iw_mean"]:
        return None
    gap = difference(certified[0], uncertified[0])
    return {"certified": name(certified[0]), "versus": name(uncertified[0]),
            "mean": certified[0]["nll_iw_mean"] - uncertified[0]["nll_iw_mean"],
            **({} if gap is None else {"paired_mean": gap.mean, "se": gap.se, "n": gap.n, "separated": gap.separated})}


def latent_costs(ranked: list[tuple[str, dict]]) -> dict:
    """Every certified row's nll_iw minus the best uncertified row's, paired over seeds: what each
    certified latent costs in likelihood ({} where no uncertified row is better)."""
    uncertified = [r for rank, r in ranked if rank == "—" and _finite(r.get("nll_iw_mean"))]
    if not uncertified:
        return {}
    out = {}
    for rank, r in ranked:
        gap = difference(r, uncertified[0]) if rank != "—" else None
        if gap is not None and uncertified[0]["nll_iw_mean"] < r["nll_iw_mean"]:
            out[name(r)] = {"versus": name(uncertified[0]), **vars(gap), "separated": gap.separated}
    return out


def _delta(d: Paired | None) -> str:
    if d is None:
        return "—"
    return f"{d.mean:+.3f}" if d.se != d.se else f"{d.mean:+.3f} ± {d.se:.3f}"


def _finite(value) -> bool:
    return value is not None and value == value and value not in (float("inf"), float("-inf"))


def table_rows(records: list[dict], margin: float) -> list[dict]:
    """One row per condition, dataset and row label (mean ± std over seeds), each carrying its
    per-seed nll_iw (``nll_iw_by_seed``) for the paired comparisons of the ranking."""
    rows = aggregate(records, ["condition", "dataset", "label", "method"], margin)
    for row in rows:
        row["nll_iw_by_seed"] = by_seed([r for r in records if (r["cell"]["condition"], r["cell"]["dataset"],
                                                                r["cell"]["label"]) ==
                                         (row["condition"], row["dataset"], row["label"])], "nll_iw")
    return rows


#: the ranked table's columns (Markdown), and the row values under them
TABLE_HEADER = ["rank", "method", "nll_iw", "Δ to above", "ELBO", "KL", "MI", "AU", "probe acc. %", "chance %",
                "certified (auto K)", "certified (own K)"]


def table(ranked: list[tuple[str, dict]]) -> str:
    """The ranked rows as a Markdown table (``TABLE_HEADER``)."""
    body = [[rank, name(r), pm(r, "nll_iw", 2), _delta(r.get("vs_above")), pm(r, "elbo", 2), pm(r, "kl"),
             pm(r, "mutual_info"), pm(r, "active_units", 1), pct(r, "probe_accuracy"), pct(r, "chance_accuracy"),
             table1.certified_auto(r), certified_share(r)] for rank, r in ranked]
    return md_table(TABLE_HEADER, body)


def verdict_of(ranked: list[tuple[str, dict]], sentence: str) -> dict:
    """What the JSON keeps of one ranked table: the order, ties, latent costs and the sentence."""
    return {"ranking": [name(r) for rank, r in ranked if rank != "—"],
            "ranks": [rank for rank, r in ranked if rank != "—"],
            "vs_above": [None if r.get("vs_above") is None else vars(r["vs_above"]) for rank, r in ranked if rank != "—"],
            "latent_cost": latent_cost(ranked),
            "latent_costs": latent_costs(ranked),
            "recommendation": sentence}


def write(run: RunContext, records: list[dict]) -> Report:
    rows = table_rows(records, run.certificate_margin)
    parts = [run.header(TITLE, [
        "rank: among methods certified in every seed at the auto-K geometry (the same test for every method), by "
        "held-out nll_iw (importance-weighted bound on -log p(x) in shell space, 500 samples; lower is better); '—': "
        "not certified in every seed there (listed by nll_iw)",
        (f"=k: tied with the row above (their nll_iw difference, paired over seeds: same seed, same test rows, is "
         f"within {TIE_SE:g} standard errors of zero); Δ: nll_iw minus the row above's, mean ± paired standard error"),
        ("nll_iw is a bound (exact for a collapsed model, loose for one that uses its latent): a difference "
         "under 0.1 nats is re-evaluated with 5,000 importance samples in reevaluation.md where that file exists"),
        ("MI: a sampled estimate of the mutual information between x and z on held-out rows; it is biased and "
         "can go negative, so values near zero (a collapsed model's) read as zero"),
        "shell: K = the number of classes (our choice; the paper's text does not give K); 'shell @ auto K' and "
        "'shell_lagrange @ K = classes' train the two shell methods at each other's K",
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
            parts.append(table(ranked) + "\n")
            sentence = recommendation(ranked)
            parts.append(f"**Recommendation.** {sentence}\n")
            verdict[f"{condition}/{dataset}"] = verdict_of(ranked, sentence)
    path = run.out / f"{NAME}.md"
    io.write_text(path, "\n".join(parts))
    json_path = run.out / f"{NAME}.json"
    io.write_json(json_path, verdict)
    return Report([path, json_path], summary=f"{len(records)} cells; wrote {path}", verdict=verdict)


register_experiment(NAME, TITLE, "beyond the paper", DATASETS, cells, write)
