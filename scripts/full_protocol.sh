#!/usr/bin/env bash
# The paper's protocol (profile `full`: full data, 100 epochs, 3 seeds) into docs/results/full, in the
# order the docs need it: the synthetic mixture first (every experiment), then MNIST, then Fashion-MNIST.
# Resumable: finished cells are skipped, so rerun it after an interruption. One job, one torch thread.
#
#   bash scripts/full_protocol.sh MNIST_DIR [OUT]
set -euo pipefail
MNIST_DIR=${1:?give the folder of the MNIST IDX files}
OUT=${2:-docs/results/full}
run() { echo "== $(date -u +%FT%TZ) shellvae reproduce $*"; shellvae reproduce "$@" --profile full --out "$OUT" --quiet; }

run table1 --datasets synthetic
run table2 --datasets synthetic
run dynamics --datasets synthetic
run coverage --datasets synthetic
run sensitivity --datasets synthetic
run recommend --datasets synthetic
run table1 --datasets mnist --data-dir mnist="$MNIST_DIR"
run table2 --datasets mnist --data-dir mnist="$MNIST_DIR"
run coverage --datasets mnist --data-dir mnist="$MNIST_DIR"
run recommend --datasets synthetic,mnist --data-dir mnist="$MNIST_DIR"
run table1 --datasets fashion_mnist
run recommend --datasets synthetic,mnist,fashion_mnist --data-dir mnist="$MNIST_DIR"
run table1 --datasets synthetic,mnist,fashion_mnist --data-dir mnist="$MNIST_DIR"
echo "== $(date -u +%FT%TZ) done"
