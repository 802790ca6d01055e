#!/usr/bin/env bash
# One-shot accelerator check for a lent GPU host (jax/flax/optax/orbax/numpy/opencv/scikit-image,
# no TensorFlow, librosa, dlib or ml_collections): the benchmarks first (the lease is short), then the
# model tests. Installs nothing; ~9 minutes (a lease is 15 minutes with the machine's start). Results go to stdout and to $OUT (default /tmp/thflax_gpu).
#
#   bash benchmarks/gpu_check.sh            # on the device tool: run(command="bash benchmarks/gpu_check.sh")
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/thflax_gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
PY=${PYTHON:-python3}
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv 2>&1 | tee "$OUT/devices.txt"
# Peak bf16 matmul, LTV train steps (TFLOP/s, MFU, memory) + a profiler trace, generator frames/s,
# STL steps/s, end-to-end frames/s from MFCC windows (benchmarks/gpu_bench.py's docstring).
timeout ${BENCH_TIMEOUT:-490} $PY benchmarks/gpu_bench.py --out "$OUT" 2>&1 | tee "$OUT/bench.txt" \
  | grep -v "^W0000\|^I0000\|^E0000"
# Model tests that need only jax/flax/optax/numpy (+ skimage for the metric references).
timeout ${TEST_TIMEOUT:-70} $PY -m pytest -q -p no:cacheprovider -x \
  tests/face/test_warp.py tests/face/test_sketch.py tests/models/test_ltv.py tests/face/test_geometry.py tests/training/test_losses.py \
  tests/measures/test_metrics.py tests/models/test_stl.py 2>&1 | tail -n 15 | tee "$OUT/tests.txt"
