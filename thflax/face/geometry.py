"""The paper's landmark representation (§3.1, eq. 6): calibrated mouth + uncalibrated head.

dlib's 68 points are split into two parts that the STL net predicts separately:

* **mouth**: 21 points = nose tip (30) followed by the 20 mouth points (48–67), i.e. the paper's 42
  values. Each frame's mouth is *calibrated*: mapped by the 2-D similarity transform (rotation, uniform
  scale, translation; no reflection) that takes the frame's nose tip and mouth corners (30, 48, 54) onto
  those of a fixed canonical template (`CANONICAL_ANCHORS`). Calibration removes head pose, so the lip
  branch only has to model articulation. The nose tip is kept in the representation because it is one of
  the three anchors the merge needs.
* **head**: 50 points = the uncalibrated face points 0–47 (jaw, brows, nose, eyes) plus the two mouth
  corners (48, 54), i.e. the paper's 100 values. They carry head pose and motion, and include the three
  anchors again so that the merge can put the mouth back.

`merge` (eq. 6) maps the calibrated mouth onto the head by the similarity transform that aligns the
mouth's three anchors to the head's, and keeps the head's points 0–47. It is differentiable and works on
any leading batch shape; `merge(calibrate_mouth(x), head_points(x)) == x` up to float error.

Coordinates are in any consistent units; the dataset stores landmarks normalised to the face crop
([0, 1]) and the STL net works in pixels of a 256×256 crop (see `thflax.models.stl`).
All functions accept numpy or jax arrays and return jax arrays.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from thflax.face.points import MOUTH, MOUTH_LEFT, MOUTH_RIGHT, NOSE_TIP

ANCHORS = (NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT)

#: Points of the calibrated mouth representation (21 points = 42 values).
MOUTH_REP = (NOSE_TIP,) + MOUTH
#: Points of the head representation (50 points = 100 values).
HEAD_REP = tuple(range(48)) + (MOUTH_LEFT, MOUTH_RIGHT)
#: Where the three anchors sit inside each representation.
MOUTH_REP_ANCHORS = tuple(MOUTH_REP.index(i) for i in ANCHORS)  # (0, 1, 7)
HEAD_REP_ANCHORS = tuple(HEAD_REP.index(i) for i in ANCHORS)  # (30, 48, 49)

#: Canonical nose tip and mouth corners in normalised crop coordinates ([0, 1], x right, y down): the
#: template every mouth is calibrated to. Rounded from dlib's landmarks of the bundled photo
#: (`skimage.data.astronaut()`) in our face crop (`thflax.face.crop`), made symmetric; any fixed
#: non-degenerate triangle works, this one keeps calibrated mouths where mouths usually are so they
#: can be drawn and inspected.
CANONICAL_ANCHORS = np.array([[0.500, 0.530], [0.380, 0.600], [0.620, 0.600]], np.float32)

# Face-part polylines of the 68-point scheme (closed ones repeat their first point), used to draw
# landmark sketches and to group points.
FACE_PARTS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)),
    "right_brow": tuple(range(17, 22)),
    "left_brow": tuple(range(22, 27)),
    "nose_bridge": tuple(range(27, 31)),
    "nose_base": tuple(range(31, 36)),
    "right_eye": tuple(range(36, 42)) + (36,),
    "left_eye": tuple(range(42, 48)) + (42,),
    "outer_lip": tuple(range(48, 60)) + (48,),
    "inner_lip": tuple(range(60, 68)) + (60,),
}


def similarity_fit(src, dst):
    """Least-squares similarity transform taking `src` points onto `dst` points.

    Points are treated as complex numbers z = x + iy; the transform is z -> a·z + b with complex a
    (rotation and scale) and b (translation), which has the closed-form least-squares solution below.
    float32 JAX, differentiable and batched, for the model's representation; dubbing fits with it too
    (`thflax.inference.dubbing.align_template`). Kept apart on purpose: dubbing applies the fitted
    transforms in float64 numpy (`apply_similarity`), and the synthetic corpus aligns photos with its
    own float64 numpy SVD fit (`thflax.synthetic.portraits._umeyama`, no JAX, byte-identical corpus).

    Args:
      src, dst: [..., K, 2] with K >= 2 non-coincident points.

    Returns:
      (a, b): [..., 2] each, the real and imaginary parts of a and b.
    """
    src = jnp.asarray(src, jnp.float32)
    dst = jnp.asarray(dst, jnp.float32)
    ms, md = src.mean(-2, keepdims=True), dst.mean(-2, keepdims=True)
    s, d = src - ms, dst - md
    denom = jnp.sum(s**2, axis=(-2, -1))
    # Σ d·conj(s) for complex d, s.
    re = jnp.sum(d[..., 0] * s[..., 0] + d[..., 1] * s[..., 1], -1)
    im = jnp.sum(d[..., 1] * s[..., 0] - d[..., 0] * s[..., 1], -1)
    denom = jnp.maximum(denom, 1e-12)
    a = jnp.stack([re / denom, im / denom], -1)
    b = md[..., 0, :] - _cmul(a, ms[..., 0, :])
    return a, b


def _cmul(a, z):
    """Complex product of a [..., 2] with points z [..., 2] or [..., K, 2] (a broadcast over K)."""
    if z.ndim == a.ndim + 1:
        a = a[..., None, :]
    return jnp.stack([a[..., 0] * z[..., 0] - a[..., 1] * z[..., 1],
                      a[..., 0] * z[..., 1] + a[..., 1] * z[..., 0]], -1)


def similarity_apply(a, b, pts):
    """Applies z -> a·z + b to points [..., K, 2] (float32 JAX; dubbing's float64 numpy twin is
    `thflax.inference.dubbing.apply_similarity`)."""
    return _cmul(a, jnp.asarray(pts, jnp.float32)) + b[..., None, :]


def canonical_anchors(scale: float = 1.0):
    """The calibration template's nose tip and mouth corners, [3, 2], in units of `scale`."""
    return jnp.asarray(CANONICAL_ANCHORS) * scale


def calibrate_mouth(landmarks, template_anchors=None):
    """Calibrated mouth representation of 68-point landmarks.

    Args:
      landmarks: [..., 68, 2].
      template_anchors: [3, 2] (or broadcastable [..., 3, 2]) target positions of nose tip and mouth
        corners; defaults to `CANONICAL_ANCHORS` (normalised units).

    Returns:
      [..., 21, 2]: nose tip then points 48–67, after the similarity transform.
    """
    landmarks = jnp.asarray(landmarks, jnp.float32)
    if template_anchors is None:
        template_anchors = canonical_anchors()
    template_anchors = jnp.broadcast_to(jnp.asarray(template_anchors, jnp.float32),
                                        landmarks.shape[:-2] + (3, 2))
    a, b = similarity_fit(landmarks[..., ANCHORS, :], template_anchors)
    return similarity_apply(a, b, landmarks[..., MOUTH_REP, :])


def head_points(landmarks):
    """Head representation: [..., 68, 2] -> [..., 50, 2] (points 0–47, 48, 54; uncalibrated)."""
    return jnp.asarray(landmarks, jnp.float32)[..., HEAD_REP, :]


def merge(mouth, head):
    """Eq. 6: puts a calibrated mouth [..., 21, 2] back onto a head [..., 50, 2] -> [..., 68, 2].

    The mouth is mapped by the similarity transform aligning its nose tip and corners to the head's.
    """
    mouth = jnp.asarray(mouth, jnp.float32)
    head = jnp.asarray(head, jnp.float32)
    a, b = similarity_fit(mouth[..., MOUTH_REP_ANCHORS, :], head[..., HEAD_REP_ANCHORS, :])
    placed = similarity_apply(a, b, mouth[..., 1:, :])  # points 48–67
    return jnp.concatenate([head[..., :48, :], placed], axis=-2)


def scale_head_motion(landmarks, template, scale: float):
    """Landmarks whose head moves `scale` times as far from the template's head as in `landmarks`.

    The head points (`head_points`) become template + scale · (landmarks − template) and the calibrated
    mouth of `landmarks` is merged back onto them (eq. 6), so the lips keep their articulation: 0 is
    the template's head with the predicted lips (generation's `still`), 2 doubles every head point's
    displacement from the template. Relative to the template rather than to the track's mean so that
    chunks of a long track scale alike and 0 means the photo's own pose.

    Args:
      landmarks: [..., T, 68, 2]; template: [..., 68, 2] (the same leading shape, without T);
      scale: a Python float (a different scale is a different program under jit).

    Returns:
      [..., T, 68, 2].
    """
    landmarks = jnp.asarray(landmarks, jnp.float32)
    t_head = head_points(template)[..., None, :, :]
    if scale == 0:  # exactly the template's points, whatever the prediction
        head = jnp.broadcast_to(t_head, landmarks.shape[:-2] + (len(HEAD_REP), 2))
    else:
        head = t_head + scale * (head_points(landmarks) - t_head)
    return merge(calibrate_mouth(landmarks), head)
