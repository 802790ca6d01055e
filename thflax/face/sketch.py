"""Landmark sketches: 68-point landmarks -> multi-channel soft line images (pure JAX).

`draw_sketch` rasterises the face-part polylines of `geometry.FACE_PARTS` into one channel per face-part
group (`SKETCH_GROUPS`, C = `NUM_SKETCH_CHANNELS` = 6):

    0 jaw | 1 brows (right + left) | 2 nose (bridge + base) | 3 eyes (right + left) | 4 outer lip | 5 inner lip

Each pixel of a channel is the soft line intensity exp(-d² / 2σ²), where d is the distance (in pixels) from
the pixel centre to the nearest segment of that group's polylines, so a pixel on a line is 1 and a pixel
far from every line is 0. σ (`thickness`, in pixels) defaults to sqrt(size / 64): 1 px at 64, 1.41 px at
128, 2 px at 256, so lines look alike at every resolution after resizing.

Coordinates: landmarks are in *normalised crop coordinates* ([0, 1], x right, y down, see `thflax.face.crop`);
pixel coordinate = coord · size, and pixel (row i, column j) has its centre at (x, y) = (j, i), the same
convention as `thflax.face.crop.crop` (cv2.warpAffine), so a landmark at pixel coordinate (j, i) lands exactly on
pixel (i, j) of the matching image crop.

Cost: every pixel's distance to all 63 segments is computed in one fused XLA loop over the pixels: the
offsets from each segment start are separable (x-only and y-only terms), and the per-group minimum is a
running minimum over the group's segments, unrolled at trace time, so nothing of size
[B, H, W, segments] is materialised in the forward pass (a [B, H, W, N] broadcast + reduce is slower on
CPU; timings in BENCHMARKS.md). The function is differentiable with respect to the landmarks (the
gradient flows through the nearest segment; the backward pass uses the equivalent broadcast
formulation, because the autodiff graph of the unrolled loop compiles far more slowly) and jit-friendly
(size and thickness are static Python numbers). Landmarks containing NaN give NaN pixels in their
group's channel.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from thflax.face import geometry, points

#: Channel order of the sketch: each entry lists the `geometry.FACE_PARTS` polylines drawn in that channel.
SKETCH_GROUPS: tuple[tuple[str, ...], ...] = (
    ("jaw",),
    ("right_brow", "left_brow"),
    ("nose_bridge", "nose_base"),
    ("right_eye", "left_eye"),
    ("outer_lip",),
    ("inner_lip",),
)
SKETCH_CHANNEL_NAMES: tuple[str, ...] = ("jaw", "brows", "nose", "eyes", "outer_lip", "inner_lip")
NUM_SKETCH_CHANNELS = len(SKETCH_GROUPS)


def _segments():
    """Start and end point indices of every segment, ordered by group, and the group boundaries."""
    starts, ends, bounds = [], [], [0]
    for group in SKETCH_GROUPS:
        for part in group:
            pts = geometry.FACE_PARTS[part]
            starts += pts[:-1]
            ends += pts[1:]
        bounds.append(len(starts))
    return np.asarray(starts, np.int32), np.asarray(ends, np.int32), tuple(bounds)


SEGMENT_STARTS, SEGMENT_ENDS, GROUP_BOUNDS = _segments()


def default_thickness(size: int) -> float:
    """σ of the soft lines, in pixels, for a `size`×`size` sketch: sqrt(size / 64)."""
    return math.sqrt(size / 64.0)


def draw_sketch(landmarks, size: int, thickness: float | None = None, dtype=jnp.float32):
    """Rasterises landmarks into a soft multi-channel line sketch.

    Args:
      landmarks: [B, 68, 2] (or [68, 2]) in normalised crop coordinates ([0, 1], x right, y down).
      size: output side in pixels (static).
      thickness: σ of the Gaussian line profile in pixels (static); default `default_thickness(size)`.
      dtype: output dtype (the computation is float32).

    Returns:
      [B, size, size, NUM_SKETCH_CHANNELS] (or [size, size, C] for unbatched input) in [0, 1]; channel
      order `SKETCH_CHANNEL_NAMES`.
    """
    lm = jnp.asarray(landmarks, jnp.float32)
    unbatched = lm.ndim == 2
    if unbatched:
        lm = lm[None]
    if lm.shape[-2:] != (points.NUM_POINTS, 2):
        raise ValueError(f"landmarks must be [B, {points.NUM_POINTS}, 2], got {lm.shape}")
    sigma = default_thickness(size) if thickness is None else float(thickness)
    out = _draw(lm, int(size), sigma, jnp.dtype(dtype))
    return out[0] if unbatched else out


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _draw(lm, size, sigma, dtype):
    # Jitted (inlined when called under an outer jit) so that eager calls do not dispatch ~1000 small ops.
    d2min = _group_min_d2(lm, size)  # [B, H, W, C] squared pixel distance to each group's polylines
    return jnp.exp(d2min * (-0.5 / (sigma * sigma))).astype(dtype)


def _segment_geometry(lm, size):
    pts = lm * size  # pixel coordinates
    a = pts[:, SEGMENT_STARTS]  # [B, N, 2]
    ab = pts[:, SEGMENT_ENDS] - a
    inv_len2 = 1.0 / jnp.maximum(jnp.sum(ab * ab, -1), 1e-12)  # [B, N]; degenerate segments -> t = 0
    return a, ab, inv_len2


def _group_min_d2_unrolled(lm, size):
    """Forward: a running minimum over each group's segments, unrolled at trace time.

    XLA fuses the whole chain into one loop over the pixels, which on CPU is faster than the
    [B, H, W, N] broadcast + reduce of `_group_min_d2_broadcast` (but its autodiff graph compiles slowly).
    """
    a, ab, inv_len2 = _segment_geometry(lm, size)
    coords = jnp.arange(size, dtype=jnp.float32)
    xs, ys = coords[None, None, :], coords[None, :, None]  # [1, 1, W], [1, H, 1]
    mins = []
    for lo, hi in zip(GROUP_BOUNDS[:-1], GROUP_BOUNDS[1:]):
        d2min = None
        for n in range(lo, hi):
            ax, ay = a[:, n, 0, None, None], a[:, n, 1, None, None]
            abx, aby = ab[:, n, 0, None, None], ab[:, n, 1, None, None]
            dx, dy = xs - ax, ys - ay  # separable offsets from the segment start
            t = jnp.clip((dx * abx + dy * aby) * inv_len2[:, n, None, None], 0.0, 1.0)
            ex, ey = dx - t * abx, dy - t * aby
            d2 = ex * ex + ey * ey  # [B, H, W]
            d2min = d2 if d2min is None else jnp.minimum(d2min, d2)
        mins.append(d2min)
    return jnp.stack(mins, axis=-1)  # [B, H, W, C]


def _group_min_d2_broadcast(lm, size):
    """The same quantity as one broadcast over all segments + a min per group (used for the gradient)."""
    a, ab, inv_len2 = _segment_geometry(lm, size)
    coords = jnp.arange(size, dtype=jnp.float32)
    dx = coords[None, None, :, None] - a[:, None, None, :, 0]  # [B, 1, W, N]
    dy = coords[None, :, None, None] - a[:, None, None, :, 1]  # [B, H, 1, N]
    abx, aby = ab[:, None, None, :, 0], ab[:, None, None, :, 1]
    t = jnp.clip((dx * abx + dy * aby) * inv_len2[:, None, None, :], 0.0, 1.0)  # [B, H, W, N]
    ex, ey = dx - t * abx, dy - t * aby
    d2 = ex * ex + ey * ey
    mins = [jnp.min(d2[..., lo:hi], axis=-1) for lo, hi in zip(GROUP_BOUNDS[:-1], GROUP_BOUNDS[1:])]
    return jnp.stack(mins, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _group_min_d2(lm, size):
    return _group_min_d2_unrolled(lm, size)


def _group_min_d2_fwd(lm, size):
    return _group_min_d2_unrolled(lm, size), lm


def _group_min_d2_bwd(size, lm, g):
    # Gradient of the broadcast formulation (identical function): compact autodiff graph, fast to compile.
    # It materialises [B, H, W, segments] intermediates (~4 MB per 128² frame), fine for training batches.
    _, vjp = jax.vjp(lambda x: _group_min_d2_broadcast(x, size), lm)
    return vjp(g)


_group_min_d2.defvjp(_group_min_d2_fwd, _group_min_d2_bwd)


def sketch_preview(sketch):
    """[..., H, W, C] sketch -> [..., H, W] single-channel max over groups (for logging / inspection)."""
    return jnp.max(sketch, axis=-1)


__all__ = [
    "SKETCH_GROUPS",
    "SKETCH_CHANNEL_NAMES",
    "NUM_SKETCH_CHANNELS",
    "default_thickness",
    "draw_sketch",
    "sketch_preview",
]
