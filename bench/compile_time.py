"""``train(compile=True)`` (torch.compile of the method's forward and loss, one graph) against eager.

For each dataset and method: whole runs of ``epochs + 1`` epochs (eager, compiled, eager again,
so drift of the machine's load shows), each epoch timed by ``train()`` itself; the first epoch
of the compiled run includes the compiling. Also: how many graphs torch.compile built for the
run (a graph per epoch would mean the moving KL weight forces recompiles). On a CPU, torch.compile needs a C++ compiler (gcc) for its kernels.

    python bench/compile_time.py [--datasets gmm,mnist] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

import torch
from torch._dynamo.utils import counters

from shellvae import ClusterGeometry, FeasibleRegion, SphericalShell, get_method, load_dataset, make_gmm, mlp_vae
from shellvae.training.batches import TrainData
from shellvae.training.methods import Objective
from shellvae.training.loop import train

MNIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist")


def bench(name, X_raw, k, args):
    shell = SphericalShell().fit(X_raw)
    X = shell.transform(X_raw)
    geometry = ClusterGeometry(k).fit(X)
    region = FeasibleRegion.from_fitted(geometry, shell)
    print(f"\n[{name}] {len(X)} x {X.shape[1]}, batch 128, {args.epochs + 1} epochs per run")
    for method_name in args.methods.split(","):
        method = get_method(method_name)
        data = TrainData.build(X, region, method)
        objective = Objective(sigma2=2 * geometry.lambda_max_, region=region)
        torch._dynamo.reset()
        graphs_before = counters["stats"]["unique_graphs"]
        times = {}
        for label in ("eager", "compiled", "eager again"):  # eager on both sides of the compiled run: drift shows
            torch.manual_seed(0)
            history = train(mlp_vae(X.shape[1]), method, data, objective, epochs=args.epochs + 1, batch_size=128,
                            lr=1e-3, seed=0, progress=False, compile=label == "compiled")
            times[label] = [row["train_time_s"] for row in history]
        graphs = counters["stats"]["unique_graphs"] - graphs_before
        for label, t in times.items():
            print(f"  {method_name:8s} {label:11s} first epoch {t[0]:7.2f} s, then {statistics.median(t[1:]):.3f} s/epoch")
        e = statistics.median(times["eager"][1:] + times["eager again"][1:])
        c = statistics.median(times["compiled"][1:])
        print(f"  {method_name:8s} compiled / eager time per epoch: {c / e:.3f}; compiling added "
              f"{times['compiled'][0] - c:.1f} s to the first epoch; {graphs} graph(s) compiled for "
              f"{args.epochs + 1} epochs of a moving KL schedule")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="gmm,mnist")
    ap.add_argument("--methods", default="vanilla,shell")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    ap.add_argument("--mnist-rows", type=int, default=20_000, help="MNIST training rows used (seeded subset)")
    ap.add_argument("--mnist-dir", default=MNIST_DIR)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"torch {torch.__version__}, 1 thread")
    for name in args.datasets.split(","):
        if name == "gmm":
            bench(name, make_gmm(50_000, seed=0).X_train, 8, args)
        else:
            bench(name, load_dataset("mnist", args.mnist_dir, n_train=args.mnist_rows).X_train, 10, args)


if __name__ == "__main__":
    main()
