"""Dubbing: a source video + speech -> the same video with its mouth saying the speech (as Wav2Lip does).

    thflax.generate("runs/demo", video="interview.mp4", audio="speech.wav", out="dubbed.mp4")

Every output frame is a frame of the source video: background, body, eyes and the head's own motion are
the source's pixels; only the lower face (mouth, chin and cheeks below the nose) is replaced.

1. Tracking (`SourceVideo.track`): the source's 68 landmarks per frame (`FaceLandmarker.track`). Gaps where
   dlib lost the face are interpolated from the neighbouring frames (at the ends: held); gaps longer than
   `MAX_GAP_SECONDS` are frames without a visible face and are copied unchanged. Then Savitzky–Golay
   smoothing (`landmarks.smooth`) removes dlib's jitter. A video with no face at all is an InputError.
2. Reference (`choose_reference`): the tracked frame with the most closed mouth (smallest inner-lip gap
   relative to the mouth width) among the first `REFERENCE_SECONDS`: its mouth is the neutral mouth the
   speech's displacement is added to, and its crop is what the generator renders from.
3. The STL net with `still=True` (no head motion) on the reference's landmarks (the template) predicts
   the speech-driven lips in the reference crop's normalised coordinates.
4. Geometry (`replace_mouth`): for each source frame the similarity S that takes the template's stable
   points (`STABLE_POINTS`: nose, eye corners, upper jaw contour) onto that frame's. The frame's mouth
   (48–67) becomes S(predicted mouth) = S(reference mouth) + S's rotation and scale of the predicted
   displacement; the jaw points 5–11 become S(reference jaw) moved down with the lower lip
   (`JAW_WEIGHTS` of its vertical displacement: the chin follows the lower lip fully, the jaw's sides
   less), so the sketch the generator sees has an open jaw under an open mouth, as in training. The other
   points stay the frame's own.
5. Rendering: the generator is driven from the reference crop (encoded once). Each frame's crop box is
   S applied to the reference's crop box (`frame_boxes`): the face then sits in every crop where it sits
   in the reference crop (up to an in-plane rotation), so the generator only has to move the mouth, and
   the crop follows the head without jitter of its own. The generated crop is pasted into the source frame
   through a feathered mask over the lower face of both the old and the new landmarks (`lower_face_mask`),
   so the source's own open mouth is covered too. With a warp generator (`models.generator.warp`) the
   source frame itself is first warped (TPS, full resolution) from its own landmarks to the new ones and
   the generated crop is taken only where the network's attention mask says, as the photo path does:
   the lower face keeps the source's pixels where a warp suffices. (Each source frame as its own
   reference crop would cost an encoder pass per frame, `inference.render_frames` encodes one
   reference; the warp brings the source frame's own pixels in without it.)
6. Length: one output frame per audio frame at the source's frame rate (the output keeps the video's
   fps). Shorter audio cuts the video; longer audio plays it forward and backward (`pingpong_indices`).
   Frames are streamed (`SourceVideo.frames`): forward runs decode in order, backward runs are read in
   chunks of at most `CHUNK_BYTES` by seeking, each frame checked against a thumbnail taken while
   tracking (a wrong seek falls back to decoding from the start), so memory does not grow with the video.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from thflax.errors import NoFaceError, VideoError
from thflax.face.landmarks import interpolate_missing
from thflax.face.points import MOUTH, mouth_opening
from thflax.inference import networks
from thflax.inference.networks import speech_windows
from thflax.inference.output import finish_frame, write_frames
from thflax.inference.photo import Reference, paste

_log = logging.getLogger(__name__)

#: The reference (neutral mouth) is the most closed-mouthed frame among this many first seconds.
REFERENCE_SECONDS = 3.0
#: Runs of frames without a face up to this long are interpolated (dlib missed a blurred frame);
#: longer runs are frames without a visible face, copied from the source unchanged.
MAX_GAP_SECONDS = 0.2
#: Template points that speech barely moves: upper jaw contour (near the ears), nose, eye corners (not
#: the lids, which blink). The similarity aligning the template to a frame is fitted on them.
STABLE_POINTS = (0, 1, 15, 16) + tuple(range(27, 36)) + (36, 39, 42, 45)
#: Jaw points that follow the lower lip, and how much of its vertical displacement each takes.
JAW = tuple(range(5, 12))
JAW_WEIGHTS = (0.4, 0.7, 0.9, 1.0, 0.9, 0.7, 0.4)
#: The outer lower lip, whose vertical displacement moves the jaw.
LOWER_LIP = (55, 56, 57, 58, 59)
#: Outline of the region that is replaced: cheeks and chin (jaw 2–14) and the base of the nose.
LOWER_FACE = tuple(range(2, 15)) + tuple(range(31, 36))
#: Memory for the frames of one backward chunk.
CHUNK_BYTES = 128 << 20
#: Thumbnail side for checking that a seek landed on the right frame.
_THUMB = 16


# --- indices and geometry (arrays) ----------------------------------------------------------------


def pingpong_indices(num_out: int, num_src: int) -> np.ndarray:
    """Source frame index of each output frame: [num_out] int.

    0, 1, …, N−1 while the video lasts (cut when `num_out` <= N); longer outputs play the video backward
    and forward again (…, N−1, N−2, …, 1, 0, 1, …) so there is never a jump.
    """
    if num_src < 1:
        raise ValueError("num_src must be at least 1")
    i = np.arange(int(num_out))
    if num_src == 1:
        return np.zeros_like(i)
    period = 2 * (num_src - 1)
    k = i % period
    return np.where(k < num_src, k, period - k)


def choose_reference(landmarks: np.ndarray, detected: np.ndarray, fps: float,
                     seconds: float = REFERENCE_SECONDS) -> int:
    """The frame whose mouth is most closed among the first `seconds` (frames where dlib found the face).

    landmarks [T, 68, 2], detected [T] bool. Falls back to the whole clip when the first seconds have no
    detected face. Ties go to the earliest frame.
    """
    detected = np.asarray(detected, bool)
    first = np.zeros_like(detected)
    first[:max(1, int(round(seconds * fps)))] = True
    pool = np.flatnonzero(detected & first)
    if pool.size == 0:
        pool = np.flatnonzero(detected)
    if pool.size == 0:
        raise ValueError("no frame with a detected face")
    # A floor under the mouth width keeps a degenerate (zero-width) frame comparable instead of NaN,
    # which argmin would pick.
    return int(pool[np.argmin(mouth_opening(np.asarray(landmarks)[pool], min_width=1e-6))])


def _cmul(a: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Complex product of a [T, 2] with points z [T, K, 2] (numpy; `geometry._cmul` is the JAX one)."""
    a = a[:, None, :]
    return np.stack([a[..., 0] * z[..., 0] - a[..., 1] * z[..., 1],
                     a[..., 0] * z[..., 1] + a[..., 1] * z[..., 0]], -1)


def align_template(template: np.ndarray, frame_landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity p -> a·p + b (complex a, b) taking the template onto each frame on `STABLE_POINTS`.

    template [68, 2] (reference crop coordinates), frame_landmarks [T, 68, 2] (frame pixels).
    Returns (a [T, 2], b [T, 2]) as (real, imaginary) parts, float64. The fit is `geometry.similarity_fit`'s
    (float32 JAX); only applying the transforms is done here, in float64 numpy.
    """
    from thflax.face import geometry

    lm = np.asarray(frame_landmarks, np.float32)
    src = np.broadcast_to(np.asarray(template, np.float32)[STABLE_POINTS, :], (len(lm), len(STABLE_POINTS), 2))
    a, b = geometry.similarity_fit(src, lm[:, STABLE_POINTS, :])
    return np.asarray(a, np.float64), np.asarray(b, np.float64)


def apply_similarity(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> np.ndarray:
    """p -> a·p + b for points [T, K, 2] (or [K, 2], the same for every frame) -> [T, K, 2] float64.

    `geometry.similarity_apply` in float64 numpy: frame pixels of a large video keep their sub-pixel
    part (float32 keeps about 7 significant digits).
    """
    pts = np.broadcast_to(np.asarray(points, np.float64), (len(a),) + np.shape(points)[-2:])
    return _cmul(np.asarray(a, np.float64), pts) + np.asarray(b, np.float64)[:, None, :]


def replace_mouth(frame_landmarks: np.ndarray, template: np.ndarray, predicted: np.ndarray,
                  move_jaw: bool = True) -> np.ndarray:
    """Source frames' landmarks with the speech's mouth: [T, 68, 2] frame pixels.

    Args:
      frame_landmarks: [T, 68, 2] the source frames' landmarks (pixels).
      template: [68, 2] the reference frame's landmarks in its crop's coordinates (the STL template).
      predicted: [T, 68, 2] the STL's still-head landmarks in the same coordinates.
      move_jaw: move jaw points 5–11 with the lower lip (see the module docstring).

    Points 48–67 become S(predicted mouth), S the per-frame similarity of `align_template`; with
    `move_jaw`, points 5–11 become S(template jaw + JAW_WEIGHTS × the lower lip's mean vertical
    displacement). Every other point is the frame's own.
    """
    out = np.array(frame_landmarks, np.float32, copy=True)
    tmpl = np.asarray(template, np.float64)
    pred = np.asarray(predicted, np.float64)
    a, b = align_template(tmpl, out)
    out[:, MOUTH] = apply_similarity(a, b, pred[:, MOUTH])
    if move_jaw:
        drop = (pred[:, LOWER_LIP, 1] - tmpl[LOWER_LIP, 1]).mean(-1)  # [T], crop units, + = down
        jaw = np.broadcast_to(tmpl[list(JAW)], (len(pred), len(JAW), 2)).copy()
        jaw[..., 1] += drop[:, None] * np.asarray(JAW_WEIGHTS)[None]
        out[:, JAW] = apply_similarity(a, b, jaw)
    return out


def frame_boxes(template: np.ndarray, frame_landmarks: np.ndarray) -> np.ndarray:
    """Each frame's crop box: the reference crop (the unit square of the template's coordinates) carried
    into the frame by `align_template`'s similarity. [T, 3] = (x0, y0, side) in frame pixels.

    The box takes the similarity's scale and translation; its rotation is left to the landmarks.
    """
    a, b = align_template(template, frame_landmarks)
    side = np.hypot(a[:, 0], a[:, 1])
    centre = apply_similarity(a, b, np.array([[0.5, 0.5]]))[:, 0]
    return np.stack([centre[:, 0] - side / 2, centre[:, 1] - side / 2, side], -1)


def lower_face_mask(shape: tuple[int, int], point_sets: Iterable[np.ndarray], side: float,
                    feather: float = 0.04) -> np.ndarray:
    """Feathered mask [H, W] float32 in [0, 1] of the lower face: the convex hull of `LOWER_FACE` of every
    landmark set [68, 2] (pixels) in `point_sets`, grown and blurred by `feather` × `side` (crop side).

    1 inside the hull, falling to exactly 0 a few `feather` widths outside it (OpenCV's Gaussian
    kernel is finite), so far pixels stay the source's bit for bit.
    """
    import cv2

    h, w = shape[:2]
    pts = np.concatenate([np.asarray(p, np.float32)[list(LOWER_FACE)] for p in point_sets])
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    grow = max(3, int(round(feather * side)))
    mask = cv2.dilate(mask, np.ones((grow, grow), np.uint8)).astype(np.float32)
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=grow / 2)


def fill_missing(landmarks: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fills frames without a face from their neighbours: linear between detected frames, held at the ends
    (`thflax.face.landmarks.interpolate_missing`), and marks which gaps are too long to be a face.

    landmarks [T, 68, 2] with NaN rows. Returns (landmarks [T, 68, 2], detected [T] bool, face [T] bool):
    `face` is False for runs of more than `max_gap` missing frames (no visible face: leave them alone).
    """
    lm = np.asarray(landmarks, np.float32)
    detected = np.all(np.isfinite(lm), axis=(1, 2))
    if not detected.any():
        raise ValueError("no frame with a face")
    filled = interpolate_missing(lm).astype(np.float32)
    face = detected.copy()
    start = None
    for i, d in enumerate(list(detected) + [True]):
        if not d and start is None:
            start = i
        elif d and start is not None:
            if i - start <= max_gap:
                face[start:i] = True
            start = None
    return filled, detected, face


# --- the source video -----------------------------------------------------------------------------


def _thumb(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (_THUMB, _THUMB), interpolation=cv2.INTER_AREA)


def probe(path: str) -> tuple[float, int, int]:
    """(fps, width, height) of a video file; VideoError (one line) when it is missing, unreadable, a still
    image or has no frame rate."""
    import cv2

    from thflax.io import video

    fps, _, w, h = video.video_info(path)
    cap = cv2.VideoCapture(path)
    try:
        frames = sum(1 for _ in range(2) if cap.grab())
    finally:
        cap.release()
    if frames == 0:
        raise VideoError(f"video has no decodable frames: {path}")
    if frames == 1:
        raise VideoError(f"{path} is a still image (one frame), not a video: give it as the image instead")
    if not np.isfinite(fps) or fps <= 0:
        raise VideoError(f"video reports no frame rate: {path}")
    return fps, w, h


@dataclasses.dataclass
class SourceVideo:
    """A tracked source video: its frames are read back on demand (`frames`), never all held at once."""

    path: str
    fps: float
    scale: float  # working frames = file frames × scale
    landmarks: np.ndarray  # [N, 68, 2] smoothed, gaps filled, working-frame pixels
    detected: np.ndarray  # [N] bool: dlib found the face in this frame
    face: np.ndarray  # [N] bool: dub this frame (False: a long stretch without a face, copied as is)
    thumbs: np.ndarray  # [N, 16, 16] uint8 gray thumbnails, to check seeks
    shape: tuple[int, int] = (0, 0)  # (height, width) of the working frames

    @property
    def num_frames(self) -> int:
        return len(self.landmarks)

    @classmethod
    def track(cls, path: str, max_frames: int | None = None, size: int | None = None,
              max_side: int = 1024) -> "SourceVideo":
        """Reads (streaming) and tracks the first `max_frames` frames (all when None).

        Frames are worked on at height `size` (never upscaled) or else at most `max_side` on the longer
        side, as photos are. Raises VideoError for an unreadable video, NoFaceError when no frame has a face.
        """
        from thflax.face import landmarks as lm_lib

        fps, w, h = probe(path)
        scale = min(1.0, size / h) if size else min(1.0, max_side / max(w, h))
        source = cls(path, fps, scale, np.zeros((0, 68, 2), np.float32), np.zeros(0, bool), np.zeros(0, bool),
                     np.zeros((0, _THUMB, _THUMB), np.uint8))
        thumbs: list[np.ndarray] = []

        def frames():
            for frame in source._decode(0, max_frames):
                thumbs.append(_thumb(frame))
                source.shape = frame.shape[:2]
                yield frame

        stats = lm_lib.TrackStats()
        raw = lm_lib.FaceLandmarker().track(frames(), stats)
        if len(raw) < 2:
            raise VideoError(f"video has fewer than two decodable frames: {path}")
        try:
            filled, detected, face = fill_missing(raw, max(2, int(round(MAX_GAP_SECONDS * fps))))
        except ValueError:
            raise NoFaceError(f"no face found in any frame of {path}") from None
        _log.info("%s: tracked %d frames (%d full detections, face missing in %d)", path, stats.frames,
                  stats.detections, stats.missing)
        source.landmarks = lm_lib.smooth(filled)
        source.detected, source.face, source.thumbs = detected, face, np.stack(thumbs)
        return source

    # Decoding. OpenCV's sequential reads are exact; its seeks are checked against the thumbnails.
    def _open(self):
        import cv2

        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()
            raise VideoError(f"cannot open video: {self.path}")
        return cap

    def _convert(self, bgr: np.ndarray) -> np.ndarray:
        import cv2

        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self.scale < 1.0:
            h, w = rgb.shape[:2]
            rgb = cv2.resize(rgb, (max(1, round(w * self.scale)), max(1, round(h * self.scale))),
                             interpolation=cv2.INTER_AREA)
        return rgb

    def _decode(self, start: int, count: int | None, seek: bool = False) -> Iterator[np.ndarray]:
        """Working frames start, start+1, … (`count` of them, or to the end); by seeking or by decoding
        from the first frame."""
        import cv2

        cap = self._open()
        try:
            if start and seek:
                cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            else:
                for _ in range(start):
                    if not cap.grab():
                        return
            n = 0
            while count is None or n < count:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield self._convert(bgr)
                n += 1
        finally:
            cap.release()

    def _matches(self, index: int, frame: np.ndarray) -> bool:
        return float(np.abs(_thumb(frame).astype(np.int16) - self.thumbs[index]).mean()) <= 2.0

    def read_range(self, start: int, stop: int) -> list[np.ndarray]:
        """Working frames [start, stop), by seeking; decodes from the first frame if a seek missed."""
        frames = list(self._decode(start, stop - start, seek=True))
        if len(frames) != stop - start or not all(self._matches(start + i, f) for i, f in enumerate(frames)):
            _log.info("%s: seeking to frame %d was not exact; decoding from the start", self.path, start)
            frames = list(self._decode(start, stop - start))
        if len(frames) != stop - start:
            raise VideoError(f"cannot read frames {start}..{stop - 1} of {self.path} again")
        return frames

    def frames(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        """The working frames at `indices` [T] (each 0..N−1), streamed.

        Runs of consecutive increasing indices decode in order; decreasing runs are read backward in
        chunks of at most `CHUNK_BYTES`.
        """
        indices = np.asarray(indices, np.int64)
        i = 0
        while i < len(indices):
            step = int(indices[i + 1] - indices[i]) if i + 1 < len(indices) else 1
            step = step if step in (1, -1) else 1
            j = i + 1
            while j < len(indices) and indices[j] - indices[j - 1] == step:
                j += 1
            run = indices[i:j]
            if step == 1:
                yield from self._forward(int(run[0]), len(run))
            else:
                hi, lo = int(run[0]), int(run[-1])  # hi >= lo
                chunk = self._chunk_frames()
                while hi >= lo:
                    start = max(lo, hi - chunk + 1)
                    yield from reversed(self.read_range(start, hi + 1))
                    hi = start - 1
            i = j

    def _forward(self, first: int, count: int) -> Iterator[np.ndarray]:
        """Working frames first, first+1, … in decoding order (seeking to `first`, checked on its frame)."""
        stream = self._decode(first, count, seek=True)
        head = next(stream, None)
        if first and (head is None or not self._matches(first, head)):
            _log.info("%s: seeking to frame %d was not exact; decoding from the start", self.path, first)
            stream.close()
            stream = self._decode(first, count)
            head = next(stream, None)
        got = 0
        for frame in itertools.chain([head] if head is not None else [], stream):
            yield frame
            got += 1
        if got != count:
            raise VideoError(f"{self.path} ended early when read again (at frame {first + got})")

    def _chunk_frames(self) -> int:
        h, w = self.shape
        return int(np.clip(CHUNK_BYTES // max(1, h * w * 3), 8, 512))


# --- rendering ------------------------------------------------------------------------------------


def prepare_reference(source: SourceVideo, image_size: int) -> tuple[Reference, int]:
    """The reference frame cropped as in training, and its frame index."""
    index = choose_reference(source.landmarks, source.detected, source.fps)
    image = source.read_range(index, index + 1)[0]
    return Reference.from_face(image, source.landmarks[index], image_size), index


def _compose(frame: np.ndarray, generated: np.ndarray, mask: np.ndarray, box: Any, source_lm: np.ndarray,
             target_lm: np.ndarray, warp: bool) -> np.ndarray:
    """The source frame [H, W, 3] with its lower face taken from the generated crop [S, S, 3].

    Works on the crop box's region of the frame only; outside the lower-face mask the result is `frame`.
    """
    from thflax.face import crop as crop_lib

    h, w = frame.shape[:2]
    pts = np.concatenate([source_lm, target_lm])
    lo = np.floor(np.minimum(pts.min(0), [box.x0, box.y0])).astype(int) - 4
    hi = np.ceil(np.maximum(pts.max(0), [box.x0 + box.side, box.y0 + box.side])).astype(int) + 4
    x0, y0, x1, y1 = max(0, lo[0]), max(0, lo[1]), min(w, hi[0]), min(h, hi[1])
    if x1 <= x0 or y1 <= y0:
        return frame
    region = np.ascontiguousarray(frame[y0:y1, x0:x1])
    shift = np.array([x0, y0], np.float32)
    local = crop_lib.CropBox(box.x0 - x0, box.y0 - y0, box.side)
    src, dst = source_lm - shift, target_lm - shift
    if warp:
        from thflax.face import warp as warp_lib

        moved = warp_lib.warp_numpy(region, src, dst)
        lower = np.concatenate([src[list(LOWER_FACE)], dst[list(LOWER_FACE)]])
        comp = crop_lib.paste_masked(moved, generated, local, mask, lower)
    else:
        comp = paste(region, generated, local)
    alpha = lower_face_mask(region.shape, [src, dst], box.side)[..., None]
    out = frame.copy()
    out[y0:y1, x0:x1] = np.clip(region * (1 - alpha) + comp * alpha + 0.5, 0, 255).astype(np.uint8)
    return out


def render(models, source: SourceVideo, audio: str, out: str, speech: np.ndarray, clock, *,
           landmarks_video: bool, crop_only: bool, size: int | None, batch: int,
           progress: bool | Callable[[int, int], None]) -> dict[str, Any]:
    """Dubs `source` with `speech` (from the file `audio`) into `out` at the source's frame rate.

    Returns `generate`'s summary plus source_frames, reference_frame and pingpong.
    """
    from thflax.face import crop as crop_lib

    fps = source.fps
    reference, ref_index = prepare_reference(source, models.image_size)
    windows = speech_windows(models, speech, fps)
    num_out = len(windows)
    clock.mark("features")
    predicted = np.concatenate(list(networks.predict_landmarks(models, windows, reference.template, still=True)))
    index = pingpong_indices(num_out, source.num_frames)
    source_lm = source.landmarks[index]  # [T, 68, 2]
    targets = replace_mouth(source_lm, reference.template, predicted)
    boxes = frame_boxes(reference.template, source.landmarks)[index]  # [T, 3]
    crop_lm = (targets - boxes[:, None, :2]) / boxes[:, None, 2:]  # normalised crop coordinates
    chunk = 250
    frames = networks.render_frames(models, reference.crop, reference.template,
                                      (crop_lm[s:s + chunk] for s in range(0, num_out, chunk)),
                                      batch=batch, with_mask=True)
    warp = bool(models.generator.warp)

    def composed():
        for t, (frame, (img, lm, mask)) in enumerate(zip(source.frames(index), frames)):
            j = index[t]
            if crop_only:
                result = img
            elif not source.face[j]:
                result = frame
            else:
                box = crop_lib.CropBox(*(float(v) for v in boxes[t]))
                result = _compose(frame, img, mask, box, source.landmarks[j], targets[t], warp)
            yield finish_frame(result, lm, models.image_size, landmarks_video, size)

    written = write_frames(composed(), out, fps, audio, num_out, clock, progress, desc="dubbing")
    return {"out": os.path.abspath(out), "frames": written, "seconds": written / fps,
            "source_frames": source.num_frames, "reference_frame": ref_index, "pingpong": num_out > source.num_frames}


