#!/usr/bin/env bash
# One-shot accelerator check for a lent GPU host (jax/flax/optax/orbax/numpy/opencv/scikit-image,
# no TensorFlow, librosa, dlib or ml_collections): the model tests, then the model benchmarks.
# Installs nothing; finishes within ~5 minutes. Results go to stdout and to $OUT (default /tmp/thflax_gpu).
#
#   bash benchmarks/gpu_check.sh            # on the device tool: run(command="bash benchmarks/gpu_check.sh")
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/thflax_gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
PY=${PYTHON:-python3}
$PY -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tee "$OUT/devices.txt"
# Model tests that need only jax/flax/optax/numpy (+ skimage for the metric references).
timeout 150 $PY -m pytest -q -p no:cacheprovider -x \
  tests/test_geometry.py tests/test_losses.py tests/test_metrics.py tests/test_sketch.py \
  tests/test_ltv_model.py tests/test_stl_model.py tests/test_warp.py 2>&1 | tail -n 15 | tee "$OUT/tests.txt"
# Model benchmarks: train steps/s (+ TFLOP/s and MFU in bf16 on GPU), generator frames/s.
timeout 170 $PY benchmarks/run_all.py --sections model,generator --sizes 128 256 --gen_batches 1 64 \
  --generators fast warp --no-append 2>&1 | tee "$OUT/bench.txt" | tail -n 30
# The landmark warp alone (TPS flow + sampler), batched.
timeout 60 $PY benchmarks/bench_warp.py --sizes 128 256 --batches 1 64 --photo 2>&1 | tee "$OUT/warp.txt" | tail -n 12
