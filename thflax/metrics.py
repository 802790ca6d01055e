"""Evaluation metrics, implemented once: LMD (landmark distance), SSIM, PSNR.

All functions are jnp and work on numpy input too; they are jit-able and batched.

LMD protocol (our default, `lmd`): mouth points 48–67; each shape is mean-centred (removing the
placement of the mouth, as in Chen et al. 2018 / ATVGnet's evaluation), then the Euclidean distance of
corresponding points is averaged over points and frames, in pixels of the evaluation size.
ATVGnet's evaluation code instead *sums* the distances over the 20 points per frame before averaging
over frames (`reduce="sum"`), which is 20× larger; published LMD numbers differ on this.
"""

from __future__ import annotations

import jax.numpy as jnp

from thflax import geometry

MOUTH = geometry.MOUTH
NON_MOUTH = tuple(range(48))


def frame_lmd(pred, true, points=MOUTH, center: bool = True, reduce: str = "mean"):
    """Per-frame landmark distance [...] for landmarks [..., 68, 2] in pixels.

    center: subtract each shape's mean over `points` first; reduce: "mean" over points (our protocol)
    or "sum" over points (ATVGnet's code).
    """
    p = jnp.asarray(pred, jnp.float32)[..., points, :]
    t = jnp.asarray(true, jnp.float32)[..., points, :]
    if center:
        p = p - p.mean(-2, keepdims=True)
        t = t - t.mean(-2, keepdims=True)
    d = jnp.sqrt(jnp.sum(jnp.square(p - t), -1) + 1e-12)
    return d.sum(-1) if reduce == "sum" else d.mean(-1)


def lmd(pred, true, points=MOUTH, center: bool = True, reduce: str = "mean", mask=None):
    """Landmark distance: the (masked) mean over frames of `frame_lmd`.

    Args:
      pred, true: [..., 68, 2] landmarks in pixels.
      points: indices compared (default: mouth 48–67).
      mask: optional [...] frame weights (e.g. 0 for padding).
    """
    per_frame = frame_lmd(pred, true, points, center, reduce)
    if mask is None:
        return per_frame.mean()
    mask = jnp.asarray(mask, jnp.float32)
    return jnp.sum(per_frame * mask) / jnp.maximum(mask.sum(), 1.0)


def mouth_opening(landmarks):
    """Inner-lip opening [...]: mean vertical gap between points 61–63 and 67–65 (units of the input)."""
    lm = jnp.asarray(landmarks, jnp.float32)
    return jnp.mean(lm[..., (67, 66, 65), 1] - lm[..., (61, 62, 63), 1], -1)
