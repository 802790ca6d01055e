"""FLOP counts from XLA's cost analysis of compiled computations (for benchmarks and model sizing).

XLA counts 2 FLOPs per multiply-add. Needs only jax (no TensorFlow), like the model benchmarks.
"""

from __future__ import annotations


def compiled_flops(compiled) -> float:
    """FLOPs of one call of `compiled` (a `jax.jit(f).lower(...).compile()` result); NaN if XLA gives none.

    Older JAX versions returned one cost dict per computation (a list); the first is the entry point.
    """
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float((cost or {}).get("flops", float("nan")))


__all__ = ["compiled_flops"]
