"""Training throughput (samples/s) of one epoch, vanilla vs shell, on the GMM and on MNIST.

Both methods train the same MLP VAE (encoder 256-128, decoder 128-256, latent 8) on the same
shell data with the same batch order; the only difference is the objective (and, for shell, the
per-row cluster centres it reads). Epochs are interleaved (vanilla, shell, vanilla, ...) so that
load on a shared machine hits both alike; the first epoch of each is a discarded warm-up, and the
ratio is of medians. Each epoch is one ``train()`` call with ``epochs=1`` (a fresh Adam each
call: its set-up is microseconds). Times are wall-clock and, in brackets, the process's CPU time,
which shared-machine load disturbs less; the ratios are what to compare across machines.

``--memmap`` adds a third GMM run, shell trained from a memory-mapped .npy (batches gathered and
shell-transformed one by one): its cost relative to the in-memory path. ``--device cuda`` trains
on the GPU (data, model and optimiser there; the clock is read after ``torch.cuda.synchronize``);
``--amp`` and ``--compile`` add runs of both methods with ``train(amp=True)`` (bf16 autocast,
CUDA only) and ``train(compile=True)``, whose first (compiling) epoch is the discarded warm-up.

    python bench/throughput.py                      # GMM 50,000 x 32 and MNIST 60,000 x 784
    python bench/throughput.py --datasets gmm --epochs 8 --memmap
    python bench/throughput.py --threads 2          # torch's intra-op threads (default 1)
    python bench/throughput.py --device cuda --amp --compile --batch-size 1024
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from shellvae import ClusterGeometry, FeasibleRegion, SphericalShell, get_method, load_dataset, make_gmm, mlp_vae
from shellvae.training.batches import MemmapTrainData, TrainData
from shellvae.training.methods import Objective
from shellvae.training.loop import train

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def load(name: str, mnist_dir: str):
    if name == "gmm":
        return make_gmm(50_000, seed=0).X_train, 8
    return load_dataset("mnist", mnist_dir).X_train, 10


def bench(name: str, X_raw: np.ndarray, k: int, args) -> dict[str, float]:
    shell = SphericalShell().fit(X_raw)
    X = shell.transform(X_raw)
    geometry = ClusterGeometry(k).fit(X)
    region = FeasibleRegion.from_fitted(geometry, shell)
    runs = {}  # label -> (method, data, train() options)
    variants = [("", {})] + [(f" ({opt})", {opt: True}) for opt in ("amp", "compile") if getattr(args, opt)]
    if args.compile and args.compile_mode:
        variants[-1] = (f" (compile {args.compile_mode})", {"compile": args.compile_mode})
    for suffix, options in variants:
        for method_name in ("vanilla", "shell"):
            method = get_method(method_name)
            runs[method_name + suffix] = (method, TrainData.build(X, region, method, device=args.device), options)
    tmp = None
    if args.memmap and name == "gmm":
        tmp = tempfile.TemporaryDirectory()
        path = os.path.join(tmp.name, "train.npy")
        np.save(path, X_raw)
        method = get_method("shell")
        runs["shell (memmap)"] = (method, MemmapTrainData.build(np.load(path, mmap_mode="r"), region, method,
                                                                device=args.device), {})
    models = {}
    for label in runs:
        torch.manual_seed(0)
        models[label] = mlp_vae(X.shape[1]).to(args.device)
    wall = {label: [] for label in runs}
    cpu = {label: [] for label in runs}
    cuda = torch.device(args.device).type == "cuda"
    for epoch in range(args.epochs + 1):
        for label, (method, data, options) in runs.items():
            objective = Objective(sigma2=2 * geometry.lambda_max_, region=region)
            if cuda:
                torch.cuda.synchronize()
            c0, w0 = time.process_time(), time.perf_counter()
            train(models[label], method, data, objective, epochs=1, batch_size=args.batch_size, lr=1e-3, seed=epoch,
                  progress=False, **options)
            if cuda:
                torch.cuda.synchronize()
            if epoch > 0:
                wall[label].append(time.perf_counter() - w0)
                cpu[label].append(time.process_time() - c0)
    if tmp is not None:
        tmp.cleanup()
    n = len(X)
    print(f"\n[{name}] {n} x {X.shape[1]} train rows, K = {k}, batch size {args.batch_size}, "
          f"median of {args.epochs} epochs after 1 warm-up")
    result = {}
    for label in runs:
        w, c = statistics.median(wall[label]), statistics.median(cpu[label])
        result[label] = w
        print(f"  {label:18s} {w:7.3f} s/epoch ({c:.3f} s CPU)  {n / w:9.0f} samples/s")
    med_w = {label: statistics.median(wall[label]) for label in runs}
    med_c = {label: statistics.median(cpu[label]) for label in runs}
    for suffix, _ in variants:
        v, sh = "vanilla" + suffix, "shell" + suffix
        print(f"  {sh} / {v} time per epoch: {med_w[sh] / med_w[v]:.3f} wall, {med_c[sh] / med_c[v]:.3f} CPU")
        if suffix:
            print(f"  {v} / vanilla: {med_w[v] / med_w['vanilla']:.3f};  {sh} / shell: {med_w[sh] / med_w['shell']:.3f}")
    if "shell (memmap)" in runs:
        print(f"  shell (memmap) / vanilla time per epoch: {med_w['shell (memmap)'] / med_w['vanilla']:.3f} wall, "
              f"{med_c['shell (memmap)'] / med_c['vanilla']:.3f} CPU")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="gmm,mnist", help="comma-separated: gmm, mnist")
    ap.add_argument("--mnist-dir", default=str(MNIST_DIR))
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs per method (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: see docs/performance.md)")
    ap.add_argument("--memmap", action="store_true", help="also time shell training from a memory-mapped .npy (GMM)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--amp", action="store_true", help="also time train(amp=True): bf16 autocast on CUDA")
    ap.add_argument("--compile", action="store_true", help="also time train(compile=True)")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode for --compile, e.g. reduce-overhead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"device: {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    for name in args.datasets.split(","):
        X, k = load(name.strip(), args.mnist_dir)
        bench(name.strip(), X, k, args)


if __name__ == "__main__":
    main()
