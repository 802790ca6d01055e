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


def _open_mouth(speaker, opening: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frame at twice the corpus size (720x576: more pixels per tooth), the mouth `opening` wide, a
    little roll; returns (frame, landmarks, luminance [H, W] float)."""
    import cv2

    r = renderer.Renderer(speaker, (720, 576))
    frame, lm = r.render_frame(visemes.deform_mouth(r.neutral, opening, 0.0, speaker.open_gain),
                               np.array([0.0, 0.0, 4.0, 0.0, 0.0, 1.0]))
    return frame, lm, cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float64)


def _inside_inner_lips(lm: np.ndarray, shape: tuple[int, ...], erode: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(mask, distance to the lips in px) of the pixels well inside the inner-lip polygon 60-67."""
    import cv2

    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(lm[60:68] * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    return dist > erode, dist


def test_teeth_are_shaded_not_one_flat_band(speaker):
    """Upper teeth: brighter at the biting edge than under the lip (the lip's shadow, the gums), darker
    between two teeth and towards the mouth corners; so no flat band of one value. (Before: one colour
    darkened only towards the corners and, slightly, towards the biting edge.)"""
    frame, lm, lum = _open_mouth(speaker)
    inside, _ = _inside_inner_lips(lm, frame.shape)
    sat = frame.max(-1).astype(int) - frame.min(-1)
    teeth = inside & (lum > 110) & (sat < 60)
    assert teeth.sum() > 150, teeth.sum()
    print(f"teeth pixels {teeth.sum()}: luminance mean {lum[teeth].mean():.1f}, std {lum[teeth].std():.1f}")
    assert lum[teeth].std() > 25  # 21 before: the corners and the gaps alone
    # Down each column of the upper teeth (middle half of the mouth): the lower (biting) part is brighter.
    ys, xs = np.nonzero(teeth & (np.arange(frame.shape[0])[:, None] < lm[[61, 62, 63], 1].max() + 12))
    mid = np.abs(xs - lm[62, 0]) < 0.25 * (lm[64, 0] - lm[60, 0])
    top, bottom = [], []
    for x in np.unique(xs[mid]):
        col = ys[mid][xs[mid] == x]
        if len(col) >= 4:
            top.append(lum[col.min():col.min() + 2, x].mean())
            bottom.append(lum[col.max() - 1:col.max() + 1, x].mean())
    print(f"upper teeth over {len(top)} columns: under the lip {np.mean(top):.1f}, at the biting edge {np.mean(bottom):.1f}")
    assert len(top) >= 10 and np.mean(bottom) > np.mean(top) + 15


def test_mouth_cavity_darker_deep_inside_than_near_the_lips(speaker):
    """The cavity (neither teeth nor tongue) is darker where it is far from the lips (deep in the mouth)
    than next to them. (Before: one flat colour.)"""
    frame, lm, lum = _open_mouth(speaker)
    inside, dist = _inside_inner_lips(lm, frame.shape)
    cavity = inside & (frame[..., 0] < 80) & (lum < 60)  # dark red: not the teeth, not the tongue
    near = cavity & (dist < 3)
    deep = cavity & (dist > 0.6 * dist.max())
    print(f"cavity luminance near the lips {lum[near].mean():.1f} ({near.sum()} px), deep {lum[deep].mean():.1f} "
          f"({deep.sum()} px)")
    assert near.sum() > 20 and deep.sum() > 20
    assert lum[deep].mean() < 0.6 * lum[near].mean()
    # The tongue (red, lighter) is there, and lighter at its front (bottom) than at its back.
    tongue = inside & (frame[..., 0] > 90) & (frame[..., 0] > 1.6 * frame[..., 1])
    assert tongue.sum() > 50
    ty = np.nonzero(tongue)[0]
    upper_half = tongue & (np.arange(frame.shape[0])[:, None] < np.median(ty))
    assert lum[tongue & ~upper_half].mean() > lum[upper_half].mean() + 5


def test_mouth_interior_is_deterministic(speaker):
    """Same speaker, shape and pose: the same bytes from two renderers built apart."""
    a, _, _ = _open_mouth(speaker, 0.8)
    b, _, _ = _open_mouth(speaker, 0.8)
    assert a.tobytes() == b.tobytes()


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


