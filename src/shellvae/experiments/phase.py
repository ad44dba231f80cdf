"""The collapse phase transition (Li et al. 2025; docs/method.md §5).

Held-out KL and active units against sigma^2 / lambda_max on a log grid from 0.1 to 20 (beta =
1), for the vanilla MLP VAE, the shell method, and a linear VAE (no hidden layers), beside the
linear-VAE closed form computed from the spectrum of the shell training data:

    KL(sigma^2) = sum_{lambda_j > beta sigma^2} (1/2) log(lambda_j / (beta sigma^2)),

over the top ``latent_dim`` eigenvalues (a linear VAE with d latent dims keeps at most d
directions). Two checks, both reported as verdicts:

- onset: the smallest grid ratio from which vanilla's mean KL stays below ``COLLAPSE_KL`` nats,
  against the predicted threshold ratio 1 / beta (= lambda_max / beta in sigma^2); it passes
  when within a factor ``ONSET_FACTOR``.
- linear: the trained linear VAE's KL against the closed form at every grid ratio, within
  ``LINEAR_ABS_TOL + LINEAR_REL_TOL * closed form``.

docs/method.md §8: the onset moves towards lambda_max with training length, so the profile trains
long enough for the KL curves to settle; the report gives each run's KL change over its last
quarter of epochs as the convergence check.
"""

from __future__ import annotations

import numpy as np

from shellvae.base import storage
from shellvae.experiments.common import Report, RunContext, aggregate, csv_columns, pm, share, register_experiment
from shellvae.reporting.tables import md_table
from shellvae.core.theory import collapse_threshold, linear_vae_active_units, linear_vae_kl

NAME = "phase"
TITLE = "The collapse phase transition: KL against sigma^2 / lambda_max (beta = 1)"
DATASETS = ("synthetic",)
BETA = 1.0
COLLAPSE_KL = 0.05  # nats: below this a run counts as collapsed
ONSET_FACTOR = 1.5
LINEAR_ABS_TOL = 0.05  # nats
LINEAR_REL_TOL = 0.10
MODELS = ("vanilla", "shell", "linear")


def _condition(ratio: float) -> str:
    return f"ratio={ratio:g}"


def cells(run: RunContext):
    p = run.profile
    out = []
    for dataset in run.datasets:
        for ratio in p.phase_ratios:
            cond = _condition(ratio)
            for seed in run.seeds:
                common = {"sigma2_ratio": ratio, "beta": BETA}
                out.append(run.cell(dataset, cond, "vanilla", seed, label="vanilla", epochs=p.phase_epochs,
                                    eval_every=max(1, p.phase_epochs // 20), **common))
                out.append(run.cell(dataset, cond, "shell", seed, label="shell", epochs=p.phase_epochs,
                                    eval_every=max(1, p.phase_epochs // 20), **common))
                out.append(run.cell(dataset, cond, "vanilla", seed, label="linear", epochs=p.linear_epochs,
                                    encoder_hidden=[], decoder_hidden=[], batch_size=256, lr=p.linear_lr,
                                    eval_every=max(1, p.linear_epochs // 20), **common))
    return out


def collapse_onset(ratios, kls, threshold: float = COLLAPSE_KL) -> float | None:
    """Smallest ratio from which every KL (at that ratio and all larger ones) is below ``threshold``."""
    order = np.argsort(ratios)
    r, k = np.asarray(ratios, dtype=float)[order], np.asarray(kls, dtype=float)[order]
    onset = None
    for i in range(len(r) - 1, -1, -1):
        if not (np.isfinite(k[i]) and k[i] < threshold):
            break
        onset = float(r[i])
    return onset


def late_change(history: list[dict], key: str = "val_kl") -> float | None:
    """|value at the end - value at 75% of training|: how far a run still moved in its last quarter."""
    points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
    if len(points) < 2:
        return None
    last_epoch = points[-1][0]
    before = [v for e, v in points if e <= 0.75 * last_epoch]
    return abs(points[-1][1] - before[-1]) if before else None


def theory_kl(spectrum, ratio: float, latent_dim: int = 8, beta: float = BETA) -> float:
    lam = np.asarray(spectrum, dtype=float)
    return linear_vae_kl(lam[:latent_dim], ratio * lam[0], beta)


def _late_changes(ok: list[dict], dataset: str, lo: float = 0.0, hi: float = np.inf) -> dict:
    """Per model: the late KL changes of its runs on ``dataset`` with lo <= ratio <= hi."""
    return {m: [r["cell"]["late_kl_change"] for r in ok if r["cell"]["dataset"] == dataset
                and r["cell"]["label"] == m and r["cell"]["late_kl_change"] is not None
                and lo <= r["cell"]["ratio"] <= hi] for m in MODELS}


def write(run: RunContext, records: list[dict]) -> Report:
    from shellvae.reporting.figures import plot_phase

    files, parts, verdicts = [], [], {}
    ok = [r for r in records if r.get("status") == "ok"]
    for r in records:
        r["cell"]["ratio"] = float(r["cell"]["condition"].split("=", 1)[1])
        r["cell"]["late_kl_change"] = late_change(r.get("history", [])) if r.get("status") == "ok" else None
    rows = aggregate(records, ["dataset", "ratio", "label"], run.certificate_margin)
    for dataset in run.datasets:
        spectra = [r["spectrum"] for r in ok if r["cell"]["dataset"] == dataset]
        if not spectra:
            continue
        spectrum = np.asarray(spectra[0])
        lam_max = float(spectrum[0])
        predicted = collapse_threshold(lam_max, BETA) / lam_max  # ratio 1 / beta
        index = {(r["ratio"], r["label"]): r for r in rows if r["dataset"] == dataset}
        ratios = sorted({k[0] for k in index})
        theory = [theory_kl(spectrum, x) for x in ratios]
        theory_au = [linear_vae_active_units(spectrum[:8], x * lam_max, BETA) for x in ratios]
        series = {m: [index.get((x, m), {}).get("kl_mean", np.nan) for x in ratios] for m in MODELS}
        series_std = {m: [index.get((x, m), {}).get("kl_std", np.nan) for x in ratios] for m in MODELS}
        au = {m: [index.get((x, m), {}).get("active_units_mean", np.nan) for x in ratios] for m in MODELS}

        onset = {m: collapse_onset(ratios, series[m]) for m in MODELS}
        dense = np.geomspace(min(ratios), max(ratios), 400)
        theory_onset = collapse_onset(dense, [theory_kl(spectrum, x) for x in dense])
        factor = None if onset["vanilla"] is None else max(onset["vanilla"] / predicted, predicted / onset["vanilla"])
        onset_pass = factor is not None and factor <= ONSET_FACTOR
        err = np.asarray(series["linear"]) - np.asarray(theory)
        allowed = LINEAR_ABS_TOL + LINEAR_REL_TOL * np.asarray(theory)
        finite = np.isfinite(err)
        linear_pass = bool(finite.all() and (np.abs(err) <= allowed).all())
        big = np.asarray(theory) >= 0.1
        rel = np.abs(err[big & finite]) / np.asarray(theory)[big & finite]
        late = _late_changes(ok, dataset)
        late_near = _late_changes(ok, dataset, 0.5 * predicted, 2.0 * predicted)
        epochs = {m: next((r["epochs"] for r in ok if r["cell"]["label"] == m), None) for m in MODELS}
        verdict = {
            "dataset": dataset, "lambda_max": lam_max, "beta": BETA, "predicted_threshold_ratio": predicted,
            "collapse_kl": COLLAPSE_KL, "onset_ratio": onset, "theory_onset_ratio": theory_onset,
            "onset_factor": factor, "onset_factor_allowed": ONSET_FACTOR, "onset_pass": onset_pass,
            "linear_max_abs_error": float(np.nanmax(np.abs(err))) if finite.any() else None,
            "linear_max_rel_error_where_kl_ge_0.1": float(rel.max()) if len(rel) else None,
            "linear_tolerance": f"|KL_linear - KL_theory| <= {LINEAR_ABS_TOL} + {LINEAR_REL_TOL} * KL_theory",
            "linear_pass": linear_pass, "epochs": epochs, "seeds": run.seeds,
            "max_late_kl_change": {m: (max(v) if v else None) for m, v in late.items()},
            "max_late_kl_change_near_threshold": {m: (max(v) if v else None) for m, v in late_near.items()},
            "ratios": ratios,
        }
        verdicts[dataset] = verdict
        fig = run.out / f"{NAME}_{dataset}.png"
        plot_phase(fig, ratios, {m: (series[m], series_std[m]) for m in MODELS}, au,
                   theory=(dense, [theory_kl(spectrum, x) for x in dense],
                           [linear_vae_active_units(spectrum[:8], x * lam_max, BETA) for x in dense]),
                   threshold=predicted, onset=onset["vanilla"],
                   title=f"{dataset}: collapse vs sigma^2 / lambda_max (beta = 1, lambda_max = {lam_max:.3f})")
        files.append(fig)

        fmt = lambda v: "none on the grid" if v is None else f"{v:.3g}"
        parts.append(f"## {dataset} (lambda_max of the shell data = {lam_max:.4f})\n")
        parts.append("\n".join([
            (f"- **onset of collapse (vanilla MLP VAE)**: KL < {COLLAPSE_KL} nats from sigma^2 / lambda_max = "
            f"**{fmt(onset['vanilla'])}** on; predicted threshold {predicted:g} (sigma^2 = lambda_max / beta); "
            f"factor {(f'{factor:.3g}') if factor else '—'} (allowed {ONSET_FACTOR}): "
            f"**{'PASS' if onset_pass else 'FAIL'}**"),
            (f"- the closed form itself drops below {COLLAPSE_KL} nats at ratio {fmt(theory_onset)} (it reaches 0 at 1); "
            f"linear VAE onset {fmt(onset['linear'])}, shell onset {fmt(onset['shell'])}"),
            f"- **linear VAE vs closed form**: max |error| {verdict['linear_max_abs_error']:.4f} nats over "
            f"{len(ratios)} ratios; max relative error where the closed form >= 0.1 nats: "
            + (f"{100 * verdict['linear_max_rel_error_where_kl_ge_0.1']:.1f}%" if len(rel) else "—")
            + f"; tolerance {verdict['linear_tolerance']}: **{'PASS' if linear_pass else 'FAIL'}**",
            f"- convergence: epochs vanilla/shell {epochs['vanilla']}, linear {epochs['linear']}; largest change of "
            "held-out KL over the last quarter of training, at ratios 0.5-2 (where the onset is judged): "
            + ", ".join(f"{m} {v:.3f}" if v is not None else f"{m} —"
                        for m, v in verdict["max_late_kl_change_near_threshold"].items())
            + " nats; over the whole grid: "
            + ", ".join(f"{m} {v:.3f}" if v is not None else f"{m} —"
                        for m, v in verdict["max_late_kl_change"].items()) + " nats",
            "",
            f"![phase]({fig.name})",
            "",
        ]))
        header = ["sigma^2 / lambda_max", "closed-form KL", "closed-form AU", "linear KL", "linear AU",
                  "vanilla KL", "vanilla AU", "shell KL", "shell AU", "shell certified"]
        body = []
        for i, x in enumerate(ratios):
            g = {m: index.get((x, m), {}) for m in MODELS}
            body.append([f"{x:.3g}", f"{theory[i]:.3f}", theory_au[i], pm(g["linear"], "kl"),
                         pm(g["linear"], "active_units", 1), pm(g["vanilla"], "kl"), pm(g["vanilla"], "active_units", 1),
                         pm(g["shell"], "kl"), pm(g["shell"], "active_units", 1), share(g["shell"], "certified")])
            for m in MODELS:
                if (x, m) in index:
                    index[(x, m)]["closed_form_kl"] = theory[i]
                    index[(x, m)]["closed_form_au"] = theory_au[i]
        parts.append(md_table(header, body) + "\n")

    head = run.header(TITLE, [
        (f"beta = {BETA}; vanilla and shell: the paper's MLP ([256, 128] / [128, 256]), 8 latent dims, batch 128, "
        f"lr 1e-3, {run.profile.phase_epochs} epochs; shell with K = 8 and two-stage training"),
        (f"linear VAE: ShellVAE('vanilla', encoder_hidden=(), decoder_hidden=()), batch 256, "
        f"lr {run.profile.linear_lr:g}, {run.profile.linear_epochs} epochs"),
        "closed form: docs/method.md §5 on the covariance spectrum of the shell training data (top 8 eigenvalues)",
        f"collapsed = held-out KL < {COLLAPSE_KL} nats (mean over seeds)",
    ], epochs=f"{run.profile.phase_epochs} (vanilla, shell) / {run.profile.linear_epochs} (linear)")
    path = run.out / f"{NAME}.md"
    storage.write_text(path, head + "\n" + "\n".join(parts))
    csv_path = run.write_csv(NAME, rows, csv_columns(["dataset", "ratio", "label"],
                                                     ["kl", "active_units", "certified", "recon_mse"],
                                                     ["closed_form_kl", "closed_form_au"]))
    json_path = run.out / f"{NAME}.json"
    storage.write_json(json_path, verdicts)
    lines = []
    for d, v in verdicts.items():
        lines.append(f"{d}: onset {v['onset_ratio']['vanilla']} vs predicted {v['predicted_threshold_ratio']:g} -> "
                     f"{'PASS' if v['onset_pass'] else 'FAIL'}; linear max |err| {v['linear_max_abs_error']:.4f} -> "
                     f"{'PASS' if v['linear_pass'] else 'FAIL'}")
    return Report([path, csv_path, json_path, *files], summary="\n".join(lines), verdict=verdicts)


register_experiment(NAME, TITLE, "Li et al. 2025", DATASETS, cells, write)
