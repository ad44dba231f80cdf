"""How long the held-out likelihood and probe metrics take, to choose their sample counts.

On one torch thread, for N held-out rows of a dataset's shell coordinates and the default MLP
VAE (``mlp_vae(D, 8)``; untrained: the cost does not depend on the weights): the
importance-weighted bound ``iw_log_likelihood`` at each of ``--samples``, the one-sample ELBO, and
the linear-probe and k-NN accuracies on the posterior means (labels: the dataset's). Prints one
line per measurement: wall and CPU seconds (CPU time is less disturbed by other jobs on a shared
machine), and CPU microseconds per decoded row (rows x samples).

    python bench/iw_time.py synthetic --rows 10000 --samples 1 10 50 500
    python bench/iw_time.py mnist --data-dir ../shared/data/mnist --rows 10000 --samples 10 500
    python bench/iw_time.py synthetic --rows 2000 --samples 500 --batch-sizes 64 256 1024 4096
"""

from __future__ import annotations

import argparse
import time

import torch

from shellvae import SphericalShell, mlp_vae
from shellvae.data import load_dataset
from shellvae.evaluation.likelihood import elbo, iw_log_likelihood
from shellvae.evaluation.probes import knn_accuracy, probe_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="synthetic, mnist, fashion_mnist, ...")
    parser.add_argument("--data-dir")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 10, 50, 500])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024])
    parser.add_argument("--max-decode-rows", type=int, default=None)
    parser.add_argument("--sigma2", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    data = load_dataset(args.dataset, args.data_dir, n_test=args.rows) if args.data_dir else load_dataset(
        args.dataset, n_test=args.rows)
    shell = SphericalShell().fit(data.X_train)
    X = torch.as_tensor(shell.transform(data.X_test[:args.rows]), dtype=torch.float32)
    y = data.y_test[:args.rows]
    model = mlp_vae(X.shape[1], 8).eval()
    print(f"{args.dataset}: {len(X)} rows x {X.shape[1]} features, mlp_vae({X.shape[1]}, 8), "
          f"{torch.get_num_threads()} thread(s)")

    for batch_size in args.batch_sizes:
        for n_samples in args.samples:
            start, cpu = time.perf_counter(), time.process_time()
            bound = iw_log_likelihood(model.encode, model.decode, X, args.sigma2, n_samples=n_samples,
                                      batch_size=batch_size, max_decode_rows=args.max_decode_rows)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(f"nll_iw  K={n_samples:<5d} batch={batch_size:<5d} {seconds:8.2f} s wall {cpu:8.2f} s CPU  "
                  f"{1e6 * cpu / (len(X) * n_samples):6.2f} us CPU/decoded row  (nll {-float(bound.mean()):.1f})")
    start = time.perf_counter()
    lower = elbo(model.encode, model.decode, X, args.sigma2)
    print(f"elbo    1 sample             {time.perf_counter() - start:8.2f} s  (elbo {float(lower.mean()):.1f})")
    with torch.no_grad():
        mu = torch.cat([model.encode(X[i:i + 4096])[0] for i in range(0, len(X), 4096)]) * 50  # active units
    for name, probe in (("probe", probe_accuracy), ("knn", knn_accuracy)):
        start = time.perf_counter()
        accuracy = probe(mu, y)
        print(f"{name:<7s} 5 folds              {time.perf_counter() - start:8.2f} s  (accuracy {accuracy:.3f})")


if __name__ == "__main__":
    main()
