"""Training dynamics with and without the norm constraint (paper Figure 1).

shell (boundary + norm penalties) against shell_boundary (boundary penalty only), moderate
condition: held-out KL, the boundary penalty L_b (training batch mean) and held-out norm
satisfaction over epochs, from ``history_`` (evaluated every epoch). The paper claims that
without the norm constraint the decoder outputs drift out of the shell, the boundary penalty
oscillates and the KL is unstable; with it both settle quickly at a high KL.
"""

from __future__ import annotations

import numpy as np

from shellvae.base import storage
from shellvae.experiments.common import CONDITION_TEXT, Report, RunContext, register_experiment
from shellvae.reporting.tables import format_mean_std, md_table, mean_std

NAME = "dynamics"
TITLE = "Training dynamics with and without the norm constraint (paper Figure 1)"
DATASETS = ("synthetic",)
CONDITION = "moderate"
METHODS = ("shell_boundary", "shell")
SERIES = {"val_kl": "held-out KL (nats)", "train_l_b": "boundary penalty L_b (train)",
          "val_norm_satisfaction": "norm satisfaction (held-out)", "train_l_n": "norm penalty L_n (train)"}


def cells(run: RunContext):
    return [run.cell(dataset, CONDITION, method, seed, eval_every=1)
            for dataset in run.datasets for method in METHODS for seed in run.seeds]


def curves(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and std over seeds of a history column (NaN where a run lacks it)."""
    runs = [[h.get(key) for h in r["history"]] for r in records if r.get("status") == "ok"]
    if not runs:
        return np.array([]), np.array([]), np.array([])
    n = min(len(x) for x in runs)
    arr = np.array([[np.nan if v is None else v for v in x[:n]] for x in runs], dtype=float)
    std = arr.std(axis=0, ddof=1) if len(arr) > 1 else np.full(n, np.nan)
    return np.arange(1, n + 1), arr.mean(axis=0), std


def _tail_stats(records, key):
    """Per run: mean and std of a history column over the second half of training; then mean ± std over seeds."""
    means, stds = [], []
    for r in records:
        if r.get("status") != "ok":
            continue
        vals = np.array([h.get(key) for h in r["history"]], dtype=float)
        tail = vals[len(vals) // 2:]
        tail = tail[np.isfinite(tail)]
        if len(tail):
            means.append(float(tail.mean()))
            stds.append(float(tail.std()))
    return mean_std(means), mean_std(stds)


def write(run: RunContext, records: list[dict]) -> Report:
    from shellvae.reporting.figures import plot_dynamics

    parts = [run.header(TITLE, [
        (f"{CONDITION_TEXT[CONDITION]}; K = the number of classes (8 synthetic, 10 images; our choice: the paper's text does not give K); two-stage training (first 20% of "
        "epochs: minimal KL weight, no penalties); held-out metrics every epoch"),
        "tail: the second half of training; 'std within run' measures oscillation (mean over seeds ± std)",
    ])]
    files, verdict = [], {}
    for dataset in run.datasets:
        by_method = {m: [r for r in records if r["cell"]["dataset"] == dataset and r["cell"]["method"] == m]
                     for m in METHODS}
        fig = run.out / f"{NAME}_{dataset}.png"
        plot_dynamics(fig, {m: {k: curves(rs, k) for k in SERIES} for m, rs in by_method.items()}, SERIES,
                      title=f"{dataset}, {CONDITION_TEXT[CONDITION].split(':')[0]} condition")
        files.append(fig)
        header = ["method", "final KL", "tail KL mean", "tail KL std within run", "tail L_b mean",
                  "tail L_b std within run", "final norm sat. %", "final coverage %"]
        body = []
        for m, rs in by_method.items():
            ok = [r for r in rs if r.get("status") == "ok"]

            def final(k, ok=ok):
                return mean_std([r["history"][-1].get(k) for r in ok])

            (klm, klm_s, _), (kls, kls_s, _) = _tail_stats(ok, "val_kl")
            (lbm, lbm_s, _), (lbs, lbs_s, _) = _tail_stats(ok, "train_l_b")
            ns = final("val_norm_satisfaction")
            cov = final("val_feasible_coverage")
            body.append([m, format_mean_std(*final("val_kl")[:2]), format_mean_std(klm, klm_s),
                         format_mean_std(kls, kls_s), format_mean_std(lbm, lbm_s, 5), format_mean_std(lbs, lbs_s, 5),
                         format_mean_std(100 * ns[0], 100 * ns[1], 1), format_mean_std(100 * cov[0], 100 * cov[1], 1)])
            verdict[f"{dataset}/{m}"] = {"final_kl": final("val_kl")[0], "tail_kl_std": kls, "tail_l_b_std": lbs,
                                         "final_norm_satisfaction": ns[0]}
        parts.append(f"## {dataset}\n\n![dynamics]({fig.name})\n")
        parts.append(md_table(header, body) + "\n")
    path = run.out / f"{NAME}.md"
    storage.write_text(path, "\n".join(parts))
    json_path = run.out / f"{NAME}.json"
    storage.write_json(json_path, verdict)
    return Report([path, json_path, *files], summary=f"wrote {path}", verdict=verdict)


register_experiment(NAME, TITLE, "Figure 1", DATASETS, cells, write)
