"""How many rows ``MemmapTrainData`` should read and shell-transform at once.

Trains the shell method one epoch at a time from a memory-mapped .npy with blocks of
``--read-rows`` rows (the rows of several consecutive batches gathered, transformed and split
back), against the in-memory ``TrainData``, interleaved, median of 3 epochs after a warm-up;
prints each time as a ratio to the in-memory epoch. GMM (40,000 x 32) and a 20,000-row MNIST
subset (784 wide). The default block, ``batches.READ_BYTES`` of float64 rows, comes from this.

    python bench/memmap_read.py [--datasets gmm,mnist] [--gmm-rows 128,1024,4096,16384,32768]
                                [--mnist-rows 128,512,1024,4096]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from shellvae import ClusterGeometry, FeasibleRegion, SphericalShell, get_method, load_dataset, make_gmm, mlp_vae
from shellvae.training.batches import MemmapTrainData, TrainData
from shellvae.training.methods import Objective
from shellvae.training.loop import train

MNIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist")


def bench(name: str, X: np.ndarray, k: int, read_rows: list[int], epochs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.npy")
        np.save(path, X)
        mapped = np.load(path, mmap_mode="r")
        shell = SphericalShell().fit(mapped)
        geometry = ClusterGeometry(k).fit(shell.transform(X))
        region = FeasibleRegion.from_fitted(geometry, shell)
        method = get_method("shell")
        runs = {"in memory": TrainData.build(shell.transform(X), region, method)}
        for rows in read_rows:
            runs[f"memmap, {rows} rows a read"] = MemmapTrainData.build(mapped, region, method, read_rows=rows)
        models = {label: mlp_vae(X.shape[1]) for label in runs}
        times = {label: [] for label in runs}
        for epoch in range(epochs + 1):
            for label, data in runs.items():
                objective = Objective(sigma2=2 * geometry.lambda_max_, region=region)
                t0 = time.perf_counter()
                train(models[label], method, data, objective, epochs=1, batch_size=128, lr=1e-3, seed=epoch,
                      progress=False)
                if epoch:
                    times[label].append(time.perf_counter() - t0)
    base = statistics.median(times["in memory"])
    print(f"\n[{name}] {len(X)} x {X.shape[1]}, batch 128, median of {epochs} epochs; time per epoch / in memory:")
    for label, t in times.items():
        print(f"  {label:28s} {statistics.median(t):6.3f} s/epoch  {statistics.median(t) / base:6.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="gmm,mnist")
    ap.add_argument("--gmm-rows", default="128,1024,4096,16384,32768")
    ap.add_argument("--mnist-rows", default="128,512,1024,4096")
    ap.add_argument("--mnist-dir", default=MNIST_DIR)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}, 1 thread")
    for name in args.datasets.split(","):
        if name == "gmm":
            bench("gmm", make_gmm(50_000, seed=0).X_train, 8, [int(r) for r in args.gmm_rows.split(",")], args.epochs)
        else:
            X = load_dataset("mnist", args.mnist_dir, n_train=20_000).X_train
            bench("mnist", X, 10, [int(r) for r in args.mnist_rows.split(",")], args.epochs)


if __name__ == "__main__":
    main()
