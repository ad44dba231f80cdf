#!/usr/bin/env bash
# The paper's protocol (profile `full`: full data, 100 epochs, 3 seeds) into docs/results/full, in the
# order the docs need it: the synthetic mixture first (every experiment), then MNIST, then Fashion-MNIST.
# Each experiment is always asked for every dataset reached so far, so its table in OUT covers them all
# (finished cells are reused, only the new dataset's cells train).
# Resumable: finished cells are skipped, so rerun it after an interruption; a cell that was running
# continues from its last finished epoch (OUT/checkpoints/, git-ignored, deleted once the cell is stored).
# To stop it, kill this script and `shellvae reproduce`: the workers end by themselves within seconds.
# One torch thread per training; JOBS (default 1) trainings at once.
#
#   [JOBS=2] bash scripts/full_protocol.sh MNIST_DIR [OUT]
set -euo pipefail
MNIST_DIR=${1:?give the folder of the MNIST IDX files}
OUT=${2:-docs/results/full}
JOBS=${JOBS:-1}
run() { echo "== $(date -u +%FT%TZ) shellvae reproduce $*"; shellvae reproduce "$@" --profile full --out "$OUT" --jobs "$JOBS" --quiet; }
MNIST=(--data-dir mnist="$MNIST_DIR")

run table1 --datasets synthetic
run table2 --datasets synthetic
run dynamics --datasets synthetic
run coverage --datasets synthetic
run sensitivity --datasets synthetic
run recommend --datasets synthetic
run table1 --datasets synthetic,mnist "${MNIST[@]}"
run table2 --datasets synthetic,mnist "${MNIST[@]}"
run coverage --datasets synthetic,mnist "${MNIST[@]}"
run recommend --datasets synthetic,mnist "${MNIST[@]}"
run table1 --datasets synthetic,mnist,fashion_mnist "${MNIST[@]}"
run table2 --datasets synthetic,mnist,fashion_mnist "${MNIST[@]}"
run coverage --datasets synthetic,mnist,fashion_mnist "${MNIST[@]}"
run dynamics --datasets synthetic,fashion_mnist
run recommend --datasets synthetic,mnist,fashion_mnist "${MNIST[@]}"
# the recommendation's gaps under 0.1 nats, retrained and scored with 5,000 importance samples
echo "== $(date -u +%FT%TZ) python scripts/reevaluate.py"; python scripts/reevaluate.py "$MNIST_DIR" --out "$OUT"
echo "== $(date -u +%FT%TZ) done"
