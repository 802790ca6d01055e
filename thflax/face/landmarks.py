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
import os
from collections.abc import Iterable

import numpy as np

from thflax.errors import NoFaceError

# Size (px) local re-detection windows are resized to: the HOG detector finds faces of >= ~80 px at
# upsample 0, so a face is scaled to about 120 px inside a 240 px window.
_LOCAL_WINDOW = 240

# Minimum dlib detection score for a face in a photo. dlib's own threshold is 0, but false boxes
# reach it: on the bundled astronaut photo (and two-face collages of it) boxes on the clothes scored
# -0.02..0.24 while real faces scored 0.77..1.54. 0.3 drops the first and keeps the second.
MIN_FACE_SCORE = 0.3

_log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def dlib_models() -> tuple["dlib.fhog_object_detector", "dlib.shape_predictor"]:
    """dlib's HOG face detector and 68-point shape predictor, (detector, predictor).

    Loaded once per process and shared (cached): the predictor file is ~100 MB to read, and every
    landmarker in the project (`FaceLandmarker`, the synthetic corpus' `detect_landmarks`) must see
    the very same models.
    """
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(dlib_model_file("shape_predictor_68_face_landmarks.dat"))


def dlib_model_file(name: str) -> str:
    """The path of one of dlib's model files that `face_recognition_models` ships, e.g.
    "shape_predictor_68_face_landmarks.dat".

    Found without importing that package: its `__init__` imports `pkg_resources`, which setuptools 81
    and later no longer have (any other package may pull such a setuptools into the environment)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("face_recognition_models is not installed (pip install face-recognition-models)")
    return os.path.join(list(spec.submodule_search_locations)[0], "models", name)


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


@dataclasses.dataclass(frozen=True)
class FaceChoice:
    """The face `FaceLandmarker.choose_face` used in a photo, so callers can report the choice."""

    landmarks: np.ndarray  # [68, 2] float32 frame pixels
    box: tuple[int, int, int, int]  # detector box x0, y0, x1, y1 (pixels)
    score: float  # dlib detection score
    index: int | None  # position in `faces(image)`; None when found only by re-searching face_box
    num_faces: int  # faces `faces(image)` found in the whole photo
    scale: tuple[float, float] = (1.0, 1.0)  # `image` is the photo file resized by (x, y) factors (`choose_face`)

    def describe(self) -> str:
        """One line, e.g. "using face_index 0 of 2 at (175,76)-(265,166), score 1.51"; the box in the
        photo file's pixels (what face_box takes), not the working image's."""
        which = ("a face found by searching face_box" if self.index is None
                 else f"face_index {self.index} of {self.num_faces}")
        return f"using {which} at {_fmt_box(_rescale(self.box, self.scale, inverse=True))}, score {self.score:.2f}"


def _area(box) -> float:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _fmt_box(box) -> str:
    return f"({box[0]},{box[1]})-({box[2]},{box[3]})"


def _fmt(box, score: float) -> str:
    return f"{_fmt_box(box)} score {score:.2f}"


def _rescale(box, scale: tuple[float, float], inverse: bool = False) -> tuple[int, int, int, int]:
    """`box` from the photo file's pixels to those of its copy resized by `scale` (x, y), or back."""
    fx, fy = (1 / scale[0], 1 / scale[1]) if inverse else scale
    return tuple(int(round(v * f)) for v, f in zip(box, (fx, fy, fx, fy)))


def _check_box(face_box, shape) -> tuple[int, int, int, int]:
    """face_box as ints, or NoFaceError when it is not x0 < x1, y0 < y1 overlapping the image."""
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in face_box)
    except (TypeError, ValueError, OverflowError):
        raise NoFaceError(f"face_box must be four pixel numbers x0,y0,x1,y1, got {face_box!r}") from None
    h, w = shape[:2]
    if not (x0 < x1 and y0 < y1) or x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise NoFaceError(f"face_box {_fmt_box((x0, y0, x1, y1))} is empty or outside the "
                          f"{w}x{h} image (give x0,y0,x1,y1 with x0 < x1, y0 < y1)")
    return x0, y0, x1, y1


def _best_inside(found: list, box: tuple[int, int, int, int]):
    """The (box, score) with the largest share (>= half) of its area inside `box`; None if none."""
    best, key = None, None
    for face, score in found:
        overlap = (max(face[0], box[0]), max(face[1], box[1]), min(face[2], box[2]), min(face[3], box[3]))
        inter = _area(overlap)
        share = inter / max(_area(face), 1)
        if share >= 0.5 and (key is None or (share, score) > key):
            best, key = (face, score), (share, score)
    return best


class FaceLandmarker:
    """Finds faces and their 68 dlib landmarks (frame pixels, x right, y down)."""

    def __init__(self, verify_every: int = 25, max_jump: float = 0.25, max_scale_change: float = 0.25,
                 min_similarity: float = 0.5):
        self.detector, self.predictor = dlib_models()
        self.verify_every = verify_every
        self.min_similarity = min_similarity
        self.max_jump = max_jump
        self.max_scale_change = max_scale_change

    # --- detection ----------------------------------------------------------------------------
    def detect(self, image: np.ndarray, upsample: int | None = None,
               min_score: float = 0.0) -> list[tuple[tuple[int, int, int, int], float]]:
        """Face boxes (left, top, right, bottom) with dlib detection scores, best score first.

        Boxes scoring below `min_score` are dropped; equal scores put the larger box first. With
        `upsample=None` the image is searched at its size, then upsampled once if nothing was found
        (faces smaller than ~80 px need it). Ranking by score, not size, keeps a large weak false box
        (e.g. on clothes) from beating a real face.
        """
        gray = _to_gray(image)
        tries = [0, 1] if upsample is None else [upsample]
        for up in tries:
            rects, scores, _ = self.detector.run(gray, up, float(min_score))
            boxes = [((r.left(), r.top(), r.right(), r.bottom()), float(s))
                     for r, s in zip(rects, scores) if s >= min_score]
            if boxes:
                return sorted(boxes, key=lambda b: (-b[1], -_area(b[0])))
        return []

    def faces(self, image: np.ndarray,
              min_score: float = MIN_FACE_SCORE) -> list[tuple[tuple[int, int, int, int], float]]:
        """The faces in a photo as [(box (x0, y0, x1, y1) in pixels, score), ...], best score first.

        This order is the one `face_index` counts in. Boxes below `min_score` are not listed.
        """
        return self.detect(image, None, min_score)

    def predict(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """68 landmarks [68, 2] float32 inside a detector-style box."""
        import dlib

        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = self.predictor(_to_gray(image), rect)  # dlib needs a contiguous uint8 array
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)

    def choose_face(self, image: np.ndarray, name: str = "image", face_index: int | None = None,
                    face_box: tuple[int, int, int, int] | None = None,
                    photo_size: tuple[int, int] | None = None) -> FaceChoice:
        """Picks one face of a photo and its landmarks, and says which one (logged once).

        Args:
          image: RGB (or gray) photo [H, W, (3)] uint8.
          name: what to call the photo in messages (its path).
          face_index: position in `faces(image)` (0 = highest detection score).
          face_box: (x0, y0, x1, y1) pixels: the detected face with the largest share of its box
            inside `face_box` (at least half; ties: higher score). When none qualifies, the region
            around `face_box` is searched again at twice the resolution (finds small faces); the
            same minimum score applies.
          photo_size: (width, height) of the photo file when `image` is a resized copy of it (a large
            photo's working copy). `face_box` is read, and every box reported (log lines, errors,
            `FaceChoice.describe`) is given, in the file's pixels: the user knows only those, and a
            printed box pasted back as `face_box` then selects that face. The returned box and
            landmarks are `image`'s.
          With neither, the highest-scoring face is used; several faces give one logging.warning
          naming the choice and the other faces' boxes, a single face one logging.info.

        Raises:
          NoFaceError: no face, `face_index` out of range, or no face in `face_box`.
        """
        if face_index is not None and face_box is not None:
            raise NoFaceError("give face_index or face_box, not both")
        found = self.faces(image)
        h, w = image.shape[:2]
        photo_w, photo_h = photo_size or (w, h)
        scale = (w / photo_w, h / photo_h)
        in_file = lambda b: _rescale(b, scale, inverse=True)  # noqa: E731 - what the user reads
        if face_box is not None:
            given = _check_box(face_box, (photo_h, photo_w))
            box = _rescale(given, scale)
            pick = _best_inside(found, box)
            if pick is None:
                local = self._faces_in_region(image, box)
                pick = _best_inside(local, box)
                if pick is None:
                    listed = ", ".join(_fmt(in_file(b), s) for b, s in found) or "none"
                    raise NoFaceError(f"no face inside face_box {_fmt_box(given)} of {name} "
                                      f"(faces found: {listed})")
                chosen = FaceChoice(self.predict(image, pick[0]), pick[0], pick[1], None, len(found), scale)
            else:
                i = found.index(pick)
                chosen = FaceChoice(self.predict(image, pick[0]), pick[0], pick[1], i, len(found), scale)
            _log.info("%s: %s (face_box %s)", name, chosen.describe(), _fmt_box(given))
            return chosen
        if not found:
            raise NoFaceError(f"no face found in {name}")
        if face_index is not None:
            if (isinstance(face_index, bool) or not isinstance(face_index, (int, np.integer))
                    or not 0 <= face_index < len(found)):
                raise NoFaceError(f"face_index {face_index!r} is out of range: {len(found)} face"
                                  f"{'s' if len(found) > 1 else ''} found in {name} "
                                  f"(valid: 0..{len(found) - 1}, by score)")
            i = int(face_index)
        else:
            i = 0
        box, score = found[i]
        chosen = FaceChoice(self.predict(image, box), box, score, i, len(found), scale)
        if face_index is None and len(found) > 1:
            # The other faces' boxes, so the user can paste one as face_box.
            others = "; ".join(f"{j} at {_fmt_box(in_file(b))}" for j, (b, _) in enumerate(found) if j != i)
            _log.warning("%d faces found in %s; %s (the highest score); choose another with "
                         "face_index (0..%d, by score) or face_box (photo pixels): %s", len(found), name,
                         chosen.describe(), len(found) - 1, others)
        else:
            _log.info("%s: %s", name, chosen.describe())
        return chosen

    def image_landmarks(self, image: np.ndarray, name: str = "image", face_index: int | None = None,
                        face_box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Landmarks [68, 2] of one face in a photo: see `choose_face` for the choice and errors."""
        return self.choose_face(image, name, face_index, face_box).landmarks

    def _faces_in_region(self, image: np.ndarray, box: tuple[int, int, int, int]) -> list:
        """`faces` in `box` widened by a quarter of its size per side, at twice the resolution."""
        x0, y0, x1, y1 = box
        mx, my = (x1 - x0) // 4, (y1 - y0) // 4
        h, w = image.shape[:2]
        l, t, r, b = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
        region = np.ascontiguousarray(_to_gray(image)[t:b, l:r])
        found = self.detect(region, 1, MIN_FACE_SCORE)
        return [((bl + l, bt + t, br + l, bb + t), s) for (bl, bt, br, bb), s in found]

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
        """Landmarks of the face through a video (the best-scoring one wherever a full search runs).

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

    The dataset's filling (`input_pipeline.preprocess`): longer gaps and the ends stay missing, and
    the blend is computed from the two neighbouring frames in float32 landmarks. `interpolate_missing`
    fills every gap with numpy's np.interp instead; the two round differently in the last bit (about
    one filled value in 800), so the prepared dataset keeps this one.

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


def interpolate_missing(values: np.ndarray) -> np.ndarray:
    """Every frame with a non-finite value filled over time: [T, ...] -> [T, ...] float64.

    Linear between the nearest finite frames (np.interp, per value), held at the ends, whatever the
    gap's length; a frame counts as missing when any of its values is not finite. Without a missing
    or without a finite frame the values come back unchanged (as float64). Used where every frame
    needs a value: dubbing's tracked landmarks [T, 68, 2] and the measures' opening series [T].
    """
    x = np.asarray(values, np.float64)
    ok = np.all(np.isfinite(x), axis=tuple(range(1, x.ndim)))
    if ok.all() or not ok.any():
        return x.copy()
    t = np.arange(len(x))
    flat = x.reshape(len(x), -1)
    filled = np.stack([np.interp(t, t[ok], flat[ok, k]) for k in range(flat.shape[1])], -1)
    return filled.reshape(x.shape)


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

