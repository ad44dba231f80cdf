"""``train(compile=True)`` (torch.compile of the model's forward) against eager training.

For each dataset and method: the first epoch (which includes compiling) and the median of the
following epochs, eager and compiled, interleaved per epoch on the same machine (one ``train()``
call per epoch on a persistent model: the compiled code is reused across calls). On a CPU,
torch.compile needs a C++ compiler (gcc) for its generated kernels.

    python bench/compile_time.py [--datasets gmm,mnist] [--epochs 3] [--whole-step]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from shellvae import ClusterGeometry, SphericalShell, get_method, load_dataset, make_gmm, mlp_vae
from shellvae.methods import TrainContext
from shellvae.train import TrainData, train

MNIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist")


def bench(name, X_raw, k, args):
    X = SphericalShell().fit_transform(X_raw)
    geometry = ClusterGeometry(k).fit(X)
    print(f"\n[{name}] {len(X)} x {X.shape[1]}, batch 128")
    for method_name in args.methods.split(","):
        method = get_method(method_name)
        data = TrainData.build(X, geometry, method)
        models = {}
        for label in ("eager", "compiled"):
            torch.manual_seed(0)
            models[label] = mlp_vae(X.shape[1])
        times = {label: [] for label in models}
        for epoch in range(args.epochs + 1):
            for label, model in models.items():
                ctx = TrainContext(sigma2=2 * geometry.lambda_max_, n_epochs=1, W=geometry.W_,
                                   delta=geometry.delta_collapse_)
                t0 = time.perf_counter()
                train(model, method, data, ctx, seed=epoch, progress=False, compile=label == "compiled")
                times[label].append(time.perf_counter() - t0)
        for label, t in times.items():
            print(f"  {method_name:8s} {label:9s} first epoch {t[0]:7.2f} s, then {statistics.median(t[1:]):.3f} s/epoch")
        e, c = statistics.median(times["eager"][1:]), statistics.median(times["compiled"][1:])
        overhead = times["compiled"][0] - c
        note = (f"compiling added {overhead:.1f} s to the first epoch" if overhead > 0.5
                else "the forward compiled for the previous method was reused")
        print(f"  {method_name:8s} compiled / eager time per epoch: {c / e:.3f}; {note}")
    if args.whole_step:
        whole_step(X, geometry, args)


def whole_step(X, geometry, args):
    """What compiling buys when the *whole* forward + shell loss is one graph: a bench-local step
    function with the KL weight passed as a tensor (the library's methods compute their weights
    in Python from the epoch, which would make torch.compile recompile every epoch)."""
    from shellvae.objectives import boundary_penalty, cluster_loss, gaussian_nll, kl_divergence, norm_penalty

    Xt = torch.as_tensor(X, dtype=torch.float32)
    C = torch.as_tensor(geometry.centers_, dtype=torch.float32)[torch.as_tensor(geometry.labels_)]
    sigma2, W, delta = 2 * geometry.lambda_max_, geometry.W_, geometry.delta_collapse_
    runs = {}
    for label in ("eager", "compiled"):
        torch.manual_seed(0)
        model = mlp_vae(X.shape[1])

        def step_loss(x, c, kl_weight, model=model):
            out = model(x)
            l_clu = cluster_loss(out.xhat, c)
            total = (gaussian_nll(x, out.xhat, sigma2) + kl_weight * kl_divergence(out.mu, out.logvar)
                     + 10.0 * boundary_penalty(l_clu, W, delta, 0.05 * delta) + 10.0 * norm_penalty(out.xhat, 0.9, 1.1))
            return total

        fn = torch.compile(step_loss, dynamic=False) if label == "compiled" else step_loss
        runs[label] = (model, torch.optim.Adam(model.parameters(), lr=1e-3, fused=True), fn)
    n = len(Xt) - len(Xt) % 128  # whole batches only: one shape, one compilation
    times = {label: [] for label in runs}
    for epoch in range(args.epochs + 1):
        perm = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(epoch))[:n]
        kl_weight = torch.tensor(0.1 + 0.9 * epoch / max(args.epochs, 1))
        for label, (model, opt, fn) in runs.items():
            t0 = time.perf_counter()
            for i in range(0, n, 128):
                idx = perm[i:i + 128]
                opt.zero_grad(set_to_none=True)
                fn(Xt.index_select(0, idx), C.index_select(0, idx), kl_weight).backward()
                opt.step()
            times[label].append(time.perf_counter() - t0)
    e, c = statistics.median(times["eager"][1:]), statistics.median(times["compiled"][1:])
    print(f"  whole shell step as one graph (bench-only): eager {e:.3f} s/epoch, compiled {c:.3f} s/epoch "
          f"(ratio {c / e:.3f}); first compiled epoch {times['compiled'][0]:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="gmm,mnist")
    ap.add_argument("--methods", default="vanilla,shell")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    ap.add_argument("--mnist-rows", type=int, default=20_000, help="MNIST training rows used (seeded subset)")
    ap.add_argument("--mnist-dir", default=MNIST_DIR)
    ap.add_argument("--whole-step", action="store_true",
                    help="also compile a bench-local forward + shell loss as one graph (see whole_step)")
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
