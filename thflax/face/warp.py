"""Landmark-driven dense warps: a thin-plate spline (TPS) from reference to target landmarks.

Why: a generator that re-draws the whole face from features blurs faces it has not seen. Warping the
reference frame (or its features) so that its landmarks land on the target landmarks keeps the person's
own pixels; the network then only has to fix what a warp cannot do (inner mouth, shading).

Coordinates: as everywhere in thflax (`thflax.face.sketch`, `thflax.face.crop`), points are *normalised crop
coordinates* ([0, 1], x right, y down); in an H×W image, pixel (row i, column j) has its centre at the
normalised point (x, y) = (j / W, i / H). A flow is a *backward map*: flow[b, i, j] = (x, y) is the
normalised point of the source image that output pixel (i, j) samples, so the identity flow is the pixel
grid itself. The spline lives in normalised coordinates, so the same landmarks give the same map at
every resolution: a flow for a 128² crop and one for a 512² crop differ only in sampling density. For a
whole photo, `warp_numpy` fits the same spline in a box around the face and applies it with OpenCV.

The spline: f(p) = a0 + a1·x + a2·y + Σ_m w_m U(|p − c_m|), U(r) = r² log r², fitted so that f(dst_m) =
src_m at the 68 target landmarks and f(anchor) = anchor at fixed points on the crop border (`anchors`),
which keep the background and the crop edges still. Every batch element solves its own
(M + 3)-square system (M = 68 + anchors) with `jnp.linalg.solve` in float32; `reg` is added to the
kernel's diagonal (TPS smoothing): it keeps the system well conditioned when target points (nearly)
coincide while the reference points do not, e.g. the inner lips of a closed target mouth against an open
reference mouth, where exact interpolation would tear the image; it costs landmarks a small fraction of a
pixel of exactness.

Speed: the spline is evaluated on a coarse grid of nodes (pixels 0, grid, 2·grid, .., the last one at
or past the image edge) and interpolated linearly to every pixel by broadcasting (each interval of
`grid` pixels is a blend of its two end nodes). The flow is smooth except right at folds of the map, so
the interpolation error is a small fraction of a pixel almost everywhere, and an affine map (the
identity in particular) is reproduced exactly up to the image edges, which a half-pixel-centred
`jax.image.resize` of the nodes would not do (it clamps at the borders). `grid=1` evaluates every pixel.

`warp` samples an image (any channel count: RGB frames or UNet features) bilinearly at a flow, with edge
clamping, with `jax.scipy.ndimage.map_coordinates(order=1)` vmapped over batch and channels. It was
measured against row gathers from a flat [B·H·W, C] array (`benchmarks/bench_warp.py` times both): its
forward pass and its flow gradient are as fast or faster on CPU and GPU; only its image gradient for
many-channel feature maps is slower on CPU (on GPU the two are alike). It
is differentiable with respect to the image (a scatter-add in the backward pass) and the flow (and
hence, through `tps_flow`, to the landmarks). For features at a lower resolution, compute the flow at
that resolution (`tps_flow(..., size=feature_size)`): it is the same map.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

#: Default TPS smoothing added to the kernel's diagonal (in units of U over normalised coordinates).
DEFAULT_REG = 1e-4
#: Default spacing, in pixels, of the nodes the spline is evaluated at before bilinear upsampling.
DEFAULT_GRID = 4
#: Default border anchors per side of the crop (4·n points in all).
DEFAULT_ANCHORS_PER_SIDE = 4
#: How `warp` samples (see `benchmarks/bench_warp.py`, which times it against row gathers).
SAMPLER = "map_coordinates"
#: Default size of the photo region warped by `warp_numpy`, relative to the landmarks' extent.
DEFAULT_BOX_SCALE = 1.6


def anchors(n_per_side: int = DEFAULT_ANCHORS_PER_SIDE) -> np.ndarray:
    """Fixed points on the border of the unit square, clockwise from the top-left corner.

    They are control points that map to themselves, so the crop's edges (background) do not move.

    Returns:
      float32 [4·n_per_side, 2] normalised (x, y); corners included once each.
    """
    n = int(n_per_side)
    if n < 1:
        raise ValueError(f"n_per_side must be >= 1, got {n_per_side}")
    t = np.arange(n, dtype=np.float64) / n
    zeros, ones = np.zeros(n), np.ones(n)
    pts = np.concatenate([
        np.stack([t, zeros], -1),  # top, left to right
        np.stack([ones, t], -1),  # right, top to bottom
        np.stack([1.0 - t, ones], -1),  # bottom, right to left
        np.stack([zeros, 1.0 - t], -1),  # left, bottom to top
    ])
    return pts.astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# The spline, written once for numpy (float64, the photo path) and jax.numpy (float32, batched, jitted).


def _kernel(xp, d2):
    """U as a function of the squared distance: d² log d² (0 at 0, with a finite gradient there)."""
    return d2 * xp.log(xp.maximum(d2, 1e-20))


def _fit(xp, src, dst, anchor_pts, reg):
    """TPS coefficients of the displacement dst -> src − dst (anchors: 0).

    The spline interpolates the displacement rather than the position (the same map, since a TPS
    reproduces affine maps): equal src and dst then give exactly zero coefficients, and float32 rounding
    scales with the (small) displacement instead of with the coordinates.

    Args: src, dst [B, N, 2]; anchor_pts [K, 2]. Returns (ctrl [B, M, 2], coef [B, M + 3, 2]), M = N + K:
    coef[:, :M] are the kernel weights, coef[:, M:] the affine part over (1, x − ½, y − ½).
    """
    b = src.shape[0]
    anc = xp.broadcast_to(xp.asarray(anchor_pts, src.dtype)[None], (b,) + tuple(anchor_pts.shape))
    ctrl = xp.concatenate([dst, anc], axis=1)  # [B, M, 2]
    vals = xp.concatenate([src - dst, xp.zeros_like(anc)], axis=1)  # [B, M, 2] displacements
    m = ctrl.shape[1]
    diff = ctrl[:, :, None, :] - ctrl[:, None, :, :]
    kmat = _kernel(xp, xp.sum(diff * diff, axis=-1)) + reg * xp.eye(m, dtype=src.dtype)  # [B, M, M]
    p = xp.concatenate([xp.ones((b, m, 1), src.dtype), ctrl - 0.5], axis=-1)  # [B, M, 3], centred
    top = xp.concatenate([kmat, p], axis=2)  # [B, M, M + 3]
    bottom = xp.concatenate([xp.swapaxes(p, 1, 2), xp.zeros((b, 3, 3), src.dtype)], axis=2)
    lmat = xp.concatenate([top, bottom], axis=1)  # [B, M + 3, M + 3]
    rhs = xp.concatenate([vals, xp.zeros((b, 3, 2), src.dtype)], axis=1)  # [B, M + 3, 2]
    return ctrl, xp.linalg.solve(lmat, rhs)


def _evaluate(xp, ctrl, coef, xs, ys):
    """The spline at the grid xs × ys. xs [Wn], ys [Hn] normalised; ctrl [B, M, 2]. Returns [B, Hn, Wn, 2]."""
    m = ctrl.shape[1]
    dx = xs[None, None, :, None] - ctrl[:, None, None, :, 0]  # [B, 1, Wn, M]
    dy = ys[None, :, None, None] - ctrl[:, None, None, :, 1]  # [B, Hn, 1, M]
    u = _kernel(xp, dx * dx + dy * dy)  # [B, Hn, Wn, M]
    w, a = coef[:, :m], coef[:, m:]  # [B, M, 2], [B, 3, 2]
    if xp is np:
        out = np.matmul(u, w[:, None])  # [B, Hn, Wn, 2]
    else:  # full float32: GPUs would otherwise use reduced-precision (TF32) products
        out = jnp.matmul(u, w[:, None], precision=jax.lax.Precision.HIGHEST)
    affine_x = a[:, None, None, 1, :] * (xs[None, None, :, None] - 0.5)  # [B, 1, Wn, 2]
    affine_y = a[:, None, None, 2, :] * (ys[None, :, None, None] - 0.5)  # [B, Hn, 1, 2]
    return out + a[:, None, None, 0, :] + affine_x + affine_y


def _node_count(n: int, grid: int) -> int:
    """Intervals of `grid` pixels covering an axis of n pixels: nodes at pixels 0, grid, .., count · grid."""
    return -(-n // grid)


def _upsample(xp, coarse, axis: int, n: int, grid: int):
    """Linear interpolation along `axis` from nodes every `grid` pixels (node k at pixel k · grid) to the
    pixels 0 .. n − 1. coarse has count + 1 nodes along axis (`_node_count`); nodes past the image edge
    are real spline values, so nothing is extrapolated. Pure broadcasting: each interval's `grid` pixels
    are a blend of its two end nodes, then reshaped into place."""
    count = coarse.shape[axis] - 1
    before = (slice(None),) * axis
    lo = coarse[before + (slice(0, count), None)]  # [..., count, 1, ...]
    hi = coarse[before + (slice(1, count + 1), None)]
    frac = xp.reshape(xp.arange(grid, dtype=coarse.dtype) / grid, (grid,) + (1,) * (coarse.ndim - axis - 1))
    fine = lo + (hi - lo) * frac  # [..., count, grid, ...]
    fine = xp.reshape(fine, coarse.shape[:axis] + (count * grid,) + coarse.shape[axis + 1:])
    return fine[before + (slice(0, n),)]


def _flow(xp, src, dst, h: int, w: int, grid: int, reg: float, n_per_side: int, dtype):
    """The TPS flow [B, H, W, 2] of src/dst [B, N, 2] (fitted in their dtype, evaluated in `dtype`): the
    displacement on the coarse grid, upsampled, plus the exact pixel grid (see the module docstring)."""
    ctrl, coef = _fit(xp, src, dst, anchors(n_per_side).astype(src.dtype), reg)
    ctrl, coef = ctrl.astype(dtype), coef.astype(dtype)
    if grid <= 1:
        xs, ys = np.arange(w) / w, np.arange(h) / h
    else:
        xs = np.arange(_node_count(w, grid) + 1) * grid / w
        ys = np.arange(_node_count(h, grid) + 1) * grid / h
    disp = _evaluate(xp, ctrl, coef, xp.asarray(xs, dtype), xp.asarray(ys, dtype))
    if grid > 1:
        disp = _upsample(xp, _upsample(xp, disp, 2, w, grid), 1, h, grid)
    px = xp.asarray(np.arange(w) / w, dtype)[None, None, :]
    py = xp.asarray(np.arange(h) / h, dtype)[None, :, None]
    return xp.stack([disp[..., 0] + px, disp[..., 1] + py], axis=-1)


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


# ----------------------------------------------------------------------------------------------------
# JAX: batched, jit-friendly, differentiable.


def tps_flow(src, dst, size: int | Sequence[int], grid: int = DEFAULT_GRID, reg: float = DEFAULT_REG,
             n_per_side: int = DEFAULT_ANCHORS_PER_SIDE):
    """Backward TPS flow that moves the `src` landmarks of a source image onto `dst`.

    Sampling the source image at the flow (`warp`) puts what was at src_n at dst_n; the border anchors
    stay where they are.

    Args:
      src: [B, N, 2] (or [N, 2]) landmarks of the source (reference) image, normalised coordinates.
      dst: [B, N, 2] (or [N, 2]) target landmarks, normalised coordinates.
      size: output size: S or (H, W) (static).
      grid: node spacing in pixels for the coarse evaluation (static); 1 evaluates every pixel.
      reg: TPS smoothing added to the kernel's diagonal (static).
      n_per_side: border anchors per side (static), see `anchors`.

    Returns:
      float32 [B, H, W, 2] (or [H, W, 2]): for every output pixel the normalised (x, y) to sample.
    """
    src = jnp.asarray(src, jnp.float32)
    dst = jnp.asarray(dst, jnp.float32)
    if src.shape != dst.shape or src.shape[-1] != 2 or src.ndim not in (2, 3):
        raise ValueError(f"src and dst must both be [B, N, 2] or [N, 2], got {src.shape} and {dst.shape}")
    unbatched = src.ndim == 2
    if unbatched:
        src, dst = src[None], dst[None]
    h, w = _size_hw(size)
    flow = _tps_flow(src, dst, h, w, int(grid), float(reg), int(n_per_side))
    return flow[0] if unbatched else flow


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def _tps_flow(src, dst, h, w, grid, reg, n_per_side):
    return _flow(jnp, src, dst, h, w, grid, reg, n_per_side, jnp.float32)


def identity_flow(size: int | Sequence[int], batch: int | None = None):
    """The flow that samples every pixel at itself: float32 [H, W, 2] (or [batch, H, W, 2])."""
    h, w = _size_hw(size)
    xs = jnp.arange(w, dtype=jnp.float32) / w
    ys = jnp.arange(h, dtype=jnp.float32) / h
    flow = jnp.stack(jnp.broadcast_arrays(xs[None, :], ys[:, None]), axis=-1)
    return flow if batch is None else jnp.broadcast_to(flow, (batch, h, w, 2))


def warp(image, flow):
    """Bilinearly samples `image` at `flow` (edge-clamped).

    Args:
      image: [B, H, W, C] (any C, any float dtype); computed in float32, returned in image's dtype.
      flow: [B, Ho, Wo, 2] normalised (x, y) source points (e.g. `tps_flow` at size (H, W)): x · W and
        y · H are source pixel coordinates, pixel centres at integers. Ho, Wo may differ from H, W.

    Returns:
      [B, Ho, Wo, C]. Differentiable with respect to image and flow (the flow's gradient is zero where
      it points outside the image, which is clamped to the edge pixels).
    """
    image = jnp.asarray(image)
    flow = jnp.asarray(flow, jnp.float32)
    if image.ndim != 4 or flow.ndim != 4 or flow.shape[-1] != 2 or flow.shape[0] != image.shape[0]:
        raise ValueError(f"image must be [B, H, W, C] and flow [B, Ho, Wo, 2], got {image.shape}, {flow.shape}")
    return _warp(image, flow)


@jax.jit
def _warp(image, flow):
    b, h, w, c = image.shape
    rows, cols = flow[..., 1] * h, flow[..., 0] * w  # [B, Ho, Wo] source pixel coordinates

    def sample(channel, r, q):  # [H, W], [Ho, Wo], [Ho, Wo] -> [Ho, Wo]
        # order=1 is bilinear; mode="nearest" clamps the corner indices, i.e. samples past the edge take
        # the edge pixels, and the flow gets no gradient there (both corners are the same pixel).
        return jax.scipy.ndimage.map_coordinates(channel, [r, q], order=1, mode="nearest")

    per_channel = jax.vmap(sample, in_axes=(2, None, None), out_axes=-1)
    return jax.vmap(per_channel)(image.astype(jnp.float32), rows, cols).astype(image.dtype)


# ----------------------------------------------------------------------------------------------------
# numpy / OpenCV: the full-resolution photo path.


def tps_flow_numpy(src: np.ndarray, dst: np.ndarray, size: int | Sequence[int], grid: int = DEFAULT_GRID,
                   reg: float = DEFAULT_REG, n_per_side: int = DEFAULT_ANCHORS_PER_SIDE) -> np.ndarray:
    """`tps_flow` in numpy for one example: fitted in float64, evaluated in float32 (no compilation per
    size, for photo regions of any size).

    Args: src, dst [N, 2] normalised; size S or (H, W). Returns float32 [H, W, 2] normalised (x, y).
    """
    src = np.asarray(src, np.float64)[None]
    dst = np.asarray(dst, np.float64)[None]
    h, w = _size_hw(size)
    return _flow(np, src, dst, h, w, int(grid), float(reg), int(n_per_side), np.float32)[0]


def face_box(src_landmarks_px: np.ndarray, dst_landmarks_px: np.ndarray, image_hw: tuple[int, int],
             scale: float = DEFAULT_BOX_SCALE) -> tuple[int, int, int, int]:
    """The region `warp_numpy` changes: the landmarks' joint bounding box scaled by `scale` about its
    centre, in integer pixels, clipped to the image. Returns (x0, y0, x1, y1), x1 and y1 exclusive."""
    pts = np.concatenate([np.asarray(src_landmarks_px, np.float64), np.asarray(dst_landmarks_px, np.float64)])
    lo, hi = pts.min(0), pts.max(0)
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) * scale / 2, 2.0)
    h, w = image_hw
    x0, y0 = np.floor(centre - half).astype(int)
    x1, y1 = np.ceil(centre + half).astype(int) + 1
    return max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h)


def _border_taper(n: int, feather: float) -> np.ndarray:
    """[n] weights: 0 at both end pixels, rising smoothly (smoothstep) to 1 over `feather` · n pixels."""
    dist = np.minimum(np.arange(n), n - 1 - np.arange(n)) / max(feather * n, 1e-9)
    t = np.clip(dist, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def warp_numpy(image: np.ndarray, src_landmarks_px: np.ndarray, dst_landmarks_px: np.ndarray,
               box: tuple[int, int, int, int] | None = None, grid: int = 8, reg: float = DEFAULT_REG,
               n_per_side: int = DEFAULT_ANCHORS_PER_SIDE, box_scale: float = DEFAULT_BOX_SCALE,
               feather: float = 0.1) -> np.ndarray:
    """Warps a full-resolution photo so that its landmarks `src` move to `dst` (bicubic, keeps sharpness).

    Only the region `box` around the face changes. The TPS is fitted in the box's own normalised
    coordinates with anchors on its border, evaluated every `grid` pixels and upsampled bilinearly
    (`tps_flow_numpy`), and applied with `cv2.remap(INTER_CUBIC, BORDER_REPLICATE)`. Anchors only pin
    points, so between them the spline still moves the box's edge a little; the displacement is therefore
    also faded out (smoothstep) over the outer `feather` fraction of the box, which makes the map the
    identity on the box's edge pixels and the result join the untouched pixels outside it without a seam.
    With the default box (`face_box`) the landmarks lie well inside the faded band.

    Args:
      image: uint8 [H, W, C] (C <= 4, OpenCV's limit) or [H, W].
      src_landmarks_px: [N, 2] (x, y) pixel coordinates of the landmarks in `image` (pixel centres at
        integers).
      dst_landmarks_px: [N, 2] where they should end up.
      box: (x0, y0, x1, y1) pixels, x1/y1 exclusive; default `face_box(src, dst, image size, box_scale)`.
        It should contain all src and dst landmarks, more than `feather` of its size from its edges.
      grid: node spacing in pixels (the face box is large, so a coarser grid than the crop's is about as exact).
      reg, n_per_side: as in `tps_flow`. box_scale: for the default box. feather: see above.

    Returns:
      uint8 array like `image`; pixels outside the box are the input's, bit for bit.
    """
    import cv2  # lazily: the model layer must not import OpenCV

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"image must be uint8 [H, W(, C)], got {image.dtype} {image.shape}")
    src = np.asarray(src_landmarks_px, np.float64)
    dst = np.asarray(dst_landmarks_px, np.float64)
    if box is None:
        box = face_box(src, dst, image.shape[:2], box_scale)
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    bw, bh = x1 - x0, y1 - y0
    if bw < 3 or bh < 3:
        raise ValueError(f"box {box} is empty or degenerate for an image of shape {image.shape}")
    origin, scale = np.array([x0, y0], np.float64), np.array([bw, bh], np.float32)
    flow = tps_flow_numpy((src - origin) / scale, (dst - origin) / scale, (bh, bw), grid, reg, n_per_side)
    cols, rows = np.arange(bw, dtype=np.float32), np.arange(bh, dtype=np.float32)
    taper = (_border_taper(bh, feather)[:, None] * _border_taper(bw, feather)[None, :]).astype(np.float32)
    map_x = cols[None, :] + (flow[..., 0] * bw - cols[None, :]) * taper + x0  # [bh, bw] source pixels
    map_y = rows[:, None] + (flow[..., 1] * bh - rows[:, None]) * taper + y0
    patch = cv2.remap(image, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y),
                      interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    out = image.copy()
    out[y0:y1, x0:x1] = patch.reshape(out[y0:y1, x0:x1].shape)
    return out
