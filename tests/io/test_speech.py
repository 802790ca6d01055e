"""Tests of eSpeak NG speech synthesis (thflax/io/speech.py): audio, phoneme and word timings, voices."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import clean_phoneme as _clean

pytestmark = pytest.mark.corpus  # renders faces / builds datasets: minutes

from thflax.io import speech


def test_speech_audio_and_timings(utterance):
    u = utterance
    assert u.sample_rate == 16000 and u.audio.dtype == np.float32 and u.audio.ndim == 1
    assert np.sqrt(np.mean(u.audio**2)) > 0.02
    assert np.abs(u.audio).max() <= 1.0
    # The added silences are silent.
    assert np.abs(u.audio[: int(0.39 * 16000)]).max() == 0.0
    assert np.abs(u.audio[-int(0.34 * 16000):]).max() == 0.0
    starts = np.array([p[0] for p in u.phonemes])
    ends = np.array([p[1] for p in u.phonemes])
    assert len(u.phonemes) > 15
    assert np.all(np.diff(starts) >= 0) and np.all(ends >= starts)
    assert np.allclose(starts[1:], ends[:-1])  # contiguous
    assert starts[0] >= 0.4 - 1e-6 and ends[-1] <= u.duration - 0.35 + 1e-3
    names = [_clean(p[2]) for p in u.phonemes]
    assert "p" in names and "m" in names
    assert [w for _, _, w in u.words] == ["place", "blue", "by", "m", "five", "again"]
    ws = np.array([(a, b) for a, b, _ in u.words])
    assert np.all(ws[:, 1] >= ws[:, 0]) and np.all(ws[1:, 0] >= ws[:-1, 1] - 1e-9)
    assert ws[0, 0] >= 0.4 - 1e-6 and ws[-1, 1] <= u.duration
    # Speech energy sits inside the word span.
    inside = u.audio[int(ws[0, 0] * 16000): int(ws[-1, 1] * 16000)]
    assert np.sqrt(np.mean(inside**2)) > np.sqrt(np.mean(u.audio**2))


def test_speech_words_from_text_and_determinism():
    a = speech.synthesize("bin blue at F two now", "en-gb-x-rp")
    assert [w for _, _, w in a.words] == ["bin", "blue", "at", "F", "two", "now"]
    speech.synthesize("lay green with q nine soon", "en-us+f3", 190, 65)
    b = speech.synthesize("bin blue at F two now", "en-gb-x-rp")
    # Output does not depend on what was synthesised before.
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.phonemes == b.phonemes
    with pytest.raises(ValueError):
        speech.synthesize("bin", "no-such-voice")


def test_all_listed_voices_speak():
    for v in speech.VOICES:
        assert speech.voice_loads(v), v
        u = speech.synthesize("set red at G seven soon", v, 180, 50)
        assert u.duration > 0.8 and np.sqrt(np.mean(u.audio**2)) > 0.01, v
        assert len(u.words) == 6, v
