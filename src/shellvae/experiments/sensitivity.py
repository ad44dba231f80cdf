"""Sensitivity to the shell's inner radius r_min and the boundary-penalty weight lambda_b (paper Figure 3).

The shell method in the moderate condition: r_min swept with r_max = 1.1 and lambda_b = 10;
lambda_b swept with r_min = 0.9. The two sweeps share their default point (one cell). r_min
changes the shell data itself (and so lambda_max, sigma^2, W and delta): reconstruction errors
across r_min are in different shell spaces.
"""

from __future__ import annotations

from shellvae.base import storage
from shellvae.training.methods import Shell
from shellvae.core.shell import R_MAX, R_MIN
from shellvae.experiments.common import (
    register_experiment,
    CONDITION_TEXT,
    Report,
    RunContext,
    aggregate,
    certified_share,
    csv_columns,
    pct,
    pm,
)
from shellvae.reporting.tables import md_table

NAME = "sensitivity"
TITLE = "Sensitivity to r_min and lambda_b (paper Figure 3)"
DATASETS = ("synthetic",)
CONDITION = "moderate"
DEFAULT_R_MIN, R_MAX, DEFAULT_LAMBDA_B = R_MIN, R_MAX, Shell().lambda_b
VALUES = ["kl", "active_units", "feasible_coverage", "recon_mse", "norm_satisfaction", "l_clu", "certified", "W",
          "delta", "lambda_max"]


def cells(run: RunContext):
    out = []
    for dataset in run.datasets:
        for seed in run.seeds:
            for r_min in run.profile.r_min_grid:
                out.append(run.cell(dataset, CONDITION, "shell", seed, label=f"r_min={r_min:g}", r_min=r_min,
                                    r_max=R_MAX))
            for lam in run.profile.lambda_b_grid:
                # the default lambda_b is left implicit, so the shared point is the same cell as Table 1's shell
                params = None if lam == DEFAULT_LAMBDA_B else {"lambda_b": lam}
                out.append(run.cell(dataset, CONDITION, "shell", seed, label=f"lambda_b={lam:g}",
                                    method_params=params, r_min=DEFAULT_R_MIN, r_max=R_MAX))
    return out


def write(run: RunContext, records: list[dict]) -> Report:
    from shellvae.reporting.figures import plot_sensitivity

    for r in records:
        name, value = r["cell"]["label"].split("=")
        r["cell"]["sweep"], r["cell"]["value"] = name, float(value)
    rows = aggregate(records, ["dataset", "sweep", "value"], run.certificate_margin)
    parts = [run.header(TITLE, [
        f"{CONDITION_TEXT[CONDITION]}; shell method, K = the paper's, two-stage training; r_max = {R_MAX}",
        f"r_min sweep at lambda_b = {DEFAULT_LAMBDA_B:g}; lambda_b sweep at r_min = {DEFAULT_R_MIN}; lambda_n = 10",
        "the paper gives no numbers for Figure 3 (its text names an optimal r_min and lambda_b, both lost formulas)",
    ])]
    files = []
    for dataset in run.datasets:
        sub = [r for r in rows if r["dataset"] == dataset]
        if not sub:
            continue
        fig = run.out / f"{NAME}_{dataset}.png"
        plot_sensitivity(fig, {s: sorted([r for r in sub if r["sweep"] == s], key=lambda r: r["value"])
                               for s in ("r_min", "lambda_b")},
                         metrics={"kl": "held-out KL (nats)", "feasible_coverage": "feasible coverage",
                                  "recon_mse": "recon MSE (shell space)"}, title=f"{dataset}: shell, moderate")
        files.append(fig)
        parts.append(f"## {dataset}\n\n![sensitivity]({fig.name})\n")
        header = ["sweep", "value", "KL", "AU", "coverage %", "recon MSE", "norm sat. %", "L_clu", "W", "delta",
                  "lambda_max", "certified"]
        body = [[r["sweep"], f"{r['value']:g}", pm(r, "kl"), pm(r, "active_units", 1), pct(r, "feasible_coverage"),
                 pm(r, "recon_mse", 5), pct(r, "norm_satisfaction"), pm(r, "l_clu"), pm(r, "W"), pm(r, "delta"),
                 pm(r, "lambda_max", 4), certified_share(r)]
                for s in ("r_min", "lambda_b") for r in sorted([r for r in sub if r["sweep"] == s],
                                                               key=lambda r: r["value"])]
        parts.append(md_table(header, body) + "\n")
    path = run.out / f"{NAME}.md"
    storage.write_text(path, "\n".join(parts))
    csv_path = run.write_csv(NAME, rows, csv_columns(["dataset", "sweep", "value"], VALUES))
    verdict = {f"{r['dataset']}/{r['sweep']}={r['value']:g}": {k: r[f"{k}_mean"] for k in VALUES} for r in rows}
    return Report([path, csv_path, *files], summary=f"wrote {path}", verdict=verdict)


register_experiment(NAME, TITLE, "Figure 3", DATASETS, cells, write)
