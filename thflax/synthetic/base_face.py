"""The astronaut base face of the synthetic corpus: its photo, landmarks and matte.

Every plain `thflax.synthetic.speakers.Speaker` is a variant of one real photo,
``skimage.data.astronaut()``. This module holds what is derived from that photo once per process
(dlib's 68 landmarks, the person matte, the photo with its smiling mouth painted shut); the
68-point index groups are `thflax.face.points`'. Coordinates are pixels of the 512x512 photo
("photo px").
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from thflax.face.landmarks import dlib_models
from thflax.face.points import INNER_LIP


@functools.lru_cache(maxsize=1)
def base_photo() -> np.ndarray:
    """The source photo, uint8 RGB [512, 512, 3]."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


def detect_landmarks(image: np.ndarray, upsample: int = 1) -> np.ndarray | None:
    """dlib's 68 landmarks of the largest detected face.

    Args:
      image: uint8 RGB [H, W, 3].
    Returns:
      float32 [68, 2] (x, y) pixel coordinates, or None if no face is found.
    """
    detector, predictor = dlib_models()
    # dlib silently misreads non-contiguous views (e.g. BGR->RGB ``[..., ::-1]``).
    image = np.ascontiguousarray(image, dtype=np.uint8)
    rects = detector(image, upsample)
    if len(rects) == 0:
        return None
    # The astronaut photo also yields a false detection on the suit; the face is
    # the largest rectangle.
    rect = max(rects, key=lambda r: r.area())
    shape = predictor(image, rect)
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32)


@functools.lru_cache(maxsize=1)
def base_landmarks() -> np.ndarray:
    """dlib's 68 landmarks of the photo, float32 [68, 2] in photo pixels (read-only)."""
    pts = detect_landmarks(base_photo(), 1)
    if pts is None:
        raise RuntimeError("dlib found no face in the astronaut photo")
    pts.setflags(write=False)
    return pts


@functools.lru_cache(maxsize=1)
def person_alpha() -> np.ndarray:
    """Soft foreground (person) matte of the photo, float32 [512, 512] in [0, 1].

    GrabCut seeded with the face, neck ring and suit as certain foreground and
    the image sides as certain background; used to swap backgrounds per speaker.
    """
    img = base_photo()
    lm = base_landmarks()
    c = lm.mean(0)
    fw = lm[16, 0] - lm[0, 0]  # face width, ~93 px
    mask = np.full(img.shape[:2], cv2.GC_PR_BGD, np.uint8)
    cx, cy = int(c[0]), int(c[1])
    cv2.ellipse(mask, (cx, cy - 20), (int(0.86 * fw), int(1.08 * fw)), 0, 0, 360, cv2.GC_PR_FGD, -1)
    cv2.rectangle(mask, (30, cy + 45), (370, 511), cv2.GC_PR_FGD, -1)
    cv2.ellipse(mask, (cx, cy), (int(0.43 * fw), int(0.54 * fw)), 0, 0, 360, cv2.GC_FGD, -1)
    cv2.ellipse(mask, (cx - 16, cy + 97), (int(0.99 * fw), int(0.73 * fw)), 0, 0, 360, cv2.GC_FGD, -1)
    cv2.rectangle(mask, (120, 260), (300, 511), cv2.GC_FGD, -1)
    cv2.rectangle(mask, (300, 350), (511, 511), cv2.GC_FGD, -1)
    mask[:, :12] = cv2.GC_BGD
    mask[:300, 470:] = cv2.GC_BGD
    mask[:6, :] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)  # GrabCut's GMM init uses OpenCV's RNG: keep it deterministic.
    cv2.grabCut(np.ascontiguousarray(img[:, :, ::-1]), mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    # Keep the main blob and fill holes so stray background islands do not flicker.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=4)
    if n > 1:
        fg = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    inv = (1 - fg).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    for k in range(1, n):
        x, y, w, h, _ = stats[k]
        if x > 0 and y > 0 and x + w < img.shape[1] and y + h < img.shape[0]:
            fg[labels == k] = 1  # hole not touching the border
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 1.5)
    alpha.setflags(write=False)
    return alpha


@functools.lru_cache(maxsize=1)
def closed_mouth_photo() -> np.ndarray:
    """The photo with its teeth painted over with lip texture, uint8 [512, 512, 3].

    The astronaut smiles with teeth showing up to the mouth corners. Warped
    shut, those teeth would leave bright slivers at the corners, so the region
    between the inner lips (extended to the outer corners) is inpainted from
    the surrounding lips; the renderer draws its own mouth interior when open.
    """
    img = base_photo()
    lm = base_landmarks().astype(np.float64)
    # The inner-lip polygon, its lower edge pushed down and corners out a little:
    # dlib's straight segments cut the curved smile, leaving teeth just outside.
    poly = lm[list(INNER_LIP)].copy()
    poly[[5, 6, 7], 1] += 2.0
    poly[0] += (lm[60] - lm[64]) / np.linalg.norm(lm[60] - lm[64]) * 2.0
    poly[4] += (lm[64] - lm[60]) / np.linalg.norm(lm[64] - lm[60]) * 2.0
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
    out = cv2.inpaint(np.ascontiguousarray(img), mask, 4, cv2.INPAINT_TELEA)
    out.setflags(write=False)
    return out
