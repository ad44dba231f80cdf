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

``--part choices``: the measurements behind the design (each on one dataset, one seed):
the matrix product behind the assignment in torch and NumPy, float32 and float64; the auto-K
search on MNIST's 20,000-row subset in full dimension and in 128, 64, 32 principal directions
(time, widths); warm starts alone against warm starts plus 3 restarts at each K (GMM, MNIST);
and the early-stop tolerance at K = 10 and K = 256 on MNIST (W over seeds 0-2, time).

``--part auto``: auto-K's choice against the exhaustive sweep, on each dataset: the new search's
table, chosen K and its region on all rows, and the previous implementation's (independent
scikit-learn ``KMeans`` fits, n_init = 3, on the same 20,000-row subset along the same grid, the
chosen K refitted on all rows; with ``--exhaustive`` only, since it takes 5-12 minutes on MNIST).

    python bench/kmeans_geometry.py --part ratio --repeats 3 --baseline
    python bench/kmeans_geometry.py --part sklearn
    python bench/kmeans_geometry.py --part auto --exhaustive
    python bench/kmeans_geometry.py --part choices
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
from shellvae.core.autok import AUTO_K_GRID, search_k
from shellvae.core.geometry import SWEEP_SAMPLES
from shellvae.core.variances import within_between
from shellvae.core.kmeans import subset_rows
from shellvae.training.batches import TrainData
from shellvae.training.methods import Objective
from shellvae.training.loop import train

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
    data = TrainData.build(X, None, method)  # vanilla: no region needed
    objective = Objective(sigma2=2 * geometry.lambda_max_)
    torch.manual_seed(0)
    model = mlp_vae(X.shape[1])
    epochs = iter(range(10**6))

    def run():
        train(model, method, data, objective, epochs=1, batch_size=128, lr=1e-3, seed=next(epochs), progress=False)

    return run


def part_ratio(args) -> None:
    X = shell_data("mnist", args)
    contenders = {"ClusterGeometry(10)": lambda: ClusterGeometry(10).fit(X),
                  'ClusterGeometry("auto")': lambda: ClusterGeometry("auto").fit(X)}
    geometry = quiet(contenders["ClusterGeometry(10)"])  # also the warm-up
    epoch = vanilla_epoch(X, geometry)
    epoch()  # warm-up
    quiet(contenders['ClusterGeometry("auto")'])
    wall = {"vanilla epoch": [], **{name: [] for name in contenders}}
    cpu = {name: [] for name in wall}
    fits = {}

    def measure(name, fn):
        c0 = time.process_time()
        result, seconds = timed(fn)
        wall[name].append(seconds)
        cpu[name].append(time.process_time() - c0)
        return result

    for _ in range(args.repeats):
        for name, fit in contenders.items():
            measure("vanilla epoch", epoch)
            fits[name] = measure(name, lambda: quiet(fit))
    if args.baseline:
        wall["previous: KMeans(n_init=3)"], cpu["previous: KMeans(n_init=3)"] = [], []
        measure("vanilla epoch", epoch)
        fits["previous: KMeans(n_init=3)"] = measure("previous: KMeans(n_init=3)", lambda: sklearn_geometry(X, 10))
    epoch_wall, epoch_cpu = statistics.median(wall["vanilla epoch"]), statistics.median(cpu["vanilla epoch"])
    print(f"\n[MNIST {X.shape[0]} x {X.shape[1]}] medians of {args.repeats}; vanilla epochs (wall s): "
          + ", ".join(f"{t:.2f}" for t in wall["vanilla epoch"]))
    print(f"  {'':28s} {'wall s':>7s} {'/ epoch':>8s} {'CPU s':>7s} {'/ epoch':>8s} {'K':>4s} {'W':>8s} "
          f"{'delta':>8s} {'width/T':>8s}")
    print(f"  {'vanilla epoch':28s} {epoch_wall:7.2f} {1.0:8.2f} {epoch_cpu:7.2f} {1.0:8.2f}")
    for name in fits:
        fit, w, c = fits[name], statistics.median(wall[name]), statistics.median(cpu[name])
        if isinstance(fit, ClusterGeometry):
            fit = dict(K=fit.n_clusters_, W=fit.W_, delta=fit.delta_collapse_,
                       width=(fit.delta_collapse_ - fit.W_) / fit.T_)
        print(f"  {name:28s} {w:7.2f} {w / epoch_wall:8.2f} {c:7.2f} {c / epoch_cpu:8.2f} {fit['K']:4d} "
              f"{fit['W']:8.5f} {fit['delta']:8.5f} {fit['width']:8.4f}   (wall: "
              + ", ".join(f"{t:.2f}" for t in wall[name]) + ")")


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
            print(f"  exhaustive: K = {old_fit['K']}, on all rows W = {old_fit['W']:.5f}, "
                  f"delta = {old_fit['delta']:.5f}, width = {old_fit['width']:.4f} T, {old_seconds:.1f} s")
            print(f"  (delta - W) difference: {width - old_fit['width']:+.4f} T; "
                  f"time ratio {old_seconds / seconds:.1f}x")


def part_choices(args) -> None:
    gemm_choice()
    data = {name: shell_data(name, args) for name in ("gmm", "mnist")}
    subsets = {name: X[subset_rows(len(X), SWEEP_SAMPLES, 0)] for name, X in data.items()}
    grid = [k for k in AUTO_K_GRID if k <= 256]
    print("\n[auto-K search on MNIST's 20,000-row subset, K = 2..256, n_init = 3: search dimensions]")
    print(f"  {'search_dims':>11s} {'seconds':>8s}  width at K = 96, 128, 192, 256")
    for dims in (None, 128, 64, 32):
        search, seconds = timed(lambda: search_k(subsets["mnist"], grid, search_dims=dims))
        widths = {row["K"]: row["width"] for row in search.rows}
        print(f"  {str(dims):>11s} {seconds:8.1f}  " + ", ".join(f"{widths[k]:.4f}" for k in (96, 128, 192, 256)),
              flush=True)
    print("\n[warm starts alone (n_init = 0) against warm starts + 3 restarts at each K: width per K]")
    for name, top in (("gmm", 8), ("mnist", 256)):
        for n_init in (0, 3):
            search, seconds = timed(lambda: search_k(subsets[name], [k for k in grid if k <= top], n_init=n_init))
            print(f"  {name:>5s} n_init={n_init} {seconds:6.1f} s  "
                  + " ".join(f"{row['K']}:{row['width']:.4f}" for row in search.rows), flush=True)
    print("\n[early stop: ClusterGeometry(K, tol=..., random_state=0, 1, 2) on all of MNIST]")
    print(f"  {'K':>4s} {'tol':>6s} {'median s':>8s} {'mean W':>9s} {'worst W':>9s}")
    for k in (10, 256):
        for tol in (1e-3, 1e-4, 1e-5):
            runs = [timed(lambda: quiet(lambda: ClusterGeometry(k, tol=tol, random_state=seed).fit(data["mnist"])))
                    for seed in range(3)]
            Ws = [geometry.W_ for geometry, _ in runs]
            print(f"  {k:4d} {tol:6.0e} {statistics.median(s for _, s in runs):8.2f} {np.mean(Ws):9.5f} "
                  f"{max(Ws):9.5f}", flush=True)


def gemm_choice() -> None:
    """The assignment's matrix product, (65,536 x 784) @ (784 x 256), in torch and NumPy, float32 and float64."""
    rng = np.random.default_rng(0)
    X, C = rng.random((65_536, 784), dtype=np.float32), rng.random((256, 784), dtype=np.float32)
    X64, C64 = X.astype(np.float64), C.astype(np.float64)
    contenders = {"torch float32": (lambda: torch.from_numpy(X) @ torch.from_numpy(C).T),
                  "NumPy float32": (lambda: X @ C.T),
                  "torch float64": (lambda: torch.from_numpy(X64) @ torch.from_numpy(C64).T),
                  "NumPy float64": (lambda: X64 @ C64.T)}
    print("\n[(65,536 x 784) @ (784 x 256), best of 5]")
    for name, product in contenders.items():
        product()
        seconds = min(timed(product)[1] for _ in range(5))
        print(f"  {name:14s} {1e3 * seconds:7.1f} ms  {2 * 65_536 * 784 * 256 / seconds / 1e9:6.1f} GFLOP/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("ratio", "sklearn", "auto", "choices"), default="ratio")
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
        {"ratio": part_ratio, "sklearn": part_sklearn, "auto": part_auto, "choices": part_choices}[args.part](args)


if __name__ == "__main__":
    main()
