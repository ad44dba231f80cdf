"""One-off cost of the shell method against data size: shell transform, K-means and geometry.

GMM data (32 dims, 8 components) of 10,000 to 1,000,000 rows, K = 8, ``ClusterGeometry(kmeans="auto")``
(the default): full K-means (scikit-learn ``KMeans``, n_init = 3) up to ``MINIBATCH_THRESHOLD``
rows, ``MiniBatchKMeans`` (batch 4,096, n_init = 3) above it; the geometry (T, W, delta,
lambda_max) follows from the labels in NumPy. Each size is timed once, after a warm-up fit. The
right column puts the one-off cost in units of one shell training epoch of the same rows (the
per-row epoch cost is measured first, on 20,000 GMM rows, batch 128, one torch thread).

    python bench/kmeans_scaling.py [--sizes 10000,30000,100000,300000,1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from shellvae import ClusterGeometry, SphericalShell, get_method, make_gmm, mlp_vae
from shellvae.geometry import MINIBATCH_THRESHOLD
from shellvae.methods import TrainContext
from shellvae.train import TrainData, train


def epoch_seconds_per_row() -> float:
    """Seconds per training row of a shell epoch (MLP VAE, batch 128), from a 20,000-row epoch."""
    X = SphericalShell().fit_transform(make_gmm(25_000, seed=0).X_train)
    geometry = ClusterGeometry(8).fit(X)
    method = get_method("shell")
    ctx = TrainContext(sigma2=2 * geometry.lambda_max_, n_epochs=1, W=geometry.W_, delta=geometry.delta_collapse_)
    train(mlp_vae(32), method, TrainData.build(X, geometry, method), ctx, progress=False)  # warm-up
    history = train(mlp_vae(32), method, TrainData.build(X, geometry, method), ctx, progress=False)
    return history[-1]["train_time_s"] / len(X)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,30000,100000,300000,1000000")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"minibatch threshold {MINIBATCH_THRESHOLD} rows")
    per_row = epoch_seconds_per_row()
    ClusterGeometry(8).fit(SphericalShell().fit_transform(make_gmm(sizes[0], seed=1).X_train))  # warm-up
    print(f"{'rows':>9s}  {'method':>15s}  {'shell s':>8s}  {'K-means+geometry s':>18s}  {'us/row':>7s}  "
          f"{'= epochs of training':>20s}")
    for n in sizes:
        X_raw = make_gmm(n, seed=0, test_size=1 / n if n > 2 else 0.5).X_train  # (almost) all rows for training
        t0 = time.perf_counter()
        X = SphericalShell().fit_transform(X_raw)
        t_shell = time.perf_counter() - t0
        t0 = time.perf_counter()
        ClusterGeometry(8).fit(X)
        t_geo = time.perf_counter() - t0
        method = "MiniBatchKMeans" if len(X) > MINIBATCH_THRESHOLD else "KMeans"
        one_off = t_shell + t_geo
        print(f"{len(X):9d}  {method:>15s}  {t_shell:8.3f}  {t_geo:18.3f}  {1e6 * one_off / len(X):7.2f}  "
              f"{one_off / (per_row * len(X)):20.2f}", flush=True)


if __name__ == "__main__":
    main()
