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

from thflax.face.points import LOWER_INNER, MOUTH, UPPER_INNER

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
    """Inner-lip opening [...]: mean vertical gap between points 61–63 and 67–65 (units of the input).

    float32 JAX for the train step; `thflax.synthetic.portraits.inner_gap` is the same formula in
    numpy float64 (portraits need no JAX), `thflax.face.points.mouth_opening` the gap's length over
    the mouth width.
    """
    lm = jnp.asarray(landmarks, jnp.float32)
    return jnp.mean(lm[..., LOWER_INNER, 1] - lm[..., UPPER_INNER, 1], -1)


def psnr(pred, true, data_range: float = 255.0):
    """Peak signal-to-noise ratio per image [...] of images [..., H, W, C] (dB).

    Matches `skimage.metrics.peak_signal_noise_ratio(true, pred, data_range=data_range)` per image.
    """
    p = jnp.asarray(pred, jnp.float32)
    t = jnp.asarray(true, jnp.float32)
    err = jnp.mean(jnp.square(p - t), axis=(-3, -2, -1))
    return 10.0 * jnp.log10(data_range**2 / jnp.maximum(err, 1e-12))


def _gaussian_filter(x, sigma: float, truncate: float = 3.5):
    """Separable Gaussian blur over H, W of [N, H, W, C] with scipy.ndimage's reflect padding.

    The radius int(truncate·σ + 0.5) (5 for σ = 1.5, an 11-tap window) is what skimage uses.
    """
    radius = int(truncate * sigma + 0.5)
    k = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1, dtype=jnp.float32) / sigma) ** 2)
    k = k / k.sum()
    x = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    h = x.shape[1] - 2 * radius
    w = x.shape[2] - 2 * radius
    x = sum(k[i] * x[:, i:i + h] for i in range(2 * radius + 1))
    return sum(k[i] * x[:, :, i:i + w] for i in range(2 * radius + 1))


def ssim(pred, true, data_range: float = 255.0, sigma: float = 1.5):
    """Structural similarity per image [...] of images [..., H, W, C], mean over pixels and channels.

    Wang et al. (2004)'s settings: 11-tap Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, population
    covariances — i.e. `skimage.metrics.structural_similarity(true, pred, channel_axis=-1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range)`, including
    its cropping of the window radius at the borders before averaging.
    """
    p = jnp.asarray(pred, jnp.float32)
    t = jnp.asarray(true, jnp.float32)
    lead = p.shape[:-3]
    p = p.reshape((-1,) + p.shape[-3:])
    t = t.reshape((-1,) + t.shape[-3:])
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_p, mu_t = _gaussian_filter(p, sigma), _gaussian_filter(t, sigma)
    var_p = _gaussian_filter(p * p, sigma) - mu_p**2
    var_t = _gaussian_filter(t * t, sigma) - mu_t**2
    cov = _gaussian_filter(p * t, sigma) - mu_p * mu_t
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    r = int(3.5 * sigma + 0.5)
    s = s[:, r:-r, r:-r]
    return s.mean(axis=(1, 2, 3)).reshape(lead)


def polygon_mask(points, size: int):
    """Rasterised inside of closed polygons [..., K, 2] (normalised coords) -> [..., size, size] in {0, 1}.

    Even-odd rule at pixel centres; used for "inside the face" masks (jaw + brows outline).
    """
    pts = jnp.asarray(points, jnp.float32) * size
    c = (jnp.arange(size, dtype=jnp.float32) + 0.5)
    py, px = c[:, None], c[None, :]
    x0, y0 = pts[..., :, 0], pts[..., :, 1]
    x1, y1 = jnp.roll(x0, -1, -1), jnp.roll(y0, -1, -1)
    x0, y0, x1, y1 = (v[..., None, None, :] for v in (x0, y0, x1, y1))
    crosses = (y0 > py[..., None]) != (y1 > py[..., None])
    xint = x0 + (py[..., None] - y0) * (x1 - x0) / jnp.where(y1 == y0, 1e-9, y1 - y0)
    inside = jnp.sum(crosses & (px[..., None] < xint), -1) % 2
    return inside.astype(jnp.float32)


#: Face outline: jaw (0–16) then brows right-to-left (26–17).
FACE_OUTLINE = tuple(range(17)) + tuple(range(26, 16, -1))
#: Outer lip contour (48–59): the mouth region, where a warp of the reference cannot show what the
#: target's open mouth holds.
OUTER_LIP = tuple(range(48, 60))


def laplacian_variance(images, mask=None):
    """Variance of the 4-neighbour Laplacian of the grey image [B, H, W, 3] (any range), per image [B].

    The usual focus measure (OpenCV's `Laplacian(...).var()`); `mask` [B, H, W, 1] (or [B, H, W])
    restricts it to a region, e.g. the face. Ratios of it compare an output's sharpness with the truth's.
    """
    g = jnp.mean(jnp.asarray(images, jnp.float32), -1)
    lap = (g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:] - 4 * g[:, 1:-1, 1:-1])
    w = jnp.ones_like(lap) if mask is None else jnp.asarray(mask, jnp.float32).reshape(g.shape)[:, 1:-1, 1:-1]
    n = jnp.maximum(jnp.sum(w, (1, 2)), 1.0)
    mu = jnp.sum(w * lap, (1, 2)) / n
    return jnp.sum(w * jnp.square(lap - mu[:, None, None]), (1, 2)) / n


def masked_psnr(pred, true, mask, data_range: float = 255.0):
    """PSNR [B] over the pixels where `mask` [B, H, W, 1] (or [B, H, W]) is 1, e.g. the mouth."""
    p, t = jnp.asarray(pred, jnp.float32), jnp.asarray(true, jnp.float32)
    w = jnp.asarray(mask, jnp.float32).reshape(p.shape[:3] + (1,))
    mse = jnp.sum(w * jnp.square(p - t), (1, 2, 3)) / jnp.maximum(jnp.sum(w, (1, 2, 3)) * p.shape[-1], 1.0)
    return 10.0 * jnp.log10(data_range**2 / jnp.maximum(mse, 1e-10))
