"""The shell method's whole-run overhead: everything a fit does, not only its epochs.

A fit is its one-off costs (the shell transform; for the shell method the cluster geometry) plus
its epochs. Both parts are measured in one process on one torch thread, robustly against the
load of a shared machine:

- one-off costs: the shell fit and transform, ``ClusterGeometry(K).fit`` at K = the number of classes and
  ``ClusterGeometry("auto").fit``, each the median of ``--repeats`` runs;
- the epoch: vanilla, shell at the class-count K and shell at the auto K, one training epoch each in
  turn (``train(epochs=1)``, as ``throughput.py``), the median of ``--epochs-timed`` after a
  warm-up. A shell run's epochs are of two kinds (the default two-stage protocol): stage one, the
  first 20%, computes the penalties without training on them; stage two trains on them. Both
  kinds are timed.

Then ``whole run(E) = one-off costs + E x epoch`` for each E of ``--epochs`` (for shell, 20% of E
stage-one epochs and 80% stage-two epochs), and the ratio to vanilla's. Vanilla does not need the geometry to train, so its run does not fit one; its
certificate needs it afterwards (printed apart). No run evaluates held-out data per epoch (that
cost does not depend on the method).

    python bench/whole_run.py [--datasets gmm,mnist] [--epochs 30,100] [--mnist-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np
import torch

from shellvae import ClusterGeometry, FeasibleRegion, SphericalShell, get_method, load_dataset, mlp_vae
from shellvae.training.batches import TrainData
from shellvae.training.methods import Objective
from shellvae.training.loop import train

PAPER_K = {"gmm": 8, "mnist": 10}


def load(name: str, mnist_dir: str | None) -> np.ndarray:
    if name == "gmm":
        return load_dataset("synthetic").X_train  # 40,000 x 32
    return load_dataset("mnist", mnist_dir).X_train  # 60,000 x 784


def timed(fn, repeats: int):
    """(median seconds, last result) of ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="gmm,mnist")
    ap.add_argument("--epochs", default="30,100", help="comma-separated epoch counts of the whole runs")
    ap.add_argument("--epochs-timed", type=int, default=5, help="epochs timed per run (after one warm-up)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each one-off cost")
    ap.add_argument("--mnist-dir", default=os.environ.get("MNIST_DIR", "../shared/data/mnist"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"torch {torch.__version__}, 1 thread")
    for name in args.datasets.split(","):
        X, K = load(name, args.mnist_dir), PAPER_K[name]
        t_shell, shell = timed(lambda: SphericalShell().fit(X), args.repeats)
        t_transform, X_shell = timed(lambda: shell.transform(X), args.repeats)
        with warnings.catch_warnings(record=True) as caught:  # MNIST at K = 10: an empty region, said once below
            warnings.simplefilter("always")
            t_geo, geometry = timed(lambda: ClusterGeometry(K).fit(X_shell), args.repeats)
        t_auto, auto = timed(lambda: ClusterGeometry("auto").fit(X_shell), args.repeats)
        runs = {"vanilla": (None, 0.0), f"shell (K = {K})": (geometry, t_geo),
                f"shell (auto: K = {auto.n_clusters_})": (auto, t_auto)}
        states = {}
        for label, (geo, _) in runs.items():
            region = None if geo is None else FeasibleRegion.from_fitted(geo, shell)
            stages = [("", "vanilla", {})] if geo is None else [(" stage 2", "shell", {"two_stage": 0.0}),
                                                                 (" stage 1", "shell", {"two_stage": 0.99})]
            for suffix, method_name, params in stages:  # a 1-epoch run with two_stage=0.99 is all stage one
                method = get_method(method_name, **params)
                torch.manual_seed(0)
                states[label + suffix] = (mlp_vae(X.shape[1]), method, TrainData.build(X_shell, region, method),
                                          Objective(2 * geometry.lambda_max_, 1.0, region))
        epoch_times = {label: [] for label in states}
        for epoch in range(args.epochs_timed + 1):  # interleaved: A, B, C, A, B, C, ...
            for label, (model, method, data, objective) in states.items():
                history = train(model, method, data, objective, epochs=1, batch_size=128, lr=1e-3, seed=epoch,
                                progress=False)
                if epoch:  # the first is the warm-up
                    epoch_times[label].append(history[0]["train_time_s"])
        timed_epochs = {label: statistics.median(t) for label, t in epoch_times.items()}
        share = get_method("shell").two_stage  # the default protocol's stage-one share of the epochs
        epoch = {"vanilla": timed_epochs["vanilla"]}
        for label in list(runs)[1:]:
            epoch[label] = share * timed_epochs[label + " stage 1"] + (1 - share) * timed_epochs[label + " stage 2"]
        one_off = {label: t_shell + t_transform + t_geometry for label, (_, t_geometry) in runs.items()}
        print(f"\n[{name}] {X.shape[0]} x {X.shape[1]}, batch 128; one-off costs (median of {args.repeats}): shell "
              f"fit {t_shell:.2f} s, transform {t_transform:.2f} s, geometry K={K} {t_geo:.2f} s, auto "
              f"(K={auto.n_clusters_}) {t_auto:.2f} s; epochs: median of {args.epochs_timed}, interleaved")
        if not geometry.feasible_:
            print(f"  the region at K={K} is empty (W {geometry.W_:.4g} > delta {geometry.delta_collapse_:.4g}): "
                  f"{len(caught)} EmptyFeasibleRegionWarning(s) while timing, one per fit; the timing is unaffected")
        print(f"  {'run':24s} {'one-off s':>9s} {'s/epoch':>8s} {'epoch ratio':>11s}" +
              "".join(f" {f'whole {e} ep s':>14s} {'ratio':>6s}" for e in map(int, args.epochs.split(","))))
        base = "vanilla"
        for label in runs:
            line = f"  {label:24s} {one_off[label]:9.2f} {epoch[label]:8.3f} {epoch[label] / epoch[base]:11.3f}"
            for e in map(int, args.epochs.split(",")):
                whole, whole_base = one_off[label] + e * epoch[label], one_off[base] + e * epoch[base]
                line += f" {whole:14.1f} {whole / whole_base:6.3f}"
            print(line)
        print("  shell epochs: " + ", ".join(f"{k} {v:.3f} s" for k, v in timed_epochs.items() if "stage" in k)
              + f"; s/epoch above = {share:g} x stage 1 + {1 - share:g} x stage 2")
        print(f"  vanilla's certificate needs the geometry after training: +{t_geo:.2f} s (K = {K})")


if __name__ == "__main__":
    main()
