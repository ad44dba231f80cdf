"""One-off cost of the shell method against data size: shell transform, K-means and geometry.

GMM data (32 dims, 8 components) of 10,000 to 1,000,000 rows, K = 8, ``ClusterGeometry(kmeans="auto")``
(the default): ``shellvae.core.kmeans`` at every size (3 k-means++ restarts with Lloyd iterations on
a 20,000-row subset, Lloyd on all rows, then full-dimension passes; 32 features are below
``SEARCH_DIMS``, so there is no projection); the geometry (T, W, delta, lambda_max) follows from
the labels exactly. Each size is timed once, after a warm-up fit. The
right column puts the one-off cost in units of one shell training epoch of the same rows (the
per-row epoch cost is measured first, on 20,000 GMM rows, batch 128, one torch thread).

``--streaming`` adds, for each size, the data-larger-than-memory path: the rows saved as a .npy,
memory-mapped, the shell fitted in chunks and ``ClusterGeometry(kmeans="streaming")`` run on a
``ShellView`` of the map (K-means on a 100,000-row subset, then Lloyd passes over all rows in
chunks of 65,536), with its W and delta beside the in-memory ones.

    python bench/kmeans_scaling.py [--sizes 10000,30000,100000,300000,1000000] [--streaming]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch

from shellvae import ClusterGeometry, FeasibleRegion, SphericalShell, get_method, make_gmm, mlp_vae
from shellvae.training.batches import TrainData
from shellvae.training.methods import Objective
from shellvae.core.shell import ShellView
from shellvae.training.loop import train


def epoch_seconds_per_row() -> float:
    """Seconds per training row of a shell epoch (MLP VAE, batch 128), from a 20,000-row epoch."""
    X_raw = make_gmm(25_000, seed=0).X_train
    region = FeasibleRegion(8).fit(X_raw)
    X = region.transform(X_raw)
    method = get_method("shell")
    objective = Objective(sigma2=2 * region.geometry_.lambda_max_, region=region)
    options = dict(epochs=1, batch_size=128, lr=1e-3, seed=0, progress=False)
    train(mlp_vae(32), method, TrainData.build(X, region, method), objective, **options)  # warm-up
    history = train(mlp_vae(32), method, TrainData.build(X, region, method), objective, **options)
    return history[-1]["train_time_s"] / len(X)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,30000,100000,300000,1000000")
    ap.add_argument("--streaming", action="store_true", help="also time the memory-mapped, streaming path")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
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
        geometry = ClusterGeometry(8).fit(X)
        t_geo = time.perf_counter() - t0
        report(len(X), "in memory", t_shell, t_geo, per_row, geometry)
        if args.streaming:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "X.npy")
                np.save(path, X_raw)
                del X
                mapped = np.load(path, mmap_mode="r")
                t0 = time.perf_counter()
                shell = SphericalShell().fit(mapped)
                t_shell = time.perf_counter() - t0
                t0 = time.perf_counter()
                streamed = ClusterGeometry(8, kmeans="streaming").fit(ShellView(mapped, shell))
                report(len(mapped), "streaming", t_shell, time.perf_counter() - t0, per_row, streamed)


def report(n: int, method: str, t_shell: float, t_geo: float, per_row: float, geometry) -> None:
    one_off = t_shell + t_geo
    print(f"{n:9d}  {method:>15s}  {t_shell:8.3f}  {t_geo:18.3f}  {1e6 * one_off / n:7.2f}  "
          f"{one_off / (per_row * n):20.2f}   W {geometry.W_:.4f} delta {geometry.delta_collapse_:.4f}", flush=True)


if __name__ == "__main__":
    main()
