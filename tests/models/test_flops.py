"""FLOP counts (MFU's numerator) and the profiler-trace summary used by the GPU benchmarks."""

import glob

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import trace_summary
from thflax.models.flops import lowered_flops


def _conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_lowered_flops_count_convolutions_and_matmuls():
    b, h, w, cin, cout, k = 2, 10, 12, 5, 7, 3
    x = jnp.ones((b, h, w, cin))
    kern = jnp.ones((k, k, cin, cout))
    conv = lowered_flops(jax.jit(_conv).lower(x, kern))
    assert conv == 2 * b * (h - k + 1) * (w - k + 1) * cin * cout * k * k
    a = jnp.ones((16, 32))
    mm = lowered_flops(jax.jit(lambda p, q: p @ q).lower(a, a.T))
    assert mm == 2 * 16 * 32 * 16


def test_trace_summary_reads_a_jax_profiler_trace(tmp_path):
    f = jax.jit(lambda x, w: jnp.tanh(_conv(x, w)).sum())
    x, w = jnp.ones((2, 32, 32, 8)), jnp.ones((3, 3, 8, 8))
    f(x, w).block_until_ready()
    with jax.profiler.trace(str(tmp_path)):
        for _ in range(2):
            f(x, w).block_until_ready()
    path = glob.glob(str(tmp_path / "**" / "*.xplane.pb"), recursive=True)[0]
    ev = list(trace_summary.events(path))
    assert ev and all(ns >= 0 for _, _, ns in ev)
    text = trace_summary.summarise(path, steps=2)
    assert "convolution" in text and "ms/step" in text
    assert trace_summary.kind_of("sm90_xmma_dgrad_implicit_gemm_bf16", "cudnn-conv-bw-input.3") == "convolution"
    assert trace_summary.kind_of("input_add_reduce_fusion_12", "") == "reduction"
    assert trace_summary.kind_of("nvjet_sm90_tst", "custom-call.1") == "matmul"
    assert trace_summary.kind_of("memcpy32_post", "") == "transpose/copy"
    assert np.isfinite(float(text.split()[2]))
