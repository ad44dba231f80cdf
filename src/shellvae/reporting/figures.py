"""Figures (matplotlib, written atomically as PNG): image grids of reconstructions and samples.

Images are shown in data space: decoder outputs go back through the shell's inverse transform,
then are clipped to the data's pixel range ([0, 1] for the bundled image loaders).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shellvae.base import storage  # noqa: E402
from shellvae.errors import ShellVAEError  # noqa: E402


def _to_images(rows: np.ndarray, image_shape) -> np.ndarray:
    c, h, w = image_shape
    if rows.shape[1] != c * h * w:
        raise ShellVAEError(f"rows of {rows.shape[1]} values cannot be shown as images of shape {tuple(image_shape)}.")
    images = rows.reshape(len(rows), c, h, w).transpose(0, 2, 3, 1)
    return np.clip(images, 0.0, 1.0)


def save_image_grid(rows: np.ndarray, image_shape, path, *, n_cols: int = 8, title: str = "",
                    row_labels: list[str] | None = None) -> None:
    """Flat image rows (N, C*H*W) as a grid PNG at ``path``."""
    images = _to_images(np.asarray(rows, dtype=np.float64), image_shape)
    n_rows = int(np.ceil(len(images) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.2 * n_cols, 1.2 * n_rows + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i < len(images):
            img = images[i]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0.0, vmax=1.0)
        if row_labels and i % n_cols == 0 and i // n_cols < len(row_labels):
            ax.set_ylabel(row_labels[i // n_cols], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with storage.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def save_reconstructions(est, X: np.ndarray, image_shape, path, n: int = 8) -> None:
    """Originals, reconstructions from the posterior mean, and from a sampled z, one row each."""
    X = np.asarray(X[:n])
    z_mean = est.transform(X)
    rows = [X, est.inverse_transform(z_mean), est.inverse_transform(_sampled_latents(est, X))]
    save_image_grid(np.concatenate(rows), image_shape, path, n_cols=len(X),
                    title=f"{est.method_.name}: data / recon (mean z) / recon (sampled z)",
                    row_labels=["data", "mean z", "sampled z"])


def save_samples(est, image_shape, path, n: int = 32, seed: int = 0) -> None:
    """Decoded prior samples z ~ N(0, I)."""
    save_image_grid(est.sample(n, seed=seed), image_shape, path, title=f"{est.method_.name}: samples from the prior")


def _sampled_latents(est, X: np.ndarray) -> np.ndarray:
    import torch

    from shellvae.evaluation.metrics import encode_all
    from shellvae.core.model import sample_posterior

    mu, logvar = encode_all(est.model_, torch.as_tensor(est.shell_.transform(X), dtype=torch.float32))
    gen = torch.Generator(device=mu.device).manual_seed(0)
    return sample_posterior(mu, logvar, gen).cpu().numpy()


# -- figures of ``shellvae reproduce`` (experiments/) ------------------------------------------------------
def _save(fig, path) -> None:
    fig.tight_layout()
    with storage.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _band(ax, x, mean, std, floor: float = -np.inf, **kw):
    """``mean`` with a band of ± ``std``; ``floor`` clips the band's lower edge (a quantity that is
    never below it, e.g. a penalty, gets no band below it)."""
    x, mean, std = (np.asarray(a, dtype=float) for a in (x, mean, std))
    line, = ax.plot(x, mean, **kw)
    ok = np.isfinite(std)
    if ok.any():
        lower = np.maximum(mean - std, floor)
        ax.fill_between(x[ok], lower[ok], (mean + std)[ok], color=line.get_color(), alpha=0.2, lw=0)
    return line


def plot_phase(path, ratios, kl: dict, active: dict, *, theory, threshold: float, onset: float | None,
               title: str = "") -> None:
    """KL (mean ± std over seeds) and active units against sigma^2 / lambda_max, log x axis.

    ``kl``: label -> (means, stds) on ``ratios``; ``active``: label -> means; ``theory``:
    (dense ratios, closed-form KL, closed-form active units).
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = {"vanilla": "o", "shell": "s", "linear": "^"}
    for label, (mean, std) in kl.items():
        _band(ax1, ratios, mean, std, marker=markers.get(label, "o"), ms=4, label=f"{label} (trained)")
        ax2.plot(ratios, active[label], marker=markers.get(label, "o"), ms=4, label=label)
    ax1.plot(theory[0], theory[1], "k--", lw=1.2, label="linear VAE closed form")
    ax2.step(theory[0], theory[2], "k--", lw=1.2, where="post", label="closed form")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.axvline(threshold, color="crimson", lw=1, label=f"predicted threshold ({threshold:g})")
        if onset is not None:
            ax.axvline(onset, color="crimson", lw=1, ls=":", label=f"measured vanilla onset ({onset:.3g})")
        ax.set_xlabel("sigma^2 / lambda_max (beta = 1)")
    ax1.set_ylabel("held-out KL (nats)")
    ax2.set_ylabel("active units")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_dynamics(path, curves: dict, series: dict, *, title: str = "") -> None:
    """One panel per history column (``series``: key -> axis label); ``curves``: method -> key -> (epochs, mean, std).

    Every series here (KL, penalties, shares) is non-negative, so the ± std bands stop at 0.
    """
    fig, axes = plt.subplots(1, len(series), figsize=(3.6 * len(series), 3.4), squeeze=False)
    colors = {method: f"C{i}" for i, method in enumerate(curves)}  # the same in every panel, even one a method lacks
    for ax, (key, label) in zip(axes[0], series.items()):
        for method, by_key in curves.items():
            epochs, mean, std = by_key[key]
            if len(epochs) and np.isfinite(mean).any():
                _band(ax, epochs, mean, std, floor=0.0, color=colors[method], label=method)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=9)
        if key == "train_l_b" or key == "train_l_n":
            ax.set_yscale("symlog", linthresh=1e-4)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_coverage(path, panels: dict, *, title: str = "") -> None:
    """Histograms of per-sample ||xhat_i - mu_c(i)||^2 with W and delta marked; ``panels``: method -> (values, W, delta)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (method, (values, W, delta)) in zip(axes[0], panels.items()):
        values = np.asarray(values, dtype=float)
        hi = max(float(np.quantile(values, 0.995)), delta, W) * 1.1
        ax.hist(values, bins=60, range=(0, hi), color="steelblue", alpha=0.8)
        ax.axvline(W, color="green", lw=1.5, label=f"W = {W:.3f}")
        ax.axvline(delta, color="crimson", lw=1.5, label=f"delta = {delta:.3f}")
        inside = float(((values >= W) & (values <= delta)).mean())
        ax.set_title(f"{method}: {100 * inside:.1f}% in [W, delta]", fontsize=9)
        ax.set_xlabel("||xhat_i - mu_c(i)||^2 (held-out, posterior mean)")
        ax.set_ylabel("samples")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_sensitivity(path, sweeps: dict, *, metrics: dict, title: str = "") -> None:
    """Rows = sweeps (name -> aggregated rows with 'value', '<m>_mean', '<m>_std'), columns = metrics."""
    fig, axes = plt.subplots(len(sweeps), len(metrics), figsize=(3.6 * len(metrics), 3.0 * len(sweeps)),
                             squeeze=False)
    for axrow, (sweep, rows) in zip(axes, sweeps.items()):
        x = [r["value"] for r in rows]
        for ax, (m, label) in zip(axrow, metrics.items()):
            _band(ax, x, [r[f"{m}_mean"] for r in rows], [r[f"{m}_std"] for r in rows], marker="o", ms=4)
            ax.set_xlabel(sweep)
            ax.set_title(label, fontsize=9)
            if sweep == "lambda_b":
                ax.set_xscale("log")
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)
