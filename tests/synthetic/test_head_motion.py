"""Tests of the head motion model (thflax/synthetic/head_motion.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.corpus  # renders faces / builds datasets: minutes

from thflax.synthetic import grammar, head_motion, renderer, speakers
from thflax.io import speech


def test_head_motion_partly_follows_speech_energy():
    """Pitch (nodding) correlates with the delayed speech energy envelope."""
    rs = []
    for k in range(4):
        spk = speakers.make_speaker(100 + k)
        words, _ = grammar.sample_sentence(np.random.default_rng(k))
        u = speech.synthesize(grammar.spoken_text(words), spk.voice, spk.rate, spk.pitch,
                              labels=words, leading_silence=0.45, trailing_silence=0.45)
        t = renderer.frames_covering_audio(len(u.audio))
        poses = head_motion.head_poses(spk, u.audio, t, np.random.default_rng(k))
        e = head_motion.normalised_loudness(u.audio, t)
        e_d = np.concatenate([np.full(3, e[0]), e[:-3]])
        rs.append(np.corrcoef(e_d, poses[:, 1])[0, 1])
    print("pitch vs delayed energy r:", np.round(rs, 2))
    assert np.mean(rs) > 0.4


def test_head_motion_scale_keeps_the_default_path_and_the_random_stream(speaker, utterance):
    """Left at its default or passed as 1.0, `head_motion_scale` gives the same poses; any value draws the
    same random numbers (nothing after the poses shifts), and 1/4 shrinks every component's motion."""
    t = renderer.frames_covering_audio(len(utterance.audio))
    audio = utterance.audio[: t * 640]
    default = head_motion.head_poses(speaker, audio, t, np.random.default_rng(7))
    np.testing.assert_array_equal(default, head_motion.head_poses(speaker, audio, t, np.random.default_rng(7),
                                                           head_motion_scale=1.0))
    states = []
    for k in (1.0, 0.25):
        rng = np.random.default_rng(7)
        poses = head_motion.head_poses(speaker, audio, t, rng, head_motion_scale=k)
        states.append(rng.bit_generator.state)
    assert states[0] == states[1]
    # The same trajectory, 4 times smaller: yaw, pitch, roll, tx, ty and the scale's deviation from 1.
    np.testing.assert_allclose(poses[:, :5], 0.25 * default[:, :5], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(poses[:, 5] - 1, 0.25 * (default[:, 5] - 1), rtol=1e-5, atol=1e-7)
    assert np.abs(poses[:, 0]).max() <= 0.25 * head_motion.MAX_YAW and poses[:, :5].std(0).max() > 0.1  # not frozen
    # render_clip passes it through; the mouth and the audio do not depend on it.
    still = renderer.render_clip(speaker, utterance, rng=np.random.default_rng(7), head_motion_scale=0.25)
    clip = renderer.render_clip(speaker, utterance, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(still.poses, poses)
    np.testing.assert_array_equal(clip.poses, default)
    np.testing.assert_array_equal(still.articulation, clip.articulation)
    np.testing.assert_array_equal(still.audio, clip.audio)
