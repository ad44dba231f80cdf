"""Figures (matplotlib, written atomically as PNG): image grids of reconstructions and samples.

Images are shown in data space: decoder outputs go back through the shell's inverse transform,
then are clipped to the data's pixel range ([0, 1] for the bundled image loaders).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shellvae import io  # noqa: E402
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
    with io.atomic_path(path) as tmp:
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

    from shellvae.metrics import encode_all

    mu, logvar = encode_all(est.model_, torch.as_tensor(est.shell_.transform(X), dtype=torch.float32))
    gen = torch.Generator(device=mu.device).manual_seed(0)
    return (mu + torch.randn(mu.shape, generator=gen, device=mu.device) * (0.5 * logvar).exp()).cpu().numpy()
