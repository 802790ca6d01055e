"""The idle head sway of live video (thflax/inference/head_sway.py): the amplitudes asked for, smooth,
a function of the frame index and seed alone, and a similarity transform of the face."""

from __future__ import annotations

import numpy as np

from thflax import testing
from thflax.inference import head_sway


def test_poses_have_the_asked_amplitude_are_smooth_and_depend_on_index_and_seed_only():
    t = np.arange(25 * 600)  # ten minutes
    p = head_sway.sway_poses(t, 25.0, seed=1)
    want = np.array([head_sway.ROLL_DEG, head_sway.SHIFT_X, head_sway.SHIFT_Y, head_sway.SCALE])
    np.testing.assert_allclose(p.std(0), want, rtol=0.35)
    assert np.all(np.abs(np.diff(p, axis=0)).max(0) < 0.05 * want * 2 * np.pi)  # slow: no jumps between frames
    np.testing.assert_array_equal(head_sway.sway_poses(t[300:310], 25.0, seed=1), p[300:310])
    assert not np.allclose(head_sway.sway_poses(t, 25.0, seed=2), p)
    np.testing.assert_allclose(head_sway.sway_poses(t, 25.0, 1, amount=0.5), 0.5 * p)
    assert not head_sway.sway_poses(t, 25.0, 1, amount=0.0).any()


def test_sway_is_a_similarity_about_the_nose():
    lm = np.stack([testing.face_landmarks(open_mouth=0.3)] * 2)
    poses = np.array([[0.0, 0.0, 0.0, 0.0], [10.0, 0.02, -0.01, 0.05]])
    out = head_sway.apply_sway(lm, poses)
    np.testing.assert_allclose(out[0], lm[0], atol=1e-6)
    d0 = np.linalg.norm(lm[1][:, None] - lm[1][None], axis=-1)
    d1 = np.linalg.norm(out[1][:, None] - out[1][None], axis=-1)
    np.testing.assert_allclose(d1, 1.05 * d0, atol=1e-5)  # every distance scaled alike: no distortion
    nose = list(head_sway.NOSE)
    np.testing.assert_allclose(out[1][nose].mean(0), lm[1][nose].mean(0) + [0.02, -0.01], atol=1e-6)
    v0, v1 = lm[1][45] - lm[1][36], out[1][45] - out[1][36]  # the eye line turns by the roll
    angle = np.degrees(np.arctan2(v1[1], v1[0]) - np.arctan2(v0[1], v0[0]))
    assert abs(angle - 10.0) < 1e-3
