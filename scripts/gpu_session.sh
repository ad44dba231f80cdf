#!/usr/bin/env bash
# The GPU measurements of docs/performance.md in one command (a CUDA machine; pythae installed for
# the last step):   bash scripts/gpu_session.sh [MNIST_DIR] [OUT_DIR]
set -uo pipefail
MNIST=${1:-../shared/data/mnist}
OUT=${2:-runs/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
${PYTHON:-python3} scripts/gpu_check.py 2>&1 | tee "$OUT/gpu_check.txt"
${PYTHON:-python3} bench/throughput.py --device cuda --datasets gmm,mnist --mnist-dir "$MNIST" --epochs 3 \
  --batch-size 128 --compile --compile-mode reduce-overhead 2>&1 | tee "$OUT/throughput_b128.txt"
${PYTHON:-python3} bench/throughput.py --device cuda --datasets gmm,mnist --mnist-dir "$MNIST" --epochs 3 \
  --batch-size 1024 --amp --compile 2>&1 | tee "$OUT/throughput_b1024.txt"
${PYTHON:-python3} bench/vs_pythae.py --device cuda --datasets gmm,mnist --mnist-dir "$MNIST" --epochs 3 \
  --whole-repeats 1 2>&1 | tee "$OUT/vs_pythae.txt"
