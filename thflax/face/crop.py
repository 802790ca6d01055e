"""Face crops that are stable over a clip, and pasting generated crops back into full frames.

The box is one square for a clip, computed from the landmarks of the frames it is given: all frames of
a training clip (not per frame, which would make the crop itself jitter and hide the head motion the
model has to learn), or the reference frame alone for evaluation splits and for a photo, so that the
framing knows nothing of the frames that are scored:
centre = median over frames of the landmark bounding-box centre, moved up by `lift` × box height so
the forehead is inside; side = `margin` × the largest landmark bounding-box side over the clip.
Landmarks in the dataset are stored in *normalised crop coordinates*: (p − box corner) / side, so
(0, 0) is the crop's top-left and (1, 1) its bottom-right, whatever size the crop is resized to.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DEFAULT_MARGIN = 2.0
DEFAULT_LIFT = 0.12


@dataclasses.dataclass(frozen=True)
class CropBox:
    """A square region of a frame: top-left corner (x0, y0) and side length, in frame pixels."""

    x0: float
    y0: float
    side: float

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Frame pixels [..., 2] -> normalised crop coordinates [..., 2]."""
        return (np.asarray(points, np.float32) - np.array([self.x0, self.y0], np.float32)) / self.side

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Normalised crop coordinates [..., 2] -> frame pixels [..., 2]."""
        return np.asarray(points, np.float32) * self.side + np.array([self.x0, self.y0], np.float32)


def clip_box(landmarks: np.ndarray, margin: float = DEFAULT_MARGIN, lift: float = DEFAULT_LIFT) -> CropBox:
    """One square crop box for a clip.

    Args:
      landmarks: [T, 68, 2] (or [68, 2]) frame-pixel landmarks; frames with NaN are ignored.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    valid = np.all(np.isfinite(lm), axis=(1, 2))
    if not valid.any():
        raise ValueError("no valid landmarks to compute a crop box from")
    lm = lm[valid]
    lo, hi = lm.min(axis=1), lm.max(axis=1)  # [T, 2]
    centre = np.median((lo + hi) / 2, axis=0)
    extent = hi - lo
    side = float(margin * np.max(extent))
    centre[1] -= lift * float(np.median(extent[:, 1]))
    return CropBox(float(centre[0] - side / 2), float(centre[1] - side / 2), side)


def crop(frame: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """Crops `box` out of an RGB frame [H, W, 3] and resizes it to [size, size, 3].

    Parts of the box outside the frame are filled by replicating the border pixels.
    """
    import cv2

    s = size / box.side
    m = np.array([[s, 0, -box.x0 * s], [0, s, -box.y0 * s]], np.float32)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(frame, m, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)


def paste(frame: np.ndarray, crop_image: np.ndarray, box: CropBox, feather: float = 0.04) -> np.ndarray:
    """Pastes a (generated) square crop back into a copy of `frame` at `box`.

    The crop's border is feathered over `feather` × side so the seam does not show.
    """
    import cv2

    h, w = frame.shape[:2]
    size = crop_image.shape[0]
    s = box.side / size
    m = np.array([[s, 0, box.x0], [0, s, box.y0]], np.float32)
    warped = cv2.warpAffine(crop_image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    ramp = np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5) / max(feather * size, 1e-6)
    ramp = np.clip(ramp, 0.0, 1.0).astype(np.float32)
    alpha = np.minimum(ramp[:, None], ramp[None, :])
    alpha = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    out = frame.astype(np.float32) * (1 - alpha) + warped.astype(np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def paste_masked(frame: np.ndarray, crop_image: np.ndarray, box: CropBox, mask: np.ndarray,
                 face_landmarks: np.ndarray, feather: float = 0.03) -> np.ndarray:
    """Takes from a generated crop only what the network changed: `mask` [S, S] in [0, 1] (its attention),
    limited to the face (the hull of `face_landmarks` [68, 2] in frame pixels, grown and feathered).

    With a warp generator `frame` is already the photo warped to the target landmarks at full
    resolution, so everything the mask leaves out keeps the photo's own sharpness, and no square seam
    can show.
    """
    import cv2

    h, w = frame.shape[:2]
    size = crop_image.shape[0]
    s = box.side / size
    grow = max(3, int(round(feather * box.side)))
    # Only the box (where the warped mask can be non-zero) and a margin for the feathering change:
    # work on that region of interest, not the whole photo (5–10× fewer pixels on a portrait).
    margin = 2 * grow + 2
    x0, y0 = max(0, int(np.floor(box.x0)) - margin), max(0, int(np.floor(box.y0)) - margin)
    x1, y1 = min(w, int(np.ceil(box.x0 + box.side)) + margin), min(h, int(np.ceil(box.y0 + box.side)) + margin)
    if x1 <= x0 or y1 <= y0:  # the box lies outside the frame: nothing to paste
        return np.array(frame, copy=True)
    rw, rh = x1 - x0, y1 - y0
    m = np.array([[s, 0, box.x0 - x0], [0, s, box.y0 - y0]], np.float32)
    up = cv2.warpAffine(crop_image, m, (rw, rh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(np.asarray(mask, np.float32), m, (rw, rh), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT)
    face = np.zeros((rh, rw), np.uint8)
    pts = np.round(np.asarray(face_landmarks, np.float32) - np.array([x0, y0], np.float32)).astype(np.int32)
    cv2.fillConvexPoly(face, cv2.convexHull(pts), 1)
    face = cv2.dilate(face, np.ones((grow, grow), np.uint8)).astype(np.float32)
    face = cv2.GaussianBlur(face, (0, 0), sigmaX=grow / 2)  # reflects at the photo's edges, as before
    alpha = np.clip(alpha * face, 0.0, 1.0)[..., None]
    region = frame[y0:y1, x0:x1].astype(np.float32) * (1 - alpha) + up.astype(np.float32) * alpha
    out = np.array(frame, copy=True)
    out[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    return out
