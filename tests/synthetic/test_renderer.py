"""Tests of the synthetic face renderer (thflax/synthetic/renderer.py): clips, warps, speed, and dlib on
its frames."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import OPEN_VOWELS, clean_phoneme as _clean, dlib_errors as _dlib_errors

pytestmark = pytest.mark.corpus  # renders faces / builds datasets: minutes

from thflax.synthetic import head_motion, renderer, speakers, visemes


def test_rendered_opening_follows_phonemes(clip, utterance):
    t = np.arange(len(clip.frames)) / clip.fps
    bil = [np.interp((a + b) / 2, t, clip.mouth_opening)
           for a, b, p in utterance.phonemes if _clean(p) in visemes.BILABIALS]
    opn = [np.interp((a + b) / 2, t, clip.mouth_opening)
           for a, b, p in utterance.phonemes if _clean(p) in OPEN_VOWELS]
    assert np.mean(bil) < 0.25 * np.mean(opn)
    assert clip.mouth_opening[0] == 0.0 and clip.mouth_opening[-1] == 0.0
    assert clip.mouth_opening.max() > 6.0  # px at 360x288


def test_render_clip_shapes_and_determinism(clip, speaker, utterance):
    t = len(clip.frames)
    assert t == int(np.ceil(utterance.duration * 25))
    assert clip.frames.shape == (t, 288, 360, 3) and clip.frames.dtype == np.uint8
    assert clip.landmarks.shape == (t, 68, 2) and clip.landmarks.dtype == np.float32
    assert clip.poses.shape == (t, len(head_motion.POSE_NAMES))
    assert clip.mouth_opening.shape == (t,) and clip.articulation.shape == (t, 2)
    assert clip.audio.shape == (t * 640,)
    np.testing.assert_array_equal(clip.audio[: len(utterance.audio)], utterance.audio[: t * 640])
    again = renderer.render_clip(speaker, utterance, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(again.frames, clip.frames)
    np.testing.assert_array_equal(again.landmarks, clip.landmarks)
    other = renderer.render_clip(speaker, utterance, rng=np.random.default_rng(8))
    assert not np.array_equal(other.poses, clip.poses)
    # Landmarks stay in the frame, move over time, and the head pose varies.
    assert clip.landmarks.min() > 0 and clip.landmarks[..., 0].max() < 360
    assert clip.landmarks[..., 1].max() < 288
    assert clip.landmarks.std(0).mean() > 1.0
    assert clip.poses[:, 0].std() > 0.5 and clip.poses[:, 1].std() > 0.5
    assert np.abs(clip.poses[:, 0]).max() <= head_motion.MAX_YAW
    assert np.abs(clip.poses[:, 2]).max() <= head_motion.MAX_ROLL
    # Frames change where the face is, not in the far background (top corners).
    diff = np.abs(clip.frames[0].astype(int) - clip.frames[t // 2].astype(int)).sum(-1)
    assert diff[:48, :48].mean() < 1.0 and diff[:48, -48:].mean() < 1.0
    assert diff[48:200, 120:240].mean() > 10.0


def test_warp_never_folds(speaker):
    """No triangle flips over the whole pose / articulation range (with margin:
    openings reach 1.0 at most, open_gain 1.15)."""
    r = renderer.get_renderer(speaker)
    tri_src = r.src[r.tri]

    def area(t):
        return ((t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1])
                - (t[:, 1, 1] - t[:, 0, 1]) * (t[:, 2, 0] - t[:, 0, 0]))

    a_src = area(tri_src)
    for yaw in (-head_motion.MAX_YAW, 0, head_motion.MAX_YAW):
        for pitch in (-head_motion.MAX_PITCH, head_motion.MAX_PITCH):
            for roll in (-head_motion.MAX_ROLL, head_motion.MAX_ROLL):
                for opening, width in [(0, 0), (1.1, 0.8), (1.1, -1), (0, -1), (0.3, 1)]:
                    pose = np.array([yaw, pitch, roll, 12, 8, 1.05])
                    shape = visemes.deform_mouth(r.neutral, opening, width, 1.15)
                    a_dst = area(r._dest(shape, pose)[r.tri])
                    flipped = (np.sign(a_dst) != np.sign(a_src)) & (np.abs(a_dst) > 0.5)
                    assert not flipped.any(), (yaw, pitch, roll, opening, width)


def test_render_speed(speaker, utterance):
    import time

    r = renderer.get_renderer(speaker)
    shapes = [visemes.deform_mouth(r.neutral, o, 0.2, 1.0) for o in np.linspace(0, 1, 10)]
    t0 = time.perf_counter()
    n = 50
    for i in range(n):
        r.render_frame(shapes[i % 10], np.array([3.0, 2.0, 1.0, 2.0, 1.0, 1.0]))
    fps = n / (time.perf_counter() - t0)
    print(f"render speed {fps:.0f} frames/s at 360x288")
    assert fps > 60  # ~250-330 measured on the 2-core dev machine; lenient for loaded CI


def test_dlib_tracks_rendered_faces(clip):
    errs, pred_open = _dlib_errors(clip.frames, clip.landmarks)
    all_px, mouth_px = errs.mean(), errs[:, 48:68].mean()
    r = np.corrcoef(pred_open, clip.mouth_opening)[0, 1]
    open_frames = clip.mouth_opening > 4
    print(f"dlib vs renderer over {len(errs)} frames: all 68 points {all_px:.2f} px, "
          f"mouth 48-67 {mouth_px:.2f} px (open frames {errs[open_frames, 48:].mean():.2f}, "
          f"closed {errs[~open_frames, 48:].mean():.2f}), worst frame {errs.mean(1).max():.2f} px, "
          f"opening r = {r:.3f}")
    assert open_frames.sum() >= 5 and (~open_frames).sum() >= 5
    assert all_px < 2.5 and mouth_px < 2.5
    assert errs[open_frames, 48:].mean() < 3.0 and errs[~open_frames, 48:].mean() < 3.0
    assert errs.mean(1).max() < 4.0
    assert r > 0.85


def test_dlib_at_pose_extremes():
    """Accuracy holds at the largest yaw / pitch / roll the pose model produces."""
    spk = speakers.make_speaker(77)
    r = renderer.get_renderer(spk)
    frames, truth = [], []
    for pose, (o, w) in [
        ((head_motion.MAX_YAW, 0, 0), (0.9, 0.2)), ((-head_motion.MAX_YAW, 0, 0), (0.0, 0.0)),
        ((0, head_motion.MAX_PITCH, head_motion.MAX_ROLL), (0.6, -0.8)), ((6, -head_motion.MAX_PITCH, -head_motion.MAX_ROLL), (1.0, 0.0)),
    ]:
        shape = visemes.deform_mouth(r.neutral, o, w, spk.open_gain)
        f, lm = r.render_frame(shape, np.array([*pose, 0, 0, 1.0]))
        frames.append(f)
        truth.append(lm)
    errs, _ = _dlib_errors(np.array(frames), np.array(truth))
    print("dlib at pose extremes, per frame mean px:", np.round(errs.mean(1), 2),
          "mouth:", np.round(errs[:, 48:].mean(1), 2))
    assert errs.mean(1).max() < 3.5 and errs[:, 48:].mean(1).max() < 3.5


