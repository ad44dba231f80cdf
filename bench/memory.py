"""Peak memory (max RSS) of a training run, in-memory tensors against a memory-mapped .npy.

Each configuration runs in its own fresh Python process (its peak RSS, /proc VmHWM), on the same
.npy of GMM rows (default 1,000,000 x 32 float32 = 128 MB), one shell epoch at batch 1,024, with
the shell transform and the geometry fitted once beforehand in the parent (so every child trains
the same thing and only the data path differs):

- ``baseline``: imports torch and shellvae, builds the model, loads nothing;
- ``in-memory``: ``np.load`` the array, ``shell.transform`` it, ``TrainData.build`` (the default);
- ``memmap``: ``np.load(mmap_mode="r")`` + ``MemmapTrainData`` (batches read and transformed one by one);
- ``estimator``: the whole ``ShellVAE.fit`` (shell, K-means, geometry, training) on the loaded array;
- ``estimator-memmap``: the whole ``ShellVAE.fit`` on the memory-mapped file, with streaming
  K-means (``ClusterGeometry(8, kmeans="streaming")``): checks, shell fit, K-means and training
  all read the file in chunks.

Peak RSS counts the pages of the mapped file that were read (page cache the kernel can drop
under pressure: "mapped files" at the end), and ~100 MiB of allocator and BLAS buffers that any
training run has (the difference between ``baseline`` and a run on a few rows).

    python bench/memory.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def peak_rss_mib() -> float:
    """This process's peak resident set size. /proc's VmHWM starts afresh at exec; ru_maxrss would
    also count the parent's memory at fork time (Linux keeps it across fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: KiB on Linux, bytes on macOS


def rss_parts_mib() -> dict[str, float]:
    """Current anonymous (heap, tensors) and file-backed (mapped file pages: reclaimable) RSS."""
    parts = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    parts[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return parts


def child(config: str, workdir: str) -> None:
    import torch

    torch.set_num_threads(1)
    from shellvae import FeasibleRegion, ShellVAE, get_method, mlp_vae
    from shellvae.training.batches import MemmapTrainData, TrainData
    from shellvae.training.methods import Objective
    from shellvae.training.loop import train

    with open(os.path.join(workdir, "fitted.pkl"), "rb") as f:
        shell, geometry = pickle.load(f)
    region = FeasibleRegion.from_fitted(geometry, shell)
    path = os.path.join(workdir, "X.npy")
    method = get_method("shell")
    torch.manual_seed(0)
    model = mlp_vae(32)
    objective = Objective(sigma2=2 * geometry.lambda_max_, region=region)
    options = dict(epochs=1, batch_size=1024, lr=1e-3, seed=0, progress=False)
    t0 = time.perf_counter()
    if config == "in-memory":
        data = TrainData.build(shell.transform(np.load(path)), region, method)
        train(model, method, data, objective, **options)
    elif config == "memmap":
        data = MemmapTrainData.build(np.load(path, mmap_mode="r"), region, method)
        train(model, method, data, objective, **options)
    elif config == "estimator":
        ShellVAE("shell", n_clusters=8, epochs=1, batch_size=1024).fit(np.load(path))
    elif config == "estimator-memmap":
        from shellvae import ClusterGeometry

        ShellVAE("shell", n_clusters=8, epochs=1, batch_size=1024).fit(
            np.load(path, mmap_mode="r"), geometry=ClusterGeometry(8, kmeans="streaming"))
    seconds = time.perf_counter() - t0
    peak_mb = peak_rss_mib()
    print(json.dumps({"config": config, "peak_mb": peak_mb, "seconds": seconds, **rss_parts_mib()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.workdir)
        return
    from shellvae import ClusterGeometry, SphericalShell, make_gmm

    with tempfile.TemporaryDirectory() as workdir:
        X = make_gmm(args.rows + 2, seed=0, test_size=1 / (args.rows + 2)).X_train[:args.rows]
        np.save(os.path.join(workdir, "X.npy"), X)
        shell = SphericalShell().fit(X)
        geometry = ClusterGeometry(8).fit(shell.transform(X))
        with open(os.path.join(workdir, "fitted.pkl"), "wb") as f:
            pickle.dump((shell, geometry), f)
        print(f"data: {X.shape[0]} x {X.shape[1]} float32 = {X.nbytes / 2**20:.0f} MiB on disk; one shell epoch at "
              f"batch 1024; max RSS of a fresh process per configuration")
        del X
        rows = []
        for config in ("baseline", "in-memory", "memmap", "estimator", "estimator-memmap"):
            out = subprocess.run([sys.executable, __file__, "--child", config, "--workdir", workdir],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"  {r['config']:16s} peak RSS {r['peak_mb']:6.0f} MiB; at the end: anonymous "
                  f"{r.get('RssAnon', float('nan')):6.0f} MiB, mapped files {r.get('RssFile', float('nan')):5.0f} MiB "
                  f"({r['seconds']:.1f} s)", flush=True)
        base = rows[0]["peak_mb"]
        peak = {r["config"]: r["peak_mb"] - base for r in rows}
        print(f"above the baseline: in-memory {peak['in-memory']:.0f} MiB, memmap {peak['memmap']:.0f} MiB, "
              f"whole estimator fit {peak['estimator']:.0f} MiB, from the memmap {peak['estimator-memmap']:.0f} MiB")


if __name__ == "__main__":
    main()
