"""FLOP counts from XLA's cost analysis (for benchmarks, MFU and model sizing).

XLA counts 2 FLOPs per multiply-add. Needs only jax (no TensorFlow), like the model benchmarks.
"""

from __future__ import annotations


def lowered_flops(lowered) -> float:
    """FLOPs of one call of `lowered` (a `jax.jit(f).lower(...)` result); NaN if XLA gives none.

    Counted on the HLO before optimisation, which is the same on every backend. Why not the compiled
    executable's count: on a GPU, convolutions compile to cuDNN custom calls that XLA's cost analysis
    counts as 0 FLOPs (a 256² LTV train step read 18 GFLOP there instead of 1350), which made MFU
    look 70 times lower than it is. On a GPU (jax 0.11.2) the analysis of the lowered program gave no
    count at all: lower the same function for the host CPU there (`benchmarks/gpu_bench.py`). Older
    JAX versions returned one cost dict per computation (a list);
    the first is the entry point.
    """
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float((cost or {}).get("flops", float("nan")))


__all__ = ["lowered_flops"]
