"""The shell method's whole-run overhead: everything a fit does, not only its epochs.

For each dataset and number of epochs, in one process and one torch thread, three runs in turn:

- ``vanilla``: the shell transform and the training epochs. Vanilla does not need the cluster
  geometry to train, so its run does not fit one (its certificate may fit one afterwards; that is
  reported apart, as ``geometry for vanilla's certificate``);
- ``shell (K = paper's)``: the shell transform, ``ClusterGeometry(K).fit`` and the training epochs;
- ``shell (auto-K)``: the same with ``n_clusters="auto"``.

No run evaluates held-out data per epoch (that cost does not depend on the method). The whole-run
ratio shell / vanilla is printed beside the per-epoch ratio (median epoch), so the one-off cost
of the geometry shows. Per-epoch times come from the loop's own timer.

    python bench/whole_run.py [--datasets gmm,mnist] [--epochs 30,100] [--mnist-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from shellvae import ClusterGeometry, FeasibleRegion, SphericalShell, get_method, load_dataset, mlp_vae
from shellvae.batches import TrainData
from shellvae.methods import Objective
from shellvae.train import train

PAPER_K = {"gmm": 8, "mnist": 10}


def load(name: str, mnist_dir: str | None) -> np.ndarray:
    if name == "gmm":
        return load_dataset("synthetic").X_train  # 40,000 x 32
    return load_dataset("mnist", mnist_dir).X_train  # 60,000 x 784


def whole_run(X: np.ndarray, method: str, n_clusters, epochs: int, seed: int = 0) -> dict:
    """Seconds of each part of one fit (no held-out evaluation)."""
    t0 = time.perf_counter()
    shell = SphericalShell().fit(X)
    X_shell = shell.transform(X)
    t_shell = time.perf_counter() - t0
    region, t_geometry = None, 0.0
    if n_clusters is not None:
        t1 = time.perf_counter()
        region = FeasibleRegion.from_fitted(ClusterGeometry(n_clusters, random_state=seed).fit(X_shell), shell)
        t_geometry = time.perf_counter() - t1
    m = get_method(method)
    torch.manual_seed(seed)
    lam = region.geometry_.lambda_max_ if region is not None else float(np.linalg.eigvalsh(np.cov(X_shell.T))[-1])
    t2 = time.perf_counter()
    history = train(mlp_vae(X.shape[1]), m, TrainData.build(X_shell, region, m), Objective(2 * lam, 1.0, region),
                    epochs=epochs, batch_size=128, lr=1e-3, seed=seed, progress=False)
    t_train = time.perf_counter() - t2
    k = None if region is None else region.geometry_.n_clusters_
    return dict(shell=t_shell, geometry=t_geometry, train=t_train, total=t_shell + t_geometry + t_train, K=k,
                epoch=statistics.median(row["train_time_s"] for row in history))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="gmm,mnist")
    ap.add_argument("--epochs", default="30,100", help="comma-separated epoch counts")
    ap.add_argument("--mnist-dir", default=os.environ.get("MNIST_DIR", "../shared/data/mnist"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"torch {torch.__version__}, 1 thread")
    for name in args.datasets.split(","):
        X = load(name, args.mnist_dir)
        K = PAPER_K[name]
        for epochs in map(int, args.epochs.split(",")):
            runs = {"vanilla": whole_run(X, "vanilla", None, epochs),
                    f"shell (K = {K})": whole_run(X, "shell", K, epochs),
                    "shell (auto-K)": whole_run(X, "shell", "auto", epochs)}
            t = time.perf_counter()
            ClusterGeometry(K).fit(SphericalShell().fit_transform(X))
            certificate_geometry = time.perf_counter() - t
            base = runs["vanilla"]
            print(f"\n[{name}] {X.shape[0]} x {X.shape[1]}, {epochs} epochs, batch 128")
            print(f"  {'run':18s} {'shell':>7s} {'geometry':>9s} {'train':>8s} {'total':>8s} {'s/epoch':>8s}"
                  f" {'whole-run ratio':>16s} {'per-epoch ratio':>16s}")
            for label, r in runs.items():
                k = "" if r["K"] is None else f" K={r['K']}"
                print(f"  {label:18s} {r['shell']:7.2f} {r['geometry']:9.2f} {r['train']:8.2f} {r['total']:8.2f} "
                      f"{r['epoch']:8.3f} {r['total'] / base['total']:16.3f} {r['epoch'] / base['epoch']:16.3f}{k}")
            print(f"  geometry for vanilla's certificate (after training, K = {K}): {certificate_geometry:.2f} s")


if __name__ == "__main__":
    main()
