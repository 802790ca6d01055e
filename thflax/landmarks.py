"""dlib 68-point landmarks for images and videos, with tracking and jitter smoothing.

The predictor file ships with the `face-recognition-models` package, so nothing is downloaded.

Videos: the HOG face detector (the slow part, tens of ms per frame) runs on the first frame only; each
next frame's predictor box is derived from the previous frame's landmarks (the 68-point predictor alone
takes under 1 ms). Tracking is checked every frame (the box must not jump or change size abruptly, and the face region
must still look like the previous frame's: normalised cross-correlation of 32×32 patches) and every
`verify_every` frames by a cheap local re-detection in a small window around the face; when a check
fails the full frame is searched again. Frames where no face is found get NaN landmarks, so the
caller decides to interpolate, trim or skip — never silently misalign.

This module belongs to the data layer (imports dlib lazily).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import warnings
from collections.abc import Iterable

import numpy as np

from thflax.errors import NoFaceError

# Size (px) local re-detection windows are resized to: the HOG detector finds faces of >= ~80 px at
# upsample 0, so a face is scaled to about 120 px inside a 240 px window.
_LOCAL_WINDOW = 240


@functools.lru_cache(maxsize=1)
def _dlib_models():
    import dlib
    import face_recognition_models

    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(face_recognition_models.pose_predictor_model_location()))


def _to_gray(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.ndim == 2:
        return np.ascontiguousarray(image, np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2GRAY)


@dataclasses.dataclass
class TrackStats:
    """What tracking did on a video, for build reports and benchmarks."""

    frames: int = 0
    detections: int = 0
    verifications: int = 0
    lost: int = 0
    missing: int = 0


class FaceLandmarker:
    """Finds faces and their 68 dlib landmarks (frame pixels, x right, y down)."""

    def __init__(self, verify_every: int = 25, max_jump: float = 0.25, max_scale_change: float = 0.25,
                 min_similarity: float = 0.5):
        self.detector, self.predictor = _dlib_models()
        self.verify_every = verify_every
        self.min_similarity = min_similarity
        self.max_jump = max_jump
        self.max_scale_change = max_scale_change

    # --- detection ----------------------------------------------------------------------------
    def detect(self, image: np.ndarray, upsample: int | None = None) -> list[tuple[tuple[float, float, float, float], float]]:
        """Face boxes (left, top, right, bottom) with detector scores, largest first.

        With `upsample=None` the image is searched at its size, then upsampled once if nothing was
        found (faces smaller than ~80 px need it).
        """
        gray = _to_gray(image)
        tries = [0, 1] if upsample is None else [upsample]
        for up in tries:
            rects, scores, _ = self.detector.run(gray, up, 0.0)
            if len(rects):
                boxes = [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]
                return sorted(boxes, key=lambda b: -(b[0][2] - b[0][0]) * (b[0][3] - b[0][1]))
        return []

    def predict(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """68 landmarks [68, 2] float32 inside a detector-style box."""
        import dlib

        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = self.predictor(_to_gray(image), rect)  # dlib needs a contiguous uint8 array
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)

    def image_landmarks(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """Landmarks [68, 2] of the largest face in an image.

        Raises:
          NoFaceError: no face found. Several faces give a warning and the largest is used.
        """
        boxes = self.detect(image)
        if not boxes:
            raise NoFaceError(f"no face found in {name}")
        strong = [b for b in boxes if b[1] > 0.3]
        if len(strong) > 1:
            warnings.warn(f"{len(strong)} faces found in {name}; using the largest", stacklevel=2)
        return self.predict(image, boxes[0][0])

    # --- tracking -----------------------------------------------------------------------------
    @staticmethod
    def _bbox(lm: np.ndarray) -> np.ndarray:
        lo, hi = lm.min(0), lm.max(0)
        return np.concatenate([(lo + hi) / 2, hi - lo])  # cx, cy, w, h

    def _detect_near(self, image: np.ndarray, box) -> list:
        """Detection restricted to a window around `box`, rescaled so the face is ~half the window."""
        import cv2

        l, t, r, b = box
        side = max(r - l, b - t)
        cx, cy = (l + r) / 2, (t + b) / 2
        win = 2.0 * side
        s = _LOCAL_WINDOW / win
        m = np.array([[s, 0, -(cx - win / 2) * s], [0, s, -(cy - win / 2) * s]], np.float32)
        patch = cv2.warpAffine(_to_gray(image), m, (_LOCAL_WINDOW, _LOCAL_WINDOW), flags=cv2.INTER_AREA,
                               borderMode=cv2.BORDER_REPLICATE)
        found = self.detect(patch, upsample=0)
        out = []
        for (pl, pt, pr, pb), score in found:
            out.append(((pl / s + cx - win / 2, pt / s + cy - win / 2, pr / s + cx - win / 2,
                         pb / s + cy - win / 2), score))
        return out

    def track(self, frames: Iterable[np.ndarray], stats: TrackStats | None = None) -> np.ndarray:
        """Landmarks of the (largest) face through a video.

        Args:
          frames: iterable of RGB (or gray) frames [H, W, (3)] uint8.

        Returns:
          [T, 68, 2] float32 frame-pixel landmarks; NaN rows where no face was found.
        """
        stats = stats if stats is not None else TrackStats()
        out: list[np.ndarray] = []
        prev = None  # previous frame's landmarks
        prev_patch = None  # previous frame's face appearance (32x32, for the similarity check)
        rel = None  # detector box relative to the landmark bounding box: (dx, dy, side) / lm size
        since_verify = 0
        for frame in frames:
            gray = _to_gray(frame)
            stats.frames += 1
            lm = None
            if prev is not None:
                box = self._box_from_landmarks(prev, rel)
                if since_verify >= self.verify_every:
                    since_verify = 0
                    stats.verifications += 1
                    near = self._detect_near(gray, box)
                    box = near[0][0] if near else None
                    if near:
                        rel = self._relation(near[0][0], prev)
                if box is not None:
                    cand = self.predict(gray, box)
                    patch = self._patch(gray, cand)
                    if self._plausible(prev, cand) and _ncc(patch, prev_patch) > self.min_similarity:
                        lm = cand
                        since_verify += 1
                if lm is None:
                    stats.lost += 1
            if lm is None:
                boxes = self.detect(gray)
                stats.detections += 1
                if boxes:
                    lm = self.predict(gray, boxes[0][0])
                    rel = self._relation(boxes[0][0], lm)
                    since_verify = 0
                    patch = self._patch(gray, lm)
            if lm is None:
                stats.missing += 1
                out.append(np.full((68, 2), np.nan, np.float32))
                prev = None
            else:
                out.append(lm)
                prev, prev_patch = lm, patch
        if not out:
            return np.zeros((0, 68, 2), np.float32)
        return np.stack(out)

    def _patch(self, gray: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """The face region under the landmarks' bounding box, resampled to 32x32."""
        import cv2

        cx, cy, w, h = self._bbox(lm)
        size = max(w, h, 1.0)
        s = 32.0 / size
        m = np.array([[s, 0, 16 - cx * s], [0, s, 16 - cy * s]], np.float32)
        return cv2.warpAffine(gray, m, (32, 32), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)

    def _relation(self, box, lm: np.ndarray) -> np.ndarray:
        cx, cy, w, h = self._bbox(lm)
        size = max(w, h)
        l, t, r, b = box
        return np.array([((l + r) / 2 - cx) / size, ((t + b) / 2 - cy) / size, max(r - l, b - t) / size])

    def _box_from_landmarks(self, lm: np.ndarray, rel) -> tuple[float, float, float, float]:
        cx, cy, w, h = self._bbox(lm)
        size = max(w, h)
        if rel is None:
            rel = np.array([0.0, 0.1, 1.1])
        bx, by, side = cx + rel[0] * size, cy + rel[1] * size, rel[2] * size
        return (bx - side / 2, by - side / 2, bx + side / 2, by + side / 2)

    def _plausible(self, prev: np.ndarray, cur: np.ndarray) -> bool:
        p, c = self._bbox(prev), self._bbox(cur)
        size = max(p[2], p[3])
        jump = np.hypot(*(c[:2] - p[:2])) / size
        scale = max(c[2], c[3]) / size
        return bool(jump < self.max_jump and abs(np.log(scale)) < np.log1p(self.max_scale_change))


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two patches (1 = same appearance up to brightness/contrast)."""
    a = a.astype(np.float32) - a.mean()
    b = b.astype(np.float32) - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-6))


def fill_gaps(landmarks: np.ndarray, max_gap: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolates runs of at most `max_gap` missing (NaN) frames between valid ones.

    Returns:
      (landmarks [T, 68, 2], valid [T] bool) — longer gaps and gaps at the ends stay NaN / invalid.
    """
    lm = np.array(landmarks, np.float32, copy=True)
    valid = np.all(np.isfinite(lm), axis=(1, 2))
    t = 0
    n = len(lm)
    while t < n:
        if valid[t]:
            t += 1
            continue
        start = t
        while t < n and not valid[t]:
            t += 1
        if start > 0 and t < n and t - start <= max_gap:
            w = (np.arange(start, t) - (start - 1)) / (t - (start - 1))
            lm[start:t] = lm[start - 1] * (1 - w[:, None, None]) + lm[t] * w[:, None, None]
            valid[start:t] = True
    return lm, valid


def longest_valid_run(valid: np.ndarray) -> tuple[int, int]:
    """[start, end) of the longest run of True values (0, 0 if none)."""
    best, start = (0, 0), None
    for i, v in enumerate(list(valid) + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def smooth(landmarks: np.ndarray, window: int = 5, polyorder: int = 2) -> np.ndarray:
    """Savitzky–Golay smoothing over time to remove dlib's frame-to-frame jitter.

    A low-order polynomial fit keeps the timing of fast lip closures (a moving average would delay
    and flatten them). Clips shorter than the window are returned unchanged.
    """
    from scipy.signal import savgol_filter

    lm = np.asarray(landmarks, np.float32)
    if window <= 1 or len(lm) < window:
        return lm
    return savgol_filter(lm, window, polyorder, axis=0, mode="interp").astype(np.float32)


def landmark_video(frames: Iterable[np.ndarray], landmarker: FaceLandmarker | None = None,
                   smooth_window: int = 5, max_gap: int = 2) -> tuple[np.ndarray, np.ndarray, TrackStats]:
    """Tracks, fills short gaps and smooths: (landmarks [T, 68, 2], valid [T], stats)."""
    landmarker = landmarker or FaceLandmarker()
    stats = TrackStats()
    raw = landmarker.track(frames, stats)
    lm, valid = fill_gaps(raw, max_gap)
    out = lm.copy()
    # Smooth each valid run separately so NaNs never leak into neighbouring frames.
    t = 0
    while t < len(valid):
        if not valid[t]:
            t += 1
            continue
        s = t
        while t < len(valid) and valid[t]:
            t += 1
        out[s:t] = smooth(lm[s:t], smooth_window)
    logging.debug("tracked %d frames: %s", len(out), stats)
    return out, valid, stats
