"""Does the shell method work whatever the network? Issue 13's architecture table.

``shell`` and ``vanilla`` at the moderate violating condition (sigma^2 = 2 lambda_max, beta = 2),
with three networks on two datasets, three seeds each:

- ``mlp``: the paper's MLP (shellvae's ``arch="mlp"``: 256-128 / 128-256) on the 8-component
  Gaussian mixture (32 dims);
- ``resmlp``: a deeper, wider residual MLP with LayerNorm (width 256, 3 residual blocks of two
  layers each, per network), passed as your own modules, on the same mixture;
- ``conv``: a deeper conv net (per network four conv layers, 16 and 32 channels; passed as your
  own modules) on MNIST images, beside the paper's MLP on the same images.

The networks are those of ``examples/custom_architecture.py``. Each dataset's shell and cluster
geometry are fitted once (seed 0) and shared by every run on it, so runs differ only in the
network, the method and the seed (initialisation, batch order, noise). The shell method follows
the paper's protocol (two-stage training, stage one = the first 20% of epochs). Held-out metrics:
KL, active units, the importance-weighted NLL (shell space), a logistic-regression probe of the
posterior means and the certificate. Runs are cached in OUT/records.json (a rerun skips them), and
the table is written to --table (docs/results/architectures.md).

    python scripts/architectures.py MNIST_DIR [--seeds 3] [--out runs/architectures] [--table PATH]

MNIST_DIR holds the four MNIST IDX files (train-images-idx3-ubyte.gz, ...). One torch thread.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))

from custom_architecture import ConvDecoder, ConvEncoder, ResMLPDecoder, ResMLPEncoder  # noqa: E402

import shellvae  # noqa: E402
from shellvae import FeasibleRegion, ShellVAE, get_method
from shellvae.base import storage  # noqa: E402

LATENT = 8
CONDITION = dict(sigma2_ratio=2.0, beta=2.0)  # the moderate violating condition
METHODS = ("vanilla", "shell")
IW_SAMPLES = 50  # importance samples per held-out row for nll_iw (the conv decoder is costly on a CPU)
N_TRAIN, N_TEST = 10_000, 2_000

NETWORKS = {  # name -> (what it is, networks(n_features) or None for shellvae's arch="mlp")
    "mlp": ("the paper's MLP (arch='mlp': 256-128 / 128-256, ReLU)", None),
    "resmlp": ("residual MLP with LayerNorm: width 256, 3 residual blocks per network",
               lambda D: (ResMLPEncoder(D, LATENT, 256, 3), ResMLPDecoder(LATENT, D, 256, 3))),
    "conv": ("deeper conv net: per network 4 conv layers (3x3 and stride-2 4x4; 16, 32 channels)",
             lambda D: (ConvEncoder((1, 28, 28), LATENT, (16, 32)), ConvDecoder((1, 28, 28), LATENT, (16, 32)))),
}
#: the rows: (network, dataset) -> epochs
ROWS = {("mlp", "synthetic"): 30, ("resmlp", "synthetic"): 30, ("mlp", "mnist"): 10, ("conv", "mnist"): 10}
N_CLUSTERS = {"synthetic": 8, "mnist": "auto"}  # MNIST's K = 10 gives an empty region (docs/method.md §4)


def load(dataset: str, mnist_dir: str):
    if dataset == "synthetic":
        return shellvae.make_gmm(N_TRAIN + N_TEST, test_size=N_TEST / (N_TRAIN + N_TEST), seed=0)
    return shellvae.load_dataset("mnist", mnist_dir, n_train=N_TRAIN, n_test=N_TEST, seed=0)


def run(arch: str, dataset: str, method: str, seed: int, data, region: FeasibleRegion) -> dict:
    epochs, networks = ROWS[arch, dataset], NETWORKS[arch][1]
    torch.manual_seed(seed)  # the networks' initial weights
    modules = {} if networks is None else dict(zip(("encoder", "decoder"), networks(data.X_train.shape[1])))
    params = dict(get_method(method).paper_protocol)
    est = ShellVAE(method, method_params=params or None, latent_dim=LATENT, n_clusters=N_CLUSTERS[dataset],
                   epochs=epochs, random_state=seed, **CONDITION, **modules)
    t0 = time.perf_counter()
    est.fit(data.X_train, geometry=region.geometry_)
    fit_s = time.perf_counter() - t0
    metrics = est.evaluate(data.X_test, data.y_test, iw_samples=IW_SAMPLES)
    cert = est.certify(data.X_test, metrics=metrics)
    keys = ("kl", "active_units", "nll_iw", "probe_accuracy", "chance_accuracy", "l_clu", "collapse_floor",
            "cluster_r2", "mutual_info")
    return {"arch": arch, "dataset": dataset, "method": method, "seed": seed, "epochs": epochs,
            "n_clusters": int(est.geometry_.n_clusters_), "parameters": sum(p.numel() for p in est.model_.parameters()),
            **{k: metrics[k] for k in keys}, "certified": cert.certified, "fit_seconds": fit_s}


def mean_sd(values, spec: str) -> str:
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), spec)}"


def table(records: list[dict], command: str, seeds: list[int]) -> str:
    lines = [
        "# Architectures: does the shell method work whatever the network?",
        "",
        "The paper says its method works with arbitrary neural architectures. `shell` and `vanilla` at the",
        "moderate violating condition (sigma^2 = 2 lambda_max, beta = 2), with three networks: the paper's MLP and a",
        "residual MLP on the Gaussian mixture, the paper's MLP and a deeper conv net on MNIST. Made by:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- data: the 8-component Gaussian mixture (32 dims; `make_gmm`, seed 0) and MNIST (28x28, pixels / 255), "
        f"each {N_TRAIN:,} train / {N_TEST:,} held-out rows (MNIST: a seeded random subset of the IDX files)",
        f"- K: 8 on the mixture; `n_clusters=\"auto\"` on MNIST (its K = 10 region is empty), "
        f"which chose K = {', '.join(map(str, sorted({r['n_clusters'] for r in records if r['dataset'] == 'mnist'})))}. "
        "Each dataset's shell "
        "and cluster geometry are fitted once (seed 0) and shared by all its runs",
        f"- latent dim {LATENT}; Adam, lr 1e-3, batch 128; epochs: "
        + ", ".join(f"{a} on {d} {e}" for (a, d), e in ROWS.items())
        + "; `shell` with the paper's protocol (two-stage, stage one = the first 20% of epochs), "
          "lambda_b = lambda_n = 10, eps = 5% of delta",
        f"- seeds {', '.join(map(str, seeds))} (initialisation, batch order, noise); mean ± sample std over seeds",
        "- networks: " + "; ".join(f"`{a}`: {spec[0]}" for a, spec in NETWORKS.items())
        + " (the last two are `examples/custom_architecture.py`'s, passed as `encoder=`, `decoder=`)",
        f"- held-out metrics: KL (nats), active units (of {LATENT}), `nll_iw`: importance-weighted bound on "
        f"-log p(x~) in shell space with {IW_SAMPLES} samples per row (nats; lower is better; comparable within a "
        "dataset), probe: 5-fold logistic-regression accuracy on the posterior means (chance: the most frequent "
        "class), certified: runs whose certificate holds (held-out L_clu below the collapse floor by 5% of delta)",
        "- one torch thread on a shared 2-core CPU; fit time is wall-clock, indicative only",
        "",
        "| data | network | parameters | method | KL | active units | nll_iw | probe (chance) | cluster R^2 | "
        "certified | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, dataset in ROWS:
        for method in METHODS:
            rows = [r for r in records if (r["arch"], r["dataset"], r["method"]) == (arch, dataset, method)]
            if not rows:
                continue
            col = {k: [r[k] for r in rows] for k in rows[0]}
            lines.append(
                f"| {rows[0]['dataset']} | `{arch}` | {rows[0]['parameters']:,} | {method} | {mean_sd(col['kl'], '.3f')} "
                f"| {mean_sd(col['active_units'], '.1f')} | {mean_sd(col['nll_iw'], '.2f')} "
                f"| {mean_sd(col['probe_accuracy'], '.3f')} ({statistics.mean(col['chance_accuracy']):.3f}) "
                f"| {mean_sd(col['cluster_r2'], '.3f')} | {sum(col['certified'])} / {len(rows)} "
                f"| {statistics.mean(col['fit_seconds']):.0f} |")
    lines += ["", "Per run:", "",
              "| data | network | method | seed | KL | AU | nll_iw | probe | L_clu | collapse floor | certified |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['dataset']} | `{r['arch']}` | {r['method']} | {r['seed']} | {r['kl']:.3f} | "
                     f"{r['active_units']} | {r['nll_iw']:.2f} | {r['probe_accuracy']:.3f} | {r['l_clu']:.4f} | "
                     f"{r['collapse_floor']:.4f} | {'yes' if r['certified'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mnist_dir", help="folder with the MNIST IDX files")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/architectures", help="cache of finished runs (records.json)")
    parser.add_argument("--table", default=str(REPO / "docs" / "results" / "architectures.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    cache = Path(args.out) / "records.json"
    records = json.loads(cache.read_text()) if cache.exists() else []
    done = {(r["arch"], r["dataset"], r["method"], r["seed"]) for r in records}
    datasets: dict = {}
    for arch, dataset in ROWS:
        for method in METHODS:
            for seed in seeds:
                if (arch, dataset, method, seed) in done:
                    continue
                if dataset not in datasets:
                    data = load(dataset, args.mnist_dir)
                    region = FeasibleRegion(N_CLUSTERS[dataset], random_state=0).fit(data.X_train)
                    datasets[dataset] = data, region
                    print(f"{dataset}: {data.X_train.shape} train, {data.X_test.shape} test; {region}", flush=True)
                record = run(arch, dataset, method, seed, *datasets[dataset])
                records.append(record)
                storage.write_json(cache, records)
                print(f"{arch} on {dataset}, {method} seed {seed}: KL {record['kl']:.3f}, AU {record['active_units']}, nll_iw "
                      f"{record['nll_iw']:.2f}, probe {record['probe_accuracy']:.3f}, certified {record['certified']}, "
                      f"{record['fit_seconds']:.0f} s", flush=True)
    records = [r for r in records if r["seed"] in seeds]
    order = {row: i for i, row in enumerate(ROWS)}
    records.sort(key=lambda r: (order[r["arch"], r["dataset"]], METHODS.index(r["method"]), r["seed"]))
    command = "python scripts/architectures.py MNIST_DIR" + "".join(
        f" {flag} {shlex.quote(str(value))}" for flag, value, default in (
            ("--seeds", args.seeds, 3), ("--out", args.out, "runs/architectures")) if value != default)
    storage.write_text(args.table, table(records, command, seeds))
    print(f"wrote {args.table}")


if __name__ == "__main__":
    main()
