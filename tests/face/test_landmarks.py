"""Tests of dlib landmarks (thflax/face/landmarks.py): detection, tracking, gaps, smoothing."""

import numpy as np
import pytest
import skimage.data

from thflax.face import landmarks
from thflax.errors import NoFaceError


def test_image_landmarks_on_real_photo(landmarker):
    lm = landmarker.image_landmarks(skimage.data.astronaut())
    assert lm.shape == (68, 2)
    # The face is at (175,76)-(265,166) (NOTES.md); the nose tip lies inside it.
    assert 175 < lm[30, 0] < 265 and 76 < lm[30, 1] < 166


def test_no_face_raises(landmarker):
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError):
        landmarker.image_landmarks(noise)


def test_tracking_matches_per_frame_detection(landmarker, moving_clip):
    stats = landmarks.TrackStats()
    tracked = landmarker.track(moving_clip, stats)
    assert tracked.shape == (60, 68, 2) and np.all(np.isfinite(tracked))
    assert stats.detections <= 2 and stats.missing == 0  # detection ran once, tracking did the rest
    ref = np.stack([landmarker.image_landmarks(f) for f in moving_clip[::10]])
    err = np.linalg.norm(tracked[::10] - ref, axis=-1).mean()
    print(f"tracked vs detected: {err:.2f} px mean")
    assert err < 2.0


def test_tracking_marks_faceless_frames_and_recovers(landmarker, moving_clip):
    clip = moving_clip.copy()
    clip[20:26] = np.random.default_rng(1).integers(0, 255, clip[20:26].shape, dtype=np.uint8)
    tracked = landmarker.track(clip)
    missing = ~np.all(np.isfinite(tracked), axis=(1, 2))
    assert missing[20:26].sum() >= 4  # noise frames are (mostly) caught by the plausibility checks
    assert not missing[:20].any() and not missing[30:].any()


def test_fill_gaps_and_longest_run():
    lm = np.zeros((10, 68, 2), np.float32) + np.arange(10, dtype=np.float32)[:, None, None]
    lm[3:5] = np.nan  # short gap: interpolated
    lm[7:10] = np.nan  # trailing gap: stays missing
    filled, valid = landmarks.fill_gaps(lm, max_gap=2)
    np.testing.assert_allclose(filled[3:5, 0, 0], [3, 4])
    assert valid.tolist() == [True] * 7 + [False] * 3
    assert landmarks.longest_valid_run(valid) == (0, 7)


def test_interpolate_missing_fills_every_gap_and_holds_the_ends():
    lm = np.zeros((10, 68, 2), np.float32) + np.arange(10, dtype=np.float32)[:, None, None]
    lm[[0, 3, 4, 7, 8, 9]] = np.nan
    lm[5, 10, 1] = np.nan  # one missing value makes the whole frame missing
    filled = landmarks.interpolate_missing(lm)
    assert filled.dtype == np.float64 and filled.shape == lm.shape
    np.testing.assert_allclose(filled[:, 0, 0], [1, 1, 2, 3, 4, 5, 6, 6, 6, 6])
    series = np.array([np.nan, 1.0, np.nan, 3.0])
    np.testing.assert_array_equal(landmarks.interpolate_missing(series), [1, 1, 2, 3])
    assert np.isnan(landmarks.interpolate_missing(np.full(3, np.nan))).all()
    assert landmarks.interpolate_missing(np.zeros((0, 68, 2))).shape == (0, 68, 2)


def test_smoothing_reduces_jitter_but_keeps_motion():
    t = np.arange(50, dtype=np.float32)
    motion = 10 * np.sin(t / 8)
    rng = np.random.default_rng(0)
    lm = np.repeat(motion[:, None, None], 68, 1).repeat(2, 2) + rng.normal(0, 1, (50, 68, 2)).astype(np.float32)
    sm = landmarks.smooth(lm)
    assert np.abs(sm - motion[:, None, None]).mean() < 0.8 * np.abs(lm - motion[:, None, None]).mean()


def test_dlib_models_load_without_pkg_resources():
    """face_recognition_models' own `__init__` needs `pkg_resources`, which setuptools >= 81 lacks: the
    model files are found without importing it, so a newer setuptools pulled in by any other package
    does not break landmarks, identity measures or the face cache."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['pkg_resources'] = None\n"  # `import pkg_resources` now fails
            "from thflax.face import landmarks; from thflax.measures import face_measures\n"
            "det, pred = landmarks.dlib_models(); rec = face_measures._recognizer()\n"
            "assert 'face_recognition_models' not in sys.modules or sys.modules['face_recognition_models'] is None\n"
            "print(type(pred).__name__, type(rec).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["shape_predictor", "face_recognition_model_v1"]
