"""Landmark warp speed benchmark (`thflax.face.warp`): ms/frame of the TPS flow and of the bilinear warp.

Prints a markdown table with, per (resolution, batch):
  * JIT compile time (lower + compile) of tps_flow + warp, reported separately;
  * ms/frame of `tps_flow` alone, of the bilinear warp written two ways (row gathers from a flat
    [B·H·W, C] array, and `jax.scipy.ndimage.map_coordinates(order=1)` vmapped over batch and channels;
    `thflax.face.warp.warp` is one of them, `thflax.face.warp.SAMPLER`), and of tps_flow + warp in one jitted call
    (the per-frame cost in a warp generator); medians over `--repeats` timed calls after a warm-up, with
    `block_until_ready`;
  * the flow's grid error: max and 99th percentile distance, in pixels, between the flow evaluated every
    `grid` pixels and upsampled, and the spline evaluated at every pixel (`tps_flow_numpy(grid=1)`).
With `--grads`, a second table: ms/frame of the backward pass of both samplers w.r.t. the image and
w.r.t. the flow, for `--grad_channels` channels (3: frames; more: UNet features).
Then one line per photo size for `warp_numpy` (numpy TPS on the face box + cv2.remap INTER_CUBIC) on a
synthetic photo (random pixels) whose face spans about 36 % of its side.

Usage:
  python benchmarks/bench_warp.py --sizes 64 128 256 --batches 1 16 --grids 4 --photo 1024 --repeats 5
  JAX_PLATFORMS=cpu taskset -c 0,1 python benchmarks/bench_warp.py   # CPU timings on 2 cores

Landmarks are a synthetic face (reference) and the same face with the mouth opened, moved and turned
(target). On a shared CPU other jobs disturb the timings: run it a couple of times and keep the best.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from thflax.face import warp as W  # noqa: E402
from thflax.testing import face_landmarks, median_seconds  # noqa: E402


def synthetic_face(open_mouth: float = 0.0) -> np.ndarray:
    return face_landmarks(open_mouth)


def target_face(ref: np.ndarray) -> np.ndarray:
    """`ref` with the mouth opened, turned by 6 degrees, scaled by 1.04 and moved a little."""
    opened = synthetic_face(1.0) + (ref - synthetic_face(0.0))
    th = np.deg2rad(6.0)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    c = ref.mean(0)
    return ((opened - c) @ rot.T * 1.04 + c + np.array([0.02, -0.015])).astype(np.float32)


def _warp_rows(image, flow):
    """Sampler A: one flat index over batch and pixels, 4 row gathers of C values from [B·H·W, C]."""
    b, h, w, c = image.shape
    px = jnp.clip(flow[..., 0] * w, 0.0, w - 1.0)
    py = jnp.clip(flow[..., 1] * h, 0.0, h - 1.0)
    x0 = jnp.clip(jnp.floor(px), 0.0, max(w - 2, 0))
    y0 = jnp.clip(jnp.floor(py), 0.0, max(h - 2, 0))
    fx, fy = (px - x0)[..., None], (py - y0)[..., None]
    base = (jnp.arange(b, dtype=jnp.int32) * (h * w))[:, None, None]
    idx = base + y0.astype(jnp.int32) * w + x0.astype(jnp.int32)
    dx, dy = (1 if w > 1 else 0), (w if h > 1 else 0)
    flat = image.astype(jnp.float32).reshape(b * h * w, c)
    top = flat[idx] * (1.0 - fx) + flat[idx + dx] * fx
    bot = flat[idx + dy] * (1.0 - fx) + flat[idx + dy + dx] * fx
    return (top * (1.0 - fy) + bot * fy).astype(image.dtype)


def _warp_map_coordinates(image, flow):
    """Sampler B: map_coordinates(order=1, mode='nearest'), vmapped over batch and channels."""
    b, h, w, c = image.shape
    rows, cols = flow[..., 1] * h, flow[..., 0] * w

    def one(img_hw, r, q):  # [H, W], [Ho, Wo], [Ho, Wo]
        return jax.scipy.ndimage.map_coordinates(img_hw, [r, q], order=1, mode="nearest")

    per_channel = jax.vmap(one, in_axes=(2, None, None), out_axes=-1)  # over channels
    return jax.vmap(per_channel)(image.astype(jnp.float32), rows, cols).astype(image.dtype)


SAMPLERS = {"rows": _warp_rows, "map_coordinates": _warp_map_coordinates}


_time = median_seconds


def bench_one(size: int, batch: int, grid: int, repeats: int) -> dict:
    ref = synthetic_face()
    dst = target_face(ref)
    src_b = jnp.asarray(np.broadcast_to(ref, (batch, 68, 2)))
    dst_b = jnp.asarray(np.broadcast_to(dst, (batch, 68, 2)))
    image = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)), jnp.float32)

    flow_fn = jax.jit(lambda s, d: W.tps_flow(s, d, size, grid=grid))
    both = jax.jit(lambda im, s, d: W.warp(im, W.tps_flow(s, d, size, grid=grid)))

    t0 = time.perf_counter()
    both_c = both.lower(image, src_b, dst_b).compile()
    compile_s = time.perf_counter() - t0
    flow = flow_fn(src_b, dst_b)
    ref_out = np.asarray(W.warp(image, flow))
    out = dict(compile_s=compile_s)
    ms = lambda t: 1e3 * t / batch  # noqa: E731
    for name, sampler in SAMPLERS.items():
        fn = jax.jit(sampler)
        assert np.abs(np.asarray(fn(image, flow)) - ref_out).max() < 1e-4, name  # all samplers agree
        out[name] = ms(_time(fn, (image, flow), repeats))

    exact = W.tps_flow_numpy(ref, dst, size, grid=1)
    err = np.linalg.norm(np.asarray(flow[0]) - exact, axis=-1) * size
    out.update(
        flow_ms=ms(_time(flow_fn, (src_b, dst_b), repeats)),
        both_ms=ms(_time(both_c, (image, src_b, dst_b), repeats)),
        err_max=float(err.max()),
        err_p99=float(np.quantile(err, 0.99)),
    )
    return out


def bench_grads(size: int, batch: int, channels: int, repeats: int) -> dict:
    """ms/frame of jit(grad) of a squared-error loss through each sampler, w.r.t. the image and the flow."""
    ref = synthetic_face()
    flow = W.tps_flow(np.broadcast_to(ref, (batch, 68, 2)), np.broadcast_to(target_face(ref), (batch, 68, 2)), size)
    image = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, size, size, channels)), jnp.float32)
    out = {}
    for name, sampler in SAMPLERS.items():
        for arg, what in ((0, "image"), (1, "flow")):
            fn = jax.jit(jax.grad(lambda im, fl, f=sampler: jnp.sum(f(im, fl) ** 2), argnums=arg))
            out[f"{name}/{what}"] = 1e3 * _time(fn, (image, flow), repeats) / batch
    return out


def bench_photo(side: int, repeats: int) -> tuple[float, tuple[int, int, int, int]]:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    # synthetic_face spans about half of its crop: scaled by 0.7, the face is about 0.36 · side wide.
    to_px = lambda p: (p - 0.5) * 0.7 * side + side / 2  # noqa: E731
    src, dst = to_px(synthetic_face()), to_px(target_face(synthetic_face()))
    box = W.face_box(src, dst, photo.shape[:2])
    W.warp_numpy(photo, src, dst)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        W.warp_numpy(photo, src, dst)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), box


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--grids", type=int, nargs="+", default=[W.DEFAULT_GRID])
    p.add_argument("--photo", type=int, nargs="*", default=[1024])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--grads", action="store_true", help="also time the backward passes of both samplers")
    p.add_argument("--grad_channels", type=int, nargs="+", default=[3, 32])
    args = p.parse_args(argv)

    dev = jax.devices()[0]
    print(f"<!-- jax {jax.__version__}, backend {jax.default_backend()}, device {dev.device_kind}, "
          f"{len(os.sched_getaffinity(0))} usable CPUs, median of {args.repeats} runs; thflax.face.warp.warp "
          f"is the {W.SAMPLER!r} sampler -->")
    print("| res | batch | grid | compile s (flow+warp) | ms/frame tps_flow | ms/frame warp (row gathers) "
          "| ms/frame warp (map_coordinates) | ms/frame tps_flow+warp | grid error px max / p99 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, batch, grid in itertools.product(args.sizes, args.batches, args.grids):
        r = bench_one(size, batch, grid, args.repeats)
        print(f"| {size} | {batch} | {grid} | {r['compile_s']:.2f} | {r['flow_ms']:.3f} | {r['rows']:.3f} | "
              f"{r['map_coordinates']:.3f} | {r['both_ms']:.3f} | {r['err_max']:.2f} / {r['err_p99']:.3f} |",
              flush=True)
    if args.grads:
        print("\n| res | batch | channels | ms/frame grad w.r.t. image: rows / map_coordinates "
              "| ms/frame grad w.r.t. flow: rows / map_coordinates |")
        print("|---|---|---|---|---|")
        for size, batch, channels in itertools.product(args.sizes, args.batches, args.grad_channels):
            r = bench_grads(size, batch, channels, args.repeats)
            print(f"| {size} | {batch} | {channels} | {r['rows/image']:.3f} / {r['map_coordinates/image']:.3f} | "
                  f"{r['rows/flow']:.3f} / {r['map_coordinates/flow']:.3f} |", flush=True)
    for side in args.photo:
        ms, (x0, y0, x1, y1) = bench_photo(side, args.repeats)
        print(f"\nwarp_numpy, {side}×{side} uint8 photo, face box {x1 - x0}×{y1 - y0} px: {ms:.1f} ms/frame")


if __name__ == "__main__":
    main()
