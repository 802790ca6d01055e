"""Generator speed benchmark: GFLOPs/frame (XLA cost analysis) and frames/s of the LTV generator.

Prints a markdown table with, per (config, resolution, batch):
  * GFLOPs/frame of the full forward (reference encoders + landmark encoder + decoder) and of the cached-
    reference decode path (landmark encoder + decoder), from `jit(f).lower(...).cost_analysis()`;
  * JIT compile time (lower + compile) of both paths, reported separately;
  * frames/s of the full forward, of the cached decode, and of sketch+decode (draw the target sketch from
    landmarks, then decode: the real per-frame cost at generation time), after a warm-up call, as the
    median over `--repeats` timed calls with `block_until_ready`.

Usage:
  python benchmarks/bench_generator.py --sizes 128 256 --batches 1 16 --configs tiny fast paper
  python benchmarks/bench_generator.py --configs fast "fast:patch=1,upsample=resize" --dtype bfloat16

A config is a preset name of `thflax.models.ltv.GENERATOR_PRESETS`, optionally followed by
":field=value,..." overrides (ints, floats, booleans and strings are parsed). Needs only jax/flax/numpy.
On a shared CPU other jobs disturb the timings: run it a couple of times and keep the best stable numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from thflax.models.flops import lowered_flops
from thflax.testing import median_seconds  # noqa: E402
from thflax.models import ltv  # noqa: E402
from thflax.face.sketch import draw_sketch  # noqa: E402


def parse_config(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    cfg = dict(ltv.GENERATOR_PRESETS[name])
    for item in filter(None, rest.split(",")):
        key, _, val = item.partition("=")
        if val.lower() in ("true", "false"):
            v = val.lower() == "true"
        else:
            try:
                v = int(val)
            except ValueError:
                try:
                    v = float(val)
                except ValueError:
                    v = val
        cfg[key] = v
    return spec, cfg


_time = median_seconds


def bench_one(cfg: dict, size: int, batch: int, dtype, repeats: int) -> dict:
    model = ltv.Generator(**cfg, dtype=dtype)
    rng = np.random.default_rng(0)
    ref = jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)), jnp.float32)
    lm = jnp.asarray(0.5 + rng.normal(0, 0.12, (batch, 68, 2)), jnp.float32)
    sk = draw_sketch(lm, size)
    rsk = sk if model.use_reference_sketch else None
    # Random weights; the rbg generator compiles much faster than threefry on XLA CPU.
    variables = ltv.init_generator(model, jax.random.key(0, impl="unsafe_rbg"), size)

    # Sketches given (precomputed) except in sk_dec, which times the generator drawing its own.
    rl, tl = lm, lm + 0.01
    full = jax.jit(lambda v, r, s, rs: model.apply(v, r, rl, tl, target_sketch=s, reference_sketch=rs))
    enc = jax.jit(lambda v, r, rs: model.apply(v, r, rl, reference_sketch=rs, method=ltv.Generator.encode_reference))
    dec = jax.jit(lambda v, f, s: model.apply(v, f, tl, target_sketch=s, method=ltv.Generator.decode))
    sk_dec = jax.jit(lambda v, f, l: model.apply(v, f, l, method=ltv.Generator.decode))

    t0 = time.perf_counter()
    full_l = full.lower(variables, ref, sk, rsk)
    full_c = full_l.compile()
    t_full = time.perf_counter() - t0
    feats = enc(variables, ref, rsk)
    t0 = time.perf_counter()
    dec_l = dec.lower(variables, feats, sk)
    dec_c = dec_l.compile()
    t_dec = time.perf_counter() - t0
    sk_dec_c = sk_dec.lower(variables, feats, lm).compile()

    return dict(
        gflops_full=lowered_flops(full_l) / batch / 1e9,
        gflops_dec=lowered_flops(dec_l) / batch / 1e9,
        compile_full=t_full,
        compile_dec=t_dec,
        fps_full=batch / _time(full_c, (variables, ref, sk, rsk), repeats),
        fps_dec=batch / _time(dec_c, (variables, feats, sk), repeats),
        fps_sk_dec=batch / _time(sk_dec_c, (variables, feats, lm), repeats),
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--configs", nargs="+", default=["tiny", "fast", "paper"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    dtype = jnp.dtype(args.dtype)

    dev = jax.devices()[0]
    print(f"<!-- jax {jax.__version__}, backend {jax.default_backend()}, device {dev.device_kind}, "
          f"{os.cpu_count()} CPUs, dtype {args.dtype}, median of {args.repeats} runs -->")
    print("| config | res | batch | GFLOPs/frame full | GFLOPs/frame decode | compile s full / decode "
          "| frames/s full | frames/s decode | frames/s sketch+decode |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in args.configs:
        name, cfg = parse_config(spec)
        for size in args.sizes:
            for batch in args.batches:
                r = bench_one(cfg, size, batch, dtype, args.repeats)
                print(f"| {name} | {size} | {batch} | {r['gflops_full']:.2f} | {r['gflops_dec']:.2f} | "
                      f"{r['compile_full']:.1f} / {r['compile_dec']:.1f} | {r['fps_full']:.1f} | "
                      f"{r['fps_dec']:.1f} | {r['fps_sk_dec']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
