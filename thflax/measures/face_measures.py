"""Does a generated talking-head video keep the person, move the mouth with the speech, stay sharp?

Measures of one video against the photo it was made from, all with dlib (no learned model of ours
judges our own model):

* identity: dlib's ResNet face descriptor (`face_recognition_models`, 128 values; two photos of one
  person are usually closer than `SAME_PERSON` = 0.6 in Euclidean distance) of the photo vs sampled
  frames (`identity_distance`: the median distance);
* mouth motion: the inner-lip opening per frame from the 68 tracked dlib landmarks, divided by the
  mouth width so that it does not depend on the face size (`mouth_opening_series`, `opening_std`);
* lip sync: Pearson correlation of that opening with the speech energy per frame
  (`speech_energy`), at the best time shift within ±`max_offset` frames and at no shift
  (`lip_sync`);
* sharpness: variance of the Laplacian inside the face of the frames vs the photo's, both resampled
  to one face size (`sharpness_ratio`); and CPBD (Narvekar & Karam 2011, the `cpbd` package: the
  no-reference sharpness talking-head papers report) of the face at one size, the frames' median and
  its ratio to the photo's (`face_cpbd`, `cpbd_ratio`).
* head motion: how far the nose tip wanders about its mean position, as a percentage of the
  inter-ocular distance so that it does not depend on the face size (`head_motion_percent`); 0 for a
  still head (up to dlib's jitter).

* the inside of the mouth, on the open-mouth frames (`mouth_interior`): the contrast (std of the
  luminance inside the inner lips) and the teeth (its 99th percentile over the outer lips' median),
  with the mouth scaled to 64 px wide; a blurred pink smear scores low on both.

`measure_video` returns all of them for a video file, and, given a lip-sync expert (SyncNet, trained
here: a learned model, unlike the rest), LSE-D / LSE-C / the offset of the face crops framed from the
first frame with a face (`thflax.measures.lip_sync_expert`). Goals (`GOALS`) are what a usable output must
reach; a still video of the photo (the "copied photo" floor) keeps the identity and the sharpness
but has no mouth motion, so opening std ~0 and no lip-sync correlation. Read the lip-sync r together
with the opening std: the sub-pixel jitter dlib reads on a still, H.264-coded mouth (std ~0.005 of
the mouth width) correlates with the speech by chance, and on short clips the best of the 11 shifts
can reach r ~0.5 (a 2 s still video of the astronaut: r 0.48 at offset -5).

SSIM, PSNR and LMD against a real video are `thflax.measures.evaluation`'s (they need the true video).

This module belongs to the data layer: it imports dlib, OpenCV and librosa lazily.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from thflax.errors import InputError
from thflax.face import eyes
from thflax.face.landmarks import interpolate_missing
from thflax.face.points import LEFT_EYE_OUTER, NOSE_TIP, RIGHT_EYE_OUTER, mouth_opening

#: dlib's threshold: descriptors of one person are usually closer than this (Euclidean).
SAME_PERSON = 0.6

#: What a usable generated video reaches: {key of `measure_video`'s result: (comparison, value)}.
GOALS = {
    "identity_distance": ("<", SAME_PERSON),
    "lip_sync_corr": (">", 0.3),
    "opening_std": (">", 0.02),
    "sharpness_ratio": (">=", 0.35),
}

# --- models (loaded once per process) -------------------------------------------------------------


@functools.cache
def _recognizer():
    """dlib's face recognition ResNet (the file ships with `face_recognition_models`)."""
    import dlib
    from thflax.face.landmarks import dlib_model_file

    return dlib.face_recognition_model_v1(dlib_model_file("dlib_face_recognition_resnet_model_v1.dat"))


@functools.cache
def _landmarker():
    """The project's dlib landmarker (its 68-point predictor is `thflax.face.landmarks.dlib_models`)."""
    from thflax.face.landmarks import FaceLandmarker

    return FaceLandmarker()


def _rgb(image: np.ndarray) -> np.ndarray:
    """A contiguous uint8 RGB copy dlib accepts (gray images get three equal channels)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"expected an RGB image [H, W, 3], got shape {img.shape}")
    return np.ascontiguousarray(img, np.uint8)


def find_face(image: np.ndarray, name: str = "photo") -> np.ndarray:
    """[68, 2] landmarks of the best face in a photo; NoFaceError (an InputError) when none."""
    return _landmarker().image_landmarks(image, name)


def _valid(landmarks: np.ndarray | None) -> bool:
    return landmarks is not None and bool(np.all(np.isfinite(landmarks)))


# --- identity -------------------------------------------------------------------------------------


def face_descriptor(image_rgb: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
    """dlib's 128-d face descriptor [128] float32 of the face at `landmarks` ([68, 2] pixels).

    Without `landmarks` the best face of the image is found with the project's landmarker
    (NoFaceError when there is none). dlib aligns the face chip (150x150, padding 0.25) from the
    68 points itself.
    """
    import dlib

    img = _rgb(image_rgb)
    lm = find_face(img, "image") if landmarks is None else np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not _valid(lm):
        raise InputError(f"face_descriptor needs 68 finite landmarks, got shape {lm.shape}")
    lo, hi = np.floor(lm.min(0)).astype(int), np.ceil(lm.max(0)).astype(int)
    rect = dlib.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
    shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in lm])
    return np.asarray(_recognizer().compute_face_descriptor(img, shape), np.float32)


def identity_distance(photo: np.ndarray, frames: Sequence[np.ndarray], every: int = 5,
                      photo_landmarks: np.ndarray | None = None,
                      frame_landmarks: np.ndarray | None = None) -> float:
    """Median descriptor distance between the photo's face and the face in every `every`-th frame.

    Args:
      photo: [H, W, 3] uint8 RGB.
      frames: T frames [h, w, 3] uint8 RGB (any size: the descriptor aligns its own chip).
      every: sample one frame in `every` (the descriptor is a ResNet: 0.35 s a face on a busy 2-core CPU).
      photo_landmarks: [68, 2] of the photo (default: detected).
      frame_landmarks: [T, 68, 2] of the frames, NaN where no face (default: tracked).

    Returns:
      The median Euclidean distance (below `SAME_PERSON` = same person); NaN when no sampled frame
      has a face.
    """
    if every < 1:
        raise InputError(f"every must be at least 1, got {every}")
    ref = face_descriptor(photo, photo_landmarks)
    if frame_landmarks is None:
        frame_landmarks = _landmarker().track(frames)
    dists = [float(np.linalg.norm(face_descriptor(frames[t], frame_landmarks[t]) - ref))
             for t in range(0, len(frames), every) if _valid(frame_landmarks[t])]
    return float(np.median(dists)) if dists else float("nan")


# --- mouth motion and lip sync --------------------------------------------------------------------


def mouth_openings(landmarks: np.ndarray) -> np.ndarray:
    """Inner-mouth opening over mouth width per frame [T] of landmarks [T, 68, 2] (NaN stays NaN).

    `thflax.face.points.mouth_opening` with no value (NaN) where the mouth has no width: a measure
    reports nothing rather than a ratio over an invented width.
    """
    return mouth_opening(landmarks, min_width=None)


def fill_missing(series: np.ndarray) -> np.ndarray:
    """[T] float64 with NaN entries linearly interpolated between finite neighbours (ends: nearest
    finite value); all NaN stays all NaN (`thflax.face.landmarks.interpolate_missing`)."""
    return interpolate_missing(series)


def mouth_opening_series(frames: Sequence[np.ndarray] | None = None, landmarks: np.ndarray | None = None,
                         fill: bool = True) -> np.ndarray:
    """Normalised inner-mouth opening per frame [T] (`mouth_openings`) of a video.

    Args:
      frames: T RGB frames [H, W, 3] uint8, tracked with `thflax.face.landmarks.FaceLandmarker.track`
        (detection on the first frame, then tracking; ignored when `landmarks` are given).
      landmarks: [T, 68, 2] already tracked, NaN where no face.
      fill: interpolate frames without a face from their neighbours (`fill_missing`), so a few
        lost frames do not break the correlation; with `fill=False` they stay NaN.
    """
    if landmarks is None:
        if frames is None:
            raise InputError("mouth_opening_series needs frames or landmarks")
        landmarks = _landmarker().track(frames)
    series = mouth_openings(landmarks)
    return fill_missing(series) if fill else series


def opening_std(series: np.ndarray) -> float:
    """Standard deviation of the opening series over time (NaN frames ignored; NaN when empty).

    About 0 for a still face; talking moves it by ~0.05–0.15 of the mouth width.
    """
    x = np.asarray(series, np.float64)
    x = x[np.isfinite(x)]
    return float(x.std()) if x.size else float("nan")


def head_motion_percent(landmarks: np.ndarray) -> float:
    """Head motion of a landmark track [T, 68, 2] (NaN where no face): the standard deviation of the nose
    tip's position (the root of its x and y variances: the RMS distance from its mean position) as a
    percentage of the median inter-ocular distance (outer eye corners, 36–45).

    Only frames with a face count; NaN with fewer than two of them. Image pixels cancel, so a video and
    its resized copy score the same.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise InputError(f"landmarks must be [T, 68, 2], not {list(lm.shape)}")
    lm = lm[np.all(np.isfinite(lm), axis=(1, 2))]
    if len(lm) < 2:
        return float("nan")
    iod = float(np.median(np.linalg.norm(lm[:, LEFT_EYE_OUTER] - lm[:, RIGHT_EYE_OUTER], axis=-1)))
    if iod <= 0:
        return float("nan")
    nose = lm[:, NOSE_TIP]
    return float(100.0 * np.sqrt(np.sum(nose.var(axis=0))) / iod)


def speech_energy(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int,
                  log: bool = True, top_db: float = 60.0) -> np.ndarray:
    """Speech energy per video frame [num_frames] float32.

    RMS of the audio (`librosa.feature.rms`) over one video frame's length (1/fps s), computed
    every 10 ms and read at each frame's centre (t + 0.5)/fps: frame t spans [t/fps, (t+1)/fps),
    the same alignment `thflax.io.audio` gives the model's MFCC windows. With `log` (default) it is in
    dB relative to the loudest frame, floored at -`top_db` (`librosa.amplitude_to_db`): the mouth
    opens in proportion to loudness on a log scale more than a linear one, and the floor keeps
    digital silence finite. Frames past the end of the audio read its last value.

    Args:
      audio: [num_samples] mono float samples at `sample_rate` Hz.
    """
    import librosa

    if fps <= 0 or sample_rate <= 0:
        raise InputError(f"fps and sample_rate must be positive, got {fps} and {sample_rate}")
    y = np.asarray(audio, np.float32).reshape(-1)
    if num_frames <= 0:
        return np.zeros(0, np.float32)
    if y.size == 0:
        raise InputError("speech_energy: the audio has no samples")
    hop = max(1, int(round(0.010 * sample_rate)))
    win = max(hop, int(round(sample_rate / fps)))
    rms = librosa.feature.rms(y=y, frame_length=win, hop_length=hop, center=True)[0]
    if log:
        rms = librosa.amplitude_to_db(rms, ref=np.max, top_db=top_db) if rms.max() > 0 else np.zeros_like(rms)
    times = np.arange(len(rms)) * hop / sample_rate  # center=True: RMS frame j is centred on j·hop
    centres = (np.arange(num_frames) + 0.5) / fps
    return np.interp(centres, times, rms).astype(np.float32)


def _pearson(a: np.ndarray, b: np.ndarray, min_pairs: int = 3) -> float:
    """Pearson r over the pairs where both are finite; NaN when too few or one side is constant."""
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < min_pairs or a.std() < 1e-12 or b.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def shifted_correlation(opening: np.ndarray, energy: np.ndarray, offset: int) -> float:
    """Pearson r of opening[t] with energy[t - offset] over the frames both cover.

    Positive `offset`: the video lags the audio (the mouth moves `offset` frames after the sound).
    """
    x, e = np.asarray(opening, np.float64), np.asarray(energy, np.float64)
    n = min(len(x), len(e))
    x, e = x[:n], e[:n]
    if offset >= 0:
        return _pearson(x[offset:], e[:n - offset])
    return _pearson(x[:n + offset], e[-offset:])


def lip_sync(opening: np.ndarray, energy: np.ndarray, max_offset: int = 5) -> tuple[int, float, float]:
    """How well the mouth follows the speech, and how late.

    Args:
      opening: [T] mouth opening per frame (`mouth_opening_series`).
      energy: [T] speech energy per frame (`speech_energy`).
      max_offset: shifts tried, in frames, from -max_offset to +max_offset.

    Returns:
      (best_offset, correlation at best_offset, correlation at offset 0). Sign: a positive offset
      means the video lags the audio — the opening at frame t correlates best with the energy at
      frame t - offset (`shifted_correlation`); negative: the mouth moves before the sound.
      Correlations are Pearson r; NaN when the opening (e.g. a still video) or the energy is
      constant, and then best_offset is 0. Ties go to the smaller |offset|.
    """
    if max_offset < 0:
        raise InputError(f"max_offset must be 0 or more, got {max_offset}")
    offsets = sorted(range(-max_offset, max_offset + 1), key=lambda k: (abs(k), k))
    corr = {k: shifted_correlation(opening, energy, k) for k in offsets}
    finite = [k for k in offsets if math.isfinite(corr[k])]
    best = max(finite, key=lambda k: corr[k]) if finite else 0  # max keeps the first of equals
    return int(best), corr[best], corr[0]


# --- sharpness ------------------------------------------------------------------------------------


def face_size(landmarks: np.ndarray) -> float:
    """Size of a face in pixels: the larger side of its 68 landmarks' bounding box."""
    lm = np.asarray(landmarks, np.float64)
    return float((lm.max(0) - lm.min(0)).max())


def _gray_and_landmarks(image: np.ndarray, landmarks: np.ndarray, who: str) -> tuple[np.ndarray, np.ndarray]:
    """(grey image [H, W] uint8, landmarks [68, 2] float64) for a face measure; InputError unless 68 finite points."""
    import cv2

    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not _valid(lm):
        raise InputError(f"{who} needs 68 finite landmarks, got shape {lm.shape}")
    img = np.ascontiguousarray(image, np.uint8)
    return (img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)), lm


def face_laplacian_variance(image: np.ndarray, landmarks: np.ndarray, size: float, sigma: float = 1.0) -> float:
    """Variance of the Laplacian of the grey face, resampled so the face is `size` px.

    The face (`face_size` of the landmarks) is scaled to `size` px (INTER_AREA when shrinking,
    INTER_CUBIC when enlarging, nothing at the same size), smoothed by a Gaussian of `sigma` px, and
    the Laplacian (`cv2.Laplacian`, 3x3) of that taken; its variance is read inside the convex hull of
    the 68 points, eroded by 4 % of the face so the strong edge between the jaw and the background
    does not count.

    Args:
      image: [H, W, 3] uint8 RGB (or [H, W] grey); landmarks: [68, 2] pixels.
    """
    import cv2

    gray, lm = _gray_and_landmarks(image, landmarks, "face_laplacian_variance")
    lo, hi = lm.min(0), lm.max(0)
    side = max(float((hi - lo).max()), 1.0)
    out = int(round(size * 1.25))  # a margin, so the Laplacian at the hull's edge sees real pixels
    n = int(math.ceil(side * out / size - 1e-6))  # the same region in the image's pixels
    cx, cy = (lo + hi) / 2
    x0, y0 = int(math.floor(cx - n / 2)), int(math.floor(cy - n / 2))
    h, w = gray.shape
    pad = [max(0, -y0), max(0, y0 + n - h), max(0, -x0), max(0, x0 + n - w)]
    face = cv2.copyMakeBorder(gray[max(0, y0):min(h, y0 + n), max(0, x0):min(w, x0 + n)], *pad,
                              cv2.BORDER_REFLECT_101)
    if n != out:
        face = cv2.resize(face, (out, out), interpolation=cv2.INTER_AREA if n > out else cv2.INTER_CUBIC)
    pts = (lm - [x0, y0]) * (out / n)
    mask = np.zeros((out, out), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    k = max(1, int(round(0.04 * size)))
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    face = face.astype(np.float64)
    if sigma > 0:
        face = cv2.GaussianBlur(face, (0, 0), sigma)
    values = cv2.Laplacian(face, cv2.CV_64F)[mask > 0]
    return float(values.var()) if values.size else float("nan")


def sharpness_ratio(photo: np.ndarray, frames: Sequence[np.ndarray], photo_landmarks: np.ndarray | None = None,
                    frame_landmarks: np.ndarray | None = None, every: int = 5, shrink: float = 0.8,
                    sigma: float = 1.0) -> float:
    """Face sharpness of the frames relative to the photo's: the median over sampled frames of
    `face_laplacian_variance(frame) / face_laplacian_variance(photo)`, both at one face size.
    About 1 = as sharp as the photo; a face blurred by a Gaussian of 2 px scores ~0.2.

    Why one face size: the variance of the Laplacian measures detail per pixel — shrinking an image
    raises it, enlarging lowers it — so a video written at another resolution than the photo would
    score by its resolution, not by its detail. Which size: for each frame, `shrink` (0.8) times the
    smaller of the two faces, so both are shrunk (INTER_AREA), neither enlarged (which would smear
    detail) and neither compared on its own pixel grid. Resampling itself blurs (output pixels that
    straddle two input pixels average them): with the smaller face kept as it is, a lossless copy
    scored 0.77-1.30 depending on a one-pixel difference in the detected face size; shrinking both by
    at least 20 % treats them alike (0.85-1.00). A face generated at a low resolution and enlarged
    scores what it lost.

    Why the light Gaussian (`sigma`, 1 px at that size) before the 3x3 Laplacian: the raw Laplacian is
    dominated by the finest, pixel-level frequencies, which resampling and video coding change
    (lossless copies: 0.5-1.05 raw), while blur a viewer sees is coarser (2 px: 0.17-0.23 with
    sigma 1). Figures: the astronaut and face_recognition's obama, obama2 and biden photos, copies
    shrunk by 0-40 % and coded with H.264 (`thflax.io.video`, quality 8).

    Args:
      photo: [H, W, 3] uint8; frames: T frames [h, w, 3] uint8.
      photo_landmarks: [68, 2] (default: detected); frame_landmarks: [T, 68, 2], NaN where no face
        (default: tracked).
      every: sample one frame in `every`.

    Returns:
      The ratio; NaN when no sampled frame has a face or the photo's face is flat.
    """
    if every < 1:
        raise InputError(f"every must be at least 1, got {every}")
    if not 0 < shrink <= 1:
        raise InputError(f"shrink must be in (0, 1], got {shrink}")
    if photo_landmarks is None:
        photo_landmarks = find_face(_rgb(photo))
    if frame_landmarks is None:
        frame_landmarks = _landmarker().track(frames)
    photo_side = face_size(photo_landmarks)
    ratios = []
    for t in range(0, len(frames), every):
        if not _valid(frame_landmarks[t]):
            continue
        size = shrink * min(photo_side, face_size(frame_landmarks[t]))
        ref = face_laplacian_variance(photo, photo_landmarks, size, sigma)
        if ref > 0:
            ratios.append(face_laplacian_variance(frames[t], frame_landmarks[t], size, sigma) / ref)
    return float(np.median(ratios)) if ratios else float("nan")


#: CPBD reads 64x64 blocks: the face (its landmarks' box, plus a margin) is resampled to this many pixels.
CPBD_FACE_PX = 192
#: Frames CPBD is computed on, evenly spaced over the sampled ones (its edge-width loops are pure Python).
CPBD_FRAMES = 12


def face_cpbd(image: np.ndarray, landmarks: np.ndarray, size: int = CPBD_FACE_PX) -> float:
    """CPBD sharpness (0 = blurred, ~0.3-0.6 a sharp photo) of the grey face: the landmarks' bounding
    square, 10 % bigger, resampled to `size` px (INTER_AREA when shrinking, INTER_CUBIC when enlarging).

    Args:
      image: [H, W, 3] uint8 RGB (or [H, W] grey); landmarks: [68, 2] pixels.
    """
    import cv2
    from cpbd import compute

    gray, lm = _gray_and_landmarks(image, landmarks, "face_cpbd")
    lo, hi = lm.min(0), lm.max(0)
    n = max(int(round(1.1 * float((hi - lo).max()))), 8)
    cx, cy = (lo + hi) / 2
    x0, y0 = int(round(cx - n / 2)), int(round(cy - n / 2))
    h, w = gray.shape
    pad = [max(0, -y0), max(0, y0 + n - h), max(0, -x0), max(0, x0 + n - w)]
    face = cv2.copyMakeBorder(gray[max(0, y0):min(h, y0 + n), max(0, x0):min(w, x0 + n)], *pad,
                              cv2.BORDER_REFLECT_101)
    face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA if n > size else cv2.INTER_CUBIC)
    return float(compute(face))


def cpbd_ratio(photo: np.ndarray, frames: Sequence[np.ndarray], photo_landmarks: np.ndarray,
               frame_landmarks: np.ndarray, count: int = CPBD_FRAMES) -> tuple[float, float]:
    """(median CPBD of the faces of up to `count` frames evenly spaced among those with a face, that over
    the photo's face CPBD); NaN when no frame has a face (the ratio also when the photo's CPBD is 0).

    Args:
      photo: [H, W, 3] uint8; frames: T frames [h, w, 3] uint8; photo_landmarks [68, 2];
      frame_landmarks [T, 68, 2], NaN where no face.
    """
    with_face = [t for t in range(len(frames)) if _valid(frame_landmarks[t])]
    if not with_face:
        return float("nan"), float("nan")
    picks = [with_face[i] for i in np.unique(np.linspace(0, len(with_face) - 1, count).round().astype(int))]
    value = float(np.median([face_cpbd(frames[t], frame_landmarks[t]) for t in picks]))
    ref = face_cpbd(photo, photo_landmarks)
    return value, (value / ref if ref > 0 else float("nan"))


# --- the inside of the mouth ---------------------------------------------------------------------

#: The mouth (corner to corner, points 48–54) is scaled to this width before its pixels are read, so
#: the contrast and teeth values do not depend on the video's resolution or the face's size in it.
MOUTH_WIDTH_PX = 64
#: Open-mouth frames: those whose opening (`mouth_openings`) is at least this quantile of the video's
#: own openings (the top quarter) ...
OPEN_QUANTILE = 0.75
#: ... and at least this fraction of the mouth width (3.2 px at 64 px): below it the inner-lip polygon
#: holds a line of lip-edge pixels rather than an interior, so a closed or still mouth has no value.
MIN_OPENING = 0.05
#: Fewer open frames (with pixels inside the inner lips) than this: no value (NaN and a reason).
MIN_OPEN_FRAMES = 3
#: The teeth: this percentile of the luminance inside the inner lips (not the maximum: one hot pixel of
#: video coding noise would decide it).
TEETH_PERCENTILE = 99.0
#: A frame whose inner-lip polygon covers fewer pixels (at `MOUTH_WIDTH_PX`) is left out.
MIN_INNER_PIXELS = 20


def _inside(polygon: np.ndarray, h: int, w: int) -> np.ndarray:
    """[h, w] bool: pixel centres (integer coordinates, dlib's convention) inside `polygon` [K, 2]
    (even-odd rule). Centres, not OpenCV's `fillPoly`, which also takes every pixel the edge touches:
    at 64 px those lip-edge pixels would be a large share of a half-open mouth."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    inside = np.zeros((h, w), bool)
    for a, b, c, d in zip(x0, y0, x1, y1):
        if b == d:
            continue
        crosses = (b > ys) != (d > ys)
        inside ^= crosses & (xs < a + (ys - b) * (c - a) / (d - b))
    return inside


def mouth_pixels(image: np.ndarray, landmarks: np.ndarray) -> tuple[float, float]:
    """(inner-mouth contrast, teeth brightness) of one frame, on luminance 0–255 at a 64-px mouth.

    The luminance (OpenCV's RGB->grey, i.e. Y of YCrCb: 0.299 R + 0.587 G + 0.114 B) of the mouth region
    is resampled so the mouth (48–54) is `MOUTH_WIDTH_PX` wide (INTER_AREA when shrinking, INTER_LINEAR
    when enlarging, in float); then
      contrast = std of the pixels inside the inner-lip polygon (60–67): teeth, tongue and a dark mouth
        give a spread, a flat pink smear none;
      teeth = `TEETH_PERCENTILE` (99th) percentile inside that polygon minus the median of the outer-lip
        (48–59) bounding box: white teeth stand far above the lips, a smear not at all.

    Args:
      image: [H, W, 3] uint8 RGB (or [H, W] grey); landmarks: [68, 2] pixels of that image.

    Returns:
      Both NaN when the landmarks are not finite, the mouth has no width, or fewer than
      `MIN_INNER_PIXELS` pixel centres lie inside the inner lips (a closed mouth).
    """
    import cv2

    nan = (float("nan"), float("nan"))
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not _valid(lm):
        return nan
    width = float(np.linalg.norm(lm[54] - lm[48]))
    if width <= 0:
        return nan
    img = np.asarray(image)
    gray = (img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img, np.uint8), cv2.COLOR_RGB2GRAY))
    scale = MOUTH_WIDTH_PX / width
    # The outer lips' box and a margin (a few source pixels, so the resampling kernel sees real pixels).
    outer = lm[48:60]
    margin = 2.0 + 2.0 / min(scale, 1.0)
    h, w = gray.shape
    x0, y0 = (max(0, int(np.floor(v - margin))) for v in outer.min(0))
    x1, y1 = (int(np.ceil(v + margin)) + 1 for v in outer.max(0))
    x1, y1 = min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return nan
    crop = gray[y0:y1, x0:x1].astype(np.float32)
    out_w, out_h = max(1, int(round((x1 - x0) * scale))), max(1, int(round((y1 - y0) * scale)))
    # Enlarging is linear, not cubic: cubic rings past a bright edge (teeth next to a dark cavity read
    # 135 instead of 121 at half the resolution); the percentile must not see values the frame lacks.
    crop = cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)
    # cv2.resize maps source pixel centre x to (x + 0.5)·s - 0.5.
    pts = np.stack([(lm[:, 0] - x0 + 0.5) * sx - 0.5, (lm[:, 1] - y0 + 0.5) * sy - 0.5], -1)
    inner = crop[_inside(pts[60:68], out_h, out_w)]
    if inner.size < MIN_INNER_PIXELS:
        return nan
    (bx0, by0), (bx1, by1) = np.ceil(pts[48:60].min(0)).astype(int), np.floor(pts[48:60].max(0)).astype(int)
    box = crop[max(0, by0):by1 + 1, max(0, bx0):bx1 + 1]
    return float(inner.std()), float(np.percentile(inner, TEETH_PERCENTILE) - np.median(box))


def open_mouth_frames(landmarks: np.ndarray, min_frames: int = MIN_OPEN_FRAMES) -> tuple[np.ndarray, str | None]:
    """The frames whose mouth is open: indices [k] and None, or an empty array and the reason.

    Open: a face was found and its opening (`mouth_openings`) is in the top quarter of the video's
    openings (>= their `OPEN_QUANTILE` quantile) and at least `MIN_OPENING` of the mouth width.

    Args:
      landmarks: [T, 68, 2], NaN where no face.
    """
    opening = mouth_openings(np.asarray(landmarks, np.float64).reshape(-1, 68, 2))
    finite = opening[np.isfinite(opening)]
    if finite.size == 0:
        return np.zeros(0, int), "dlib found no face"
    with np.errstate(invalid="ignore"):
        idx = np.flatnonzero(opening >= max(float(np.quantile(finite, OPEN_QUANTILE)), MIN_OPENING))
    if idx.size < min_frames:
        return np.zeros(0, int), (f"{idx.size} frame{'s' * (idx.size != 1)} with an open mouth (opening >= "
                                  f"{MIN_OPENING} of its width; the widest is {finite.max():.3f}); "
                                  f"{min_frames} needed")
    return idx, None


def mouth_interior(frames: Sequence[np.ndarray] | Mapping[int, np.ndarray], landmarks: np.ndarray,
                   min_frames: int = MIN_OPEN_FRAMES) -> dict[str, Any]:
    """Inner-mouth contrast and teeth brightness of a video: the medians of `mouth_pixels` over its
    open-mouth frames (`open_mouth_frames`).

    Why: a generator that cannot draw the inside of a mouth paints a blurred pink smear, flat and
    without teeth, which neither the landmark distances nor the lip sync see.

    Args:
      frames: the video's frames [H, W, 3] uint8 RGB, indexable by frame number (a mapping holding
        only the open-mouth frames will do).
      landmarks: [T, 68, 2] pixels of those frames, NaN where no face.
      min_frames: fewer measurable open frames than this: NaN (1 for a single photo).

    Returns:
      {"mouth_contrast": float, "teeth_brightness": float (luminance units, 0–255 scale),
       "mouth_open_frames": frames measured, "mouth_reason": None, or why both are NaN}.
    """
    idx, reason = open_mouth_frames(landmarks, min_frames)
    values = [mouth_pixels(frames[int(t)], landmarks[t]) for t in idx]
    values = np.array([v for v in values if np.isfinite(v[0])], np.float64).reshape(-1, 2)
    if reason is None and len(values) < min_frames:
        reason = (f"{len(values)} open-mouth frame{'s' * (len(values) != 1)} with {MIN_INNER_PIXELS}+ pixels "
                  f"inside the inner lips; {min_frames} needed")
    if reason is not None:
        return {"mouth_contrast": float("nan"), "teeth_brightness": float("nan"), "mouth_open_frames": 0,
                "mouth_reason": reason}
    contrast, teeth = np.median(values, axis=0)
    return {"mouth_contrast": float(contrast), "teeth_brightness": float(teeth),
            "mouth_open_frames": int(len(values)), "mouth_reason": None}


# --- one video ------------------------------------------------------------------------------------


def _track_video(path: str, every: int) -> tuple[np.ndarray, dict[int, np.ndarray], float]:
    """Landmarks [T, 68, 2] of a video file (NaN where no face), its every `every`-th frame by
    index, and its fps. Streams the frames: memory holds only the sampled ones."""
    from thflax.io import video

    fps = video.video_info(path)[0]
    if not fps or not math.isfinite(fps) or fps <= 0:
        raise InputError(f"video reports no frame rate: {path}")
    kept: dict[int, np.ndarray] = {}

    def frames():
        for t, frame in enumerate(video.iter_frames(path)):
            if t % every == 0:
                kept[t] = frame
            yield frame

    landmarks = _landmarker().track(frames())
    if len(landmarks) == 0:
        raise InputError(f"video has no decodable frames: {path}")
    return landmarks, kept, fps


def measure_video(photo_path: str, video_path: str, audio_path: str | None = None, every: int = 5,
                  max_offset: int = 5, photo_landmarks: np.ndarray | None = None, expert=None) -> dict[str, Any]:
    """All the measures of a generated video against its photo and speech.

    Args:
      photo_path: the input photo; video_path: the generated video.
      audio_path: the speech (default: the video's own audio track).
      every: identity and sharpness use every `every`-th frame (the opening uses all).
      max_offset: lip-sync shifts tried, in frames.
      photo_landmarks: [68, 2] of the photo's face (default: the best face found in it).
      expert: a `lip_sync_expert.Expert`: LSE-D / LSE-C / offset of the face crops framed as evaluation
        frames a clip (`crop.clip_box` of the first frame with a face, at the expert's crop size); NaN
        without one.

    Returns:
      {"frames": T, "frames_with_face": n, "fps": fps, "identity_distance": float,
       "lip_sync_corr": r at the best offset, "lip_sync_offset": frames (+ = video lags audio),
       "lip_sync_corr_at_0": r, "opening_std": float, "sharpness_ratio": float, "cpbd": the frames' face
       CPBD, "cpbd_ratio": over the photo's, "lse_d", "lse_c", "lse_offset" (only with `expert`),
       "head_motion_percent": nose-tip std, % of the inter-ocular distance (`head_motion_percent`),
       "blinks_per_minute", "blink_frames" (`blink_stats`; the median blink's length, NaN without one),
       "mouth_contrast", "teeth_brightness", "mouth_open_frames", "mouth_reason" (`mouth_interior`),
       "photo_mouth_contrast", "photo_teeth_brightness", "photo_mouth_reason" (the photo alone, as one
       frame: NaN when its mouth is closed)}; undefined values (no face found, a still mouth) are NaN,
      the reasons None unless the value is NaN.

    Raises:
      InputError: unreadable photo/video/audio, or no face in the photo.
    """
    from thflax.io import audio as audio_lib
    from thflax.io import video

    if every < 1:
        raise InputError(f"every must be at least 1, got {every}")
    photo = video.read_image(photo_path)
    photo_lm = find_face(photo, photo_path) if photo_landmarks is None else photo_landmarks
    landmarks, kept, fps = _track_video(video_path, every)
    speech = audio_lib.load_audio(audio_path or video_path)
    t = len(landmarks)
    has_face = np.all(np.isfinite(landmarks), axis=(1, 2))
    opening = fill_missing(mouth_openings(landmarks))
    energy = speech_energy(speech, audio_lib.SAMPLE_RATE, fps, t)
    offset, corr, corr0 = lip_sync(opening, energy, max_offset)
    idx = sorted(kept)
    sampled, sampled_lm = [kept[i] for i in idx], landmarks[idx]
    # The inside of the mouth needs the open-mouth frames, known only once all are tracked: a second
    # decoding pass keeps just those (decoding is cheap next to dlib; memory stays a few frames).
    wanted = set(open_mouth_frames(landmarks)[0].tolist())
    open_frames = {t: f for t, f in enumerate(video.iter_frames(video_path)) if t in wanted}
    mouth = mouth_interior(open_frames, landmarks)
    photo_mouth = mouth_interior([photo], np.asarray(photo_lm, np.float64)[None], min_frames=1)
    cpbd, cpbd_rel = cpbd_ratio(photo, sampled, photo_lm, sampled_lm)
    blinks = blink_stats(landmarks, fps)
    lse = {}
    if expert is not None:
        lse = {"lse_d": float("nan"), "lse_c": float("nan"), "lse_offset": float("nan")}
    if expert is not None and has_face.any():
        from thflax.face import crop

        box = crop.clip_box(landmarks[int(np.argmax(has_face))])
        crops = np.stack([crop.crop(f, box, expert.crop_size) for f in video.iter_frames(video_path)])
        lse = expert.measure(crops, audio=speech, sample_rate=audio_lib.SAMPLE_RATE, fps=fps)
    return {
        "frames": int(t),
        "frames_with_face": int(has_face.sum()),
        "fps": float(fps),
        "identity_distance": identity_distance(photo, sampled, 1, photo_lm, sampled_lm),
        "lip_sync_corr": corr,
        "lip_sync_offset": offset,
        "lip_sync_corr_at_0": corr0,
        "opening_std": opening_std(opening),
        "sharpness_ratio": sharpness_ratio(photo, sampled, photo_lm, sampled_lm, 1),
        "head_motion_percent": head_motion_percent(landmarks),
        "blinks_per_minute": blinks["blinks_per_minute"],
        "blink_frames": float(np.median(blinks["durations"])) if blinks["durations"] else float("nan"),
        "cpbd": cpbd,
        "cpbd_ratio": cpbd_rel,
        **lse,
        **mouth,
        "photo_mouth_contrast": photo_mouth["mouth_contrast"],
        "photo_teeth_brightness": photo_mouth["teeth_brightness"],
        "photo_mouth_reason": photo_mouth["mouth_reason"],
    }


def meets_goal(key: str, value: float) -> bool | None:
    """Whether `value` of measure `key` reaches its goal in `GOALS`; None for a measure without one
    or an undefined (NaN) value."""
    if key not in GOALS or value is None or not math.isfinite(value):
        return None
    op, goal = GOALS[key]
    return {"<": value < goal, ">": value > goal, ">=": value >= goal}[op]


# --- blinks: the eye aspect ratio per frame -------------------------------------------------------

#: A frame is in a blink where its eye aspect ratio is under this fraction of the video's median (the
#: eyes are open most of the time, so the median is the open eye's, whoever's face and however large).
BLINK_EAR_FRACTION = eyes.CLOSED_EAR_FRACTION


def blink_stats(landmarks: np.ndarray, fps: float) -> dict[str, Any]:
    """Blinks in a landmark track [T, 68, 2] (dlib's order; NaN where no face) at `fps` frames a second.

    The eye aspect ratio (`thflax.face.eyes.eye_aspect_ratio`, both eyes' mean) per frame, frames
    without a face filled from their neighbours; a blink is a run of frames whose ratio is under
    `BLINK_EAR_FRACTION` of the median.

    Returns:
      {"ear": float64 [T], "blinks": count, "blinks_per_minute": float, "durations": [frames] per blink,
       "starts": [first frame] per blink}; with no finite ratio, no blinks and a NaN rate.
    """
    from thflax.face.eyes import eye_aspect_ratio

    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise InputError(f"landmarks must be [T, 68, 2], not {list(lm.shape)}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, not {fps!r}")
    ear = eye_aspect_ratio(lm)
    t = len(ear)
    if t == 0 or not np.isfinite(ear).any():
        return {"ear": ear, "blinks": 0, "blinks_per_minute": math.nan, "durations": [], "starts": []}
    ear = fill_missing(ear)
    closed = np.concatenate([[False], ear < BLINK_EAR_FRACTION * float(np.median(ear)), [False]])
    edges = np.flatnonzero(closed[1:] != closed[:-1])
    starts, ends = edges[::2], edges[1::2]
    return {"ear": ear, "blinks": int(len(starts)), "blinks_per_minute": float(len(starts) * 60.0 * fps / t),
            "durations": [int(e - s) for s, e in zip(starts, ends)], "starts": [int(s) for s in starts]}


def video_blinks(video_path: str) -> dict[str, Any]:
    """`blink_stats` of a video file, its landmarks tracked by dlib; adds "fps" and "frames"."""
    landmarks, _, fps = _track_video(video_path, every=1 << 30)
    return {**blink_stats(landmarks, fps), "fps": float(fps), "frames": int(len(landmarks))}
