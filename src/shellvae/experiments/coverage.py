"""Feasible-region coverage at inference (paper Figure 2).

The distribution of the per-sample cluster-aware loss ||xhat_i - mu_c(i)||^2 on held-out data
(posterior-mean decoding; each sample's cluster from the fitted K-means), against W and delta,
for the shell method and the vanilla VAE in the moderate condition. The paper claims 99.7% of
samples inside the region. Note what the region means per sample: a sample below W is
reconstructed closer to its cluster centre than the average training sample is, which is not
a failure; a sample above delta is farther than a collapsed model is on average. A collapsed
model's per-sample losses spread around delta (each cluster centre is at its own distance from
the constant output), so a share of them lands inside the region too: coverage alone does not
separate a collapsed model from a working one; L_clu (their mean) against delta does.
"""

from __future__ import annotations

import numpy as np

from shellvae.base import storage
from shellvae.experiments import paper
from shellvae.experiments.common import CONDITION_TEXT, Report, RunContext, register_experiment
from shellvae.reporting.tables import format_mean_std, md_table, mean_std

NAME = "coverage"
TITLE = "Feasible-region coverage at inference (paper Figure 2)"
DATASETS = ("synthetic", "mnist")
CONDITION = "moderate"
METHODS = ("vanilla", "shell")


def cells(run: RunContext):
    return [run.cell(dataset, CONDITION, method, seed)
            for dataset in run.datasets for method in METHODS for seed in run.seeds]


def shares(d: np.ndarray, W: float, delta: float) -> dict:
    return {"inside": float(((d >= W) & (d <= delta)).mean()), "below_W": float((d < W).mean()),
            "above_delta": float((d > delta).mean()), "below_delta": float((d < delta).mean()),
            "median": float(np.median(d)), "mean": float(d.mean())}


def write(run: RunContext, records: list[dict]) -> Report:
    from shellvae.reporting.figures import plot_coverage

    parts = [run.header(TITLE, [
        f"{CONDITION_TEXT[CONDITION]}; K = the number of classes (8 synthetic, 10 images; our choice: the paper's text does not give K)",
        ("per-sample loss ||xhat_i - mu_c(i)||^2 on the test split, decoded from the posterior mean; inside = "
        "W <= loss <= delta (the paper's feasible coverage); below delta = the sample is reconstructed closer to its "
        "own centre than a collapsed model is on average"),
        f"paper: {100 * paper.COVERAGE:.1f}% of samples inside the region for its method (Figure 2)",
    ])]
    files, verdict = [], {}
    for dataset in run.datasets:
        panels, body = {}, []
        for m in METHODS:
            ok = [r for r in records if r["cell"]["dataset"] == dataset and r["cell"]["method"] == m
                  and r.get("status") == "ok"]
            if not ok:
                continue
            stats = [shares(np.asarray(r["per_sample_cluster_sq_dist"]), r["W"], r["delta"]) for r in ok]
            agg = {k: mean_std([s[k] for s in stats]) for k in stats[0]}
            geometry = {k: mean_std([r[k] for r in ok]) for k in ("W", "delta")}  # K-means differs by seed
            first = ok[0]
            panels[m] = (np.asarray(first["per_sample_cluster_sq_dist"]), first["W"], first["delta"])
            body.append([m, len(ok), *(format_mean_std(geometry[k][0], geometry[k][1], 4) for k in ("W", "delta")),
                         format_mean_std(100 * agg["inside"][0], 100 * agg["inside"][1], 1),
                         f"{100 * paper.COVERAGE:.1f}" if m == "shell" else "—",
                         format_mean_std(100 * agg["below_W"][0], 100 * agg["below_W"][1], 1),
                         format_mean_std(100 * agg["above_delta"][0], 100 * agg["above_delta"][1], 1),
                         format_mean_std(agg["median"][0], agg["median"][1], 4),
                         format_mean_std(agg["mean"][0], agg["mean"][1], 4)])
            verdict[f"{dataset}/{m}"] = {k: v[0] for k, v in (agg | geometry).items()}
        if not panels:
            continue
        fig = run.out / f"{NAME}_{dataset}.png"
        plot_coverage(fig, panels, title=f"{dataset}, {CONDITION_TEXT[CONDITION].split(':')[0]} condition, "
                                         f"held-out, seed {run.seeds[0]}")
        files.append(fig)
        parts.append(f"## {dataset}\n\n![coverage]({fig.name})\n")
        parts.append(md_table(["method", "seeds", "W", "delta", "inside [W, delta] %", "paper", "below W %",
                               "above delta %", "median loss", "mean loss (= L_clu)"], body) + "\n")
        if any(w >= d for _, w, d in panels.values()):
            parts.append("The region is EMPTY here (W >= delta): no sample can be inside it, and 'below W' and "
                         "'above delta' overlap. The guarantee does not apply at this K.\n")
    path = run.out / f"{NAME}.md"
    storage.write_text(path, "\n".join(parts))
    json_path = run.out / f"{NAME}.json"
    storage.write_json(json_path, verdict)
    return Report([path, json_path, *files], summary=f"wrote {path}", verdict=verdict)


register_experiment(NAME, TITLE, "Figure 2", DATASETS, cells, write)
