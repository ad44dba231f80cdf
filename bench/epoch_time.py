"""Time per training epoch, shell vs vanilla, on the paper's 50,000-sample synthetic mixture.

Both methods train the same MLP VAE on the same shell data with the same batch order; the only
difference is the objective. Epochs are interleaved (vanilla, shell, vanilla, ...) so machine
load drifts hit both alike; the first epoch of each is a discarded warm-up. K-means (the
one-off cost of the shell method) is timed separately.

    python bench/epoch_time.py [--n-samples 50000] [--epochs 6] [--batch-size 128] [--threads 1]

One torch thread by default: on a small MLP, intra-op threads add synchronisation that costs more
than it saves, and on a machine shared with other jobs it can cost 10-30x (see
docs/performance.md). bench/throughput.py adds MNIST; bench/shell_overhead.py breaks the shell's
extra cost down by term.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from shellvae import ClusterGeometry, FeasibleRegion, SphericalShell, get_method, make_gmm, mlp_vae
from shellvae.training.batches import TrainData
from shellvae.training.methods import Objective
from shellvae.training.loop import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-samples", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=6, help="timed epochs per method (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = make_gmm(args.n_samples, seed=0)
    t0 = time.perf_counter()
    shell = SphericalShell().fit(data.X_train)
    X = shell.transform(data.X_train)
    t_shell = time.perf_counter() - t0
    t0 = time.perf_counter()
    geometry = ClusterGeometry(8).fit(X)
    t_kmeans = time.perf_counter() - t0
    region = FeasibleRegion.from_fitted(geometry, shell)
    objective = Objective(sigma2=2 * geometry.lambda_max_, region=region)

    runs = {}
    for name in ("vanilla", "shell"):
        method = get_method(name)
        torch.manual_seed(0)
        model = mlp_vae(X.shape[1])
        runs[name] = (model, method, TrainData.build(X, region, method))

    times = {name: [] for name in runs}
    for epoch in range(args.epochs + 1):
        for name, (model, method, tdata) in runs.items():
            # one epoch per call (so the methods' epochs interleave): each call is a 1-epoch run, whose
            # schedule (the shell's KL ramp) is that run's, not epoch `epoch` of a longer one; the work
            # per epoch, which is what is timed, is the same
            history = train(model, method, tdata, objective, epochs=1, batch_size=args.batch_size, lr=1e-3,
                            seed=epoch, progress=False)
            if epoch > 0:
                times[name].append(history[-1]["train_time_s"])

    v, s = statistics.median(times["vanilla"]), statistics.median(times["shell"])
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"data: {len(X)} x {X.shape[1]} (train split of {args.n_samples}), batch size {args.batch_size}, "
          f"median of {args.epochs} epochs")
    print(f"one-off: shell transform {t_shell:.3f} s, K-means (K=8) + geometry {t_kmeans:.3f} s")
    print(f"time per epoch: vanilla {v:.3f} s, shell {s:.3f} s")
    print(f"shell / vanilla time per epoch: {s / v:.3f}  (paper claims < 1.20; target < 1.05)")
    total_v, total_s = 100 * v, 100 * s + t_shell + t_kmeans
    print(f"projected 100-epoch run incl. one-off costs: shell / vanilla = {total_s / total_v:.3f}")


if __name__ == "__main__":
    main()
