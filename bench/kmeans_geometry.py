"""K-means for the cluster geometry: its time in vanilla epochs, its objective against
scikit-learn, and auto-K against the exhaustive sweep it replaced (docs/performance.md,
"K-means for the cluster geometry").

Everything runs in one process with one thread (torch's, BLAS' and scikit-learn's OpenMP,
through ``threadpoolctl``), on shell data (``SphericalShell().fit_transform``) of full MNIST
(60,000 x 784), Fashion-MNIST and the paper's GMM (40,000 x 32 training rows).

``--part ratio``: ``ClusterGeometry(10).fit`` and ``ClusterGeometry("auto").fit`` on MNIST
against one vanilla training epoch (MLP VAE, batch 128) of the same rows, interleaved (epoch,
K=10, epoch, auto, ...) after a warm-up of each, ``--repeats`` times; medians and their ratio.
``--baseline`` adds the previous implementation's K=10 fit (scikit-learn ``KMeans``, n_init = 3,
on all rows), once.

``--part sklearn``: the objective W (exact, float64, from each method's labels: what the
certificate uses) and the time of ``ClusterGeometry(K)`` (its K-means, T, W, delta and
lambda_max), of scikit-learn ``KMeans`` with n_init = 3 and n_init = 1 (lloyd, its defaults:
tol 1e-4, max_iter 300) followed by the same exact geometry, and of ``ClusterGeometry(K,
search_dims=None)`` (no projection): GMM K = 8, MNIST K = 10 and K = 256.

``--part auto``: auto-K's choice against the exhaustive sweep, on each dataset: the new search's
table, chosen K and its region on all rows, and the previous implementation's (independent
scikit-learn ``KMeans`` fits, n_init = 3, on the same 20,000-row subset along the same grid, the
chosen K refitted on all rows; with ``--exhaustive`` only, since it takes 5-12 minutes on MNIST).

    python bench/kmeans_geometry.py --part ratio --repeats 3 --baseline
    python bench/kmeans_geometry.py --part sklearn
    python bench/kmeans_geometry.py --part auto --exhaustive
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from shellvae import ClusterGeometry, SphericalShell, get_method, load_dataset, make_gmm, mlp_vae
from shellvae.errors import EmptyFeasibleRegionWarning
from shellvae.geometry import AUTO_K_GRID, SWEEP_SAMPLES, within_between
from shellvae.kmeans import subset_rows
from shellvae.methods import TrainContext
from shellvae.train import TrainData, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shell_data(name: str, args) -> np.ndarray:
    if name == "gmm":
        raw = make_gmm(50_000, seed=0).X_train
    elif name == "mnist":
        raw = load_dataset("mnist", args.mnist_dir).X_train
    else:
        raw = load_dataset("fashion_mnist", args.fashion_dir).X_train
    return SphericalShell().fit_transform(raw)


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def quiet(fn):
    """fn() without the empty-region warnings (the tables show the region)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyFeasibleRegionWarning)
        return fn()


# -- the previous implementation (scikit-learn KMeans, independent fits), for comparison ---------
def sklearn_geometry(X: np.ndarray, k: int, n_init: int = 3, seed: int = 0) -> dict:
    labels = KMeans(k, n_init=n_init, random_state=seed).fit_predict(X)
    T, W, delta, *_ = within_between(X, labels, k)
    return dict(K=k, T=T, W=W, delta=delta, width=(delta - W) / T)


def exhaustive_auto(X: np.ndarray, margin: float = 0.05, seed: int = 0) -> tuple[list[dict], dict]:
    """What n_clusters="auto" did before: independent KMeans(n_init=3) fits on a 20,000-row subset
    along the grid until the width reaches the margin, then that K fitted again on all rows."""
    rows = subset_rows(len(X), SWEEP_SAMPLES, seed)  # the subset the search uses too
    subset = X if rows is None else X[rows]
    sweep = []
    for k in AUTO_K_GRID:
        sweep.append(sklearn_geometry(subset, k, seed=seed))
        if sweep[-1]["width"] >= margin:
            break
    return sweep, sklearn_geometry(X, sweep[-1]["K"], seed=seed)


# -- parts ------------------------------------------------------------------------------------
def vanilla_epoch(X: np.ndarray, geometry: ClusterGeometry):
    """A function that trains one vanilla epoch (MLP VAE, batch 128) of X and returns nothing."""
    method = get_method("vanilla")
    data = TrainData.build(X, geometry, method)
    torch.manual_seed(0)
    model = mlp_vae(X.shape[1])
    epochs = iter(range(10**6))

    def run():
        ctx = TrainContext(sigma2=2 * geometry.lambda_max_, n_epochs=1, W=geometry.W_, delta=geometry.delta_collapse_)
        train(model, method, data, ctx, batch_size=128, seed=next(epochs), progress=False)

    return run


def part_ratio(args) -> None:
    X = shell_data("mnist", args)
    contenders = {"ClusterGeometry(10)": lambda: ClusterGeometry(10).fit(X),
                  'ClusterGeometry("auto")': lambda: ClusterGeometry("auto").fit(X)}
    geometry = quiet(contenders["ClusterGeometry(10)"])  # also the warm-up
    epoch = vanilla_epoch(X, geometry)
    epoch()  # warm-up
    quiet(contenders['ClusterGeometry("auto")'])
    times = {"vanilla epoch": [], **{name: [] for name in contenders}}
    fits = {}
    for _ in range(args.repeats):
        for name, fit in contenders.items():
            times["vanilla epoch"].append(timed(epoch)[1])
            fits[name], seconds = timed(lambda: quiet(fit))
            times[name].append(seconds)
    if args.baseline:
        times["vanilla epoch"].append(timed(epoch)[1])
        fits["previous: KMeans(n_init=3)"], seconds = timed(lambda: sklearn_geometry(X, 10))
        times["previous: KMeans(n_init=3)"] = [seconds]
    epoch_s = statistics.median(times["vanilla epoch"])
    print(f"\n[MNIST {X.shape[0]} x {X.shape[1]}] medians of {args.repeats} (vanilla epoch: "
          f"{len(times['vanilla epoch'])} epochs, {', '.join(f'{t:.2f}' for t in times['vanilla epoch'])} s)")
    print(f"  {'':28s} {'seconds':>8s} {'/ epoch':>8s} {'K':>4s} {'W':>8s} {'delta':>8s} {'width/T':>8s}")
    print(f"  {'vanilla epoch':28s} {epoch_s:8.2f} {1.0:8.2f}")
    for name in fits:
        fit, seconds = fits[name], statistics.median(times[name])
        if isinstance(fit, ClusterGeometry):
            fit = dict(K=fit.n_clusters_, W=fit.W_, delta=fit.delta_collapse_,
                       width=(fit.delta_collapse_ - fit.W_) / fit.T_)
        print(f"  {name:28s} {seconds:8.2f} {seconds / epoch_s:8.2f} {fit['K']:4d} {fit['W']:8.5f} "
              f"{fit['delta']:8.5f} {fit['width']:8.4f}   (runs: {', '.join(f'{t:.2f}' for t in times[name])})")


def part_sklearn(args) -> None:
    cases = [("gmm", 8), ("mnist", 10), ("mnist", 256)]
    data = {}
    print(f"\n  {'data':>6s} {'K':>4s}  {'method':36s} {'seconds':>8s} {'W':>9s} {'W / best W':>10s} {'width/T':>8s}")
    for name, k in cases:
        if name not in data:
            data[name] = shell_data(name, args)
        X = data[name]
        methods = {
            "shellvae ClusterGeometry(K)": lambda: ClusterGeometry(k).fit(X),
            "shellvae, search_dims=None": lambda: ClusterGeometry(k, search_dims=None).fit(X),
            "sklearn KMeans(n_init=3)": lambda: sklearn_geometry(X, k, n_init=3),
            "sklearn KMeans(n_init=1)": lambda: sklearn_geometry(X, k, n_init=1),
        }
        quiet(methods["shellvae ClusterGeometry(K)"])  # warm-up
        rows = []
        for label, fit in methods.items():
            result, seconds = timed(lambda: quiet(fit))
            if isinstance(result, ClusterGeometry):
                result = dict(W=result.W_, width=(result.delta_collapse_ - result.W_) / result.T_)
            rows.append((label, seconds, result))
        best = min(result["W"] for _, _, result in rows)
        for label, seconds, result in rows:
            print(f"  {name:>6s} {k:4d}  {label:36s} {seconds:8.2f} {result['W']:9.5f} {result['W'] / best:10.4f} "
                  f"{result['width']:8.4f}", flush=True)


def part_auto(args) -> None:
    for name in args.datasets.split(","):
        X = shell_data(name, args)
        geometry, seconds = timed(lambda: quiet(lambda: ClusterGeometry("auto").fit(X)))
        print(f"\n[{name} {X.shape[0]} x {X.shape[1]}] search on {min(len(X), SWEEP_SAMPLES)} rows, "
              f"margin 0.05 T")
        old_sweep, old_fit, old_seconds = None, None, None
        if args.exhaustive:
            (old_sweep, old_fit), old_seconds = timed(lambda: exhaustive_auto(X))
        old_width = {row["K"]: row["width"] for row in old_sweep or []}
        print("     K   width (search)" + ("   width (exhaustive)   difference" if old_sweep else ""))
        for row in geometry.sweep_:
            line = f"  {row['K']:4d}   {row['width']:14.4f}"
            if row["K"] in old_width:
                line += f"   {old_width[row['K']]:18.4f}   {row['width'] - old_width[row['K']]:+10.4f}"
            print(line)
        width = (geometry.delta_collapse_ - geometry.W_) / geometry.T_
        print(f"  search: K = {geometry.n_clusters_}, on all rows W = {geometry.W_:.5f}, delta = "
              f"{geometry.delta_collapse_:.5f}, width = {width:.4f} T, {seconds:.1f} s")
        if old_fit:
            print(f"  exhaustive: K = {old_fit['K']}, on all rows W = {old_fit['W']:.5f}, delta = {old_fit['delta']:.5f}, "
                  f"width = {old_fit['width']:.4f} T, {old_seconds:.1f} s")
            print(f"  (delta - W) difference: {width - old_fit['width']:+.4f} T; time ratio {old_seconds / seconds:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("ratio", "sklearn", "auto"), default="ratio")
    ap.add_argument("--repeats", type=int, default=3, help="--part ratio: timed fits of each kind")
    ap.add_argument("--baseline", action="store_true", help="--part ratio: also the previous K=10 fit, once")
    ap.add_argument("--exhaustive", action="store_true", help="--part auto: also the previous, exhaustive sweep")
    ap.add_argument("--datasets", default="gmm,mnist,fashion_mnist", help="--part auto")
    ap.add_argument("--mnist-dir", default=str(SHARED / "mnist"))
    ap.add_argument("--fashion-dir", default=None, help="default: the loader's (e.g. /usr/share/datasets)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"torch {torch.__version__}, one thread (torch, BLAS, OpenMP)")
    with threadpool_limits(1):
        {"ratio": part_ratio, "sklearn": part_sklearn, "auto": part_auto}[args.part](args)


if __name__ == "__main__":
    main()
