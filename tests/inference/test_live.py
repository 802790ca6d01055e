"""Live generation (thflax/inference/live.py): audio pushed in chunks of any size gives the frames the
offline path makes from the same audio with the causal features and blinks, each frame as soon as its
look-ahead has arrived; bad input is one line.

Randomly initialised networks of configs/tiny.py (the STL net's parameters perturbed so that the audio
and the carried GRU state matter); a photo made of noise with a face's landmarks placed on it (no dlib,
except where a photo without a face is refused).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from configs import tiny
from thflax import testing
from thflax.errors import AudioError, InputError, NoFaceError
from thflax.face import eyes
from thflax.inference import blinks, live, networks
from thflax.inference.generation import compose_frame
from thflax.inference.photo import Reference
from thflax.io import audio, audio_stream
from thflax.models import build

from tests.io.test_audio_stream import _speechlike

FPS = 25.0


def _models(preset: str) -> networks.Models:
    c = tiny.get_config()
    c.ltv.generator = preset
    models = networks.Models(c, build.build_stl(c), build.init_stl(c, jax.random.PRNGKey(0)),
                             build.build_generator(c), build.init_generator(c, jax.random.PRNGKey(1)))
    leaves, tree = jax.tree.flatten(models.stl_variables["params"])
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    noisy = [leaf + 0.2 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
    models.stl_variables = {**models.stl_variables, "params": jax.tree.unflatten(tree, noisy)}
    return models


def _reference(size: int) -> Reference:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (180, 150, 3), dtype=np.uint8)
    landmarks = testing.face_landmarks(centre=(0.5, 0.5), scale=0.3) * np.array([150, 180], np.float32)
    return Reference.from_face(image, landmarks, size)


@pytest.fixture(scope="module")
def models() -> networks.Models:
    """The demo's kind of generator (warp), tiny: frames are pasted into the photo by the full-resolution
    warp, as the demo's are."""
    return _models("warp_tiny")


def _offline(models, reference, x, blink_rate, seed, **frame_options):
    """Offline generation's pieces on the causal features and blinks of the whole utterance."""
    windows = audio_stream.causal_windows(x, FPS, models.mfcc_config)
    lms = np.concatenate(list(networks.predict_landmarks(models, windows, reference.template)))
    if blink_rate > 0:
        lms = blinks.apply_blinks(lms, blinks.causal_blink_closure(x, len(lms), FPS, blink_rate, seed))
    frames = networks.render_frames(models, reference.crop, reference.template, [lms], batch=16, with_mask=True)
    return lms, [compose_frame(models, reference, img, lm, mask, **frame_options) for img, lm, mask in frames]


def _live(session: live.LiveSession, x: np.ndarray, rng: np.random.Generator, max_chunk: int):
    """Pushes x in random chunks: (frames, samples pushed when each came out, chunk ends)."""
    frames, arrived, bounds, i = [], [], [], 0
    while i < len(x):
        n = int(rng.integers(1, max_chunk))
        got = session.push(x[i:i + n])
        i = min(i + n, len(x))
        bounds.append(i)
        frames += got
        arrived += [i] * len(got)
    got = session.flush()
    return frames + got, arrived + [len(x)] * len(got), bounds


@pytest.mark.parametrize("frame_options", [dict(crop_only=False, landmarks_video=False, size=None),
                                           dict(crop_only=True, landmarks_video=True, size=96)])
def test_live_frames_equal_the_offline_path_and_come_out_on_time(models, frame_options):
    x = _speechlike(3.0, seed=4)
    reference = _reference(models.image_size)
    lms, expected = _offline(models, reference, x, 30.0, 3, **frame_options)
    assert len(expected) == audio.num_video_frames(len(x), FPS) == 75
    session = live.LiveSession(models, reference, fps=FPS, blink_rate=30.0, blink_seed=3, **frame_options)
    session.warmup()
    frames, arrived, bounds = _live(session, x, np.random.default_rng(1), 1500)
    assert [f.index for f in frames] == list(range(len(expected)))
    np.testing.assert_allclose(np.stack([f.landmarks for f in frames]), lms, atol=1e-5)
    for f, e in zip(frames, expected):
        assert f.image.shape == e.shape and f.image.dtype == np.uint8
        diff = np.abs(f.image.astype(int) - e.astype(int))
        # The generator decodes 1-4 frames per call here, 16 offline: float rounding moves a few pixels
        # by a level at most.
        assert diff.max() <= 2 and diff.mean() < 0.01, (f.index, diff.max(), diff.mean())
    # Frame k comes out of the push that brought sample samples_needed(k), not a later one.
    for f, got in zip(frames, arrived):
        need = audio_stream.samples_needed(f.index, FPS, models.mfcc_config)
        assert f.samples_needed == need
        assert got == next((b for b in bounds if b >= need), len(x)), (f.index, got, need)
    assert session.lookahead_seconds == pytest.approx(0.126)
    # The eyes blinked (closure applied to the predicted lids).
    ear = eyes.eye_aspect_ratio(np.stack([f.landmarks for f in frames]))
    assert ear.min() < 0.7 * np.median(ear)


def test_blinks_go_on_in_silence_and_the_state_is_carried(models):
    reference = _reference(models.image_size)
    session = live.LiveSession(models, reference, blink_rate=30.0, blink_seed=0, crop_only=True)
    frames = []
    for _ in range(200):  # 8 s of digital silence in 40 ms chunks
        frames += session.push(np.zeros(640, np.float32))
    assert len(frames) == 200 - 3  # the last 3 wait for the look-ahead (126 ms)
    ear = eyes.eye_aspect_ratio(np.stack([f.landmarks for f in frames]))
    assert len(eyes.closure_runs(ear < 0.8 * np.median(ear))) >= 2
    # Fresh sessions on chunks of other sizes make the same landmarks (the GRU state carried).
    other = live.LiveSession(models, reference, blink_rate=30.0, blink_seed=0, crop_only=True)
    again = other.push(np.zeros(200 * 640, np.float32))
    np.testing.assert_allclose(np.stack([f.landmarks for f in again]), np.stack([f.landmarks for f in frames]),
                               atol=1e-5)


def test_bad_live_input_is_one_clear_error(models, tmp_path):
    session = live.LiveSession(models, _reference(models.image_size), crop_only=True)
    with pytest.raises(AudioError, match="NaN or infinite"):
        session.push(np.array([0.0, np.nan], np.float32))
    first = session.push(np.zeros(4000, np.float32))  # the NaN chunk was refused whole: not counted
    assert len(first) + len(session.flush()) == audio.num_video_frames(4000, FPS) == 6
    assert session.flush() == []
    with pytest.raises(InputError, match="has ended"):
        session.push(np.zeros(10, np.float32))
    with pytest.raises(InputError, match="out of range"):
        live.LiveSession(models, _reference(models.image_size), fps=500.0)


def test_a_photo_without_a_face_is_refused_in_one_line(models, tmp_path):
    import cv2

    noise = str(tmp_path / "noise.png")
    cv2.imwrite(noise, np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    with pytest.raises(NoFaceError) as e:
        live.LiveSession.from_photo(models, noise)
    assert "no face" in str(e.value) and "\n" not in str(e.value)
