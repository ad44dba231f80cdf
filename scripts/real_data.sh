#!/usr/bin/env bash
# Issue 4's real-data runs: vanilla vs shell (K = 10, the paper's) vs shell (K = auto) vs
# shell_lagrange (K = auto) on MNIST and Fashion-MNIST, latent 8, sigma^2 = 2 lambda_max, beta = 1.
#   bash scripts/real_data.sh MNIST_DIR [EPOCHS] [OUT]
# then: shellvae summarize OUT/*/*  (the table in docs/results.md)
set -euo pipefail
mnist_dir=${1:?usage: scripts/real_data.sh MNIST_DIR [EPOCHS] [OUT]}
epochs=${2:-30}
out=${3:-runs/real_data}
common=(--latent-dim 8 --sigma2-ratio 2 --beta 1 --epochs "$epochs" --seed 0 --quiet --resume)
for data in mnist fashion_mnist; do
  dir_args=()
  [ "$data" = mnist ] && dir_args=(--data-dir "$mnist_dir")
  run() { local name=$1; shift; [ -f "$out/$data/$name/metrics.json" ] && return 0
          local t0=$SECONDS
          shellvae train --data "$data" "${dir_args[@]}" "${common[@]}" --out "$out/$data/$name" "$@" \
            > "$out/$data/$name.log" 2>&1 || { cat "$out/$data/$name.log"; exit 1; }
          echo "$data/$name: $((SECONDS - t0)) s wall" | tee -a "$out/wall_times.txt"; }
  mkdir -p "$out/$data"
  run vanilla --method vanilla --n-clusters 10
  run shell_k10 --method shell --n-clusters 10
  run shell_auto --method shell --n-clusters auto
  run lagrange_auto --method shell_lagrange --n-clusters auto
done
