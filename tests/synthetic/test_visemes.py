"""Tests of the viseme model (thflax/synthetic/visemes.py): the mouth follows the phonemes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import OPEN_VOWELS, clean_phoneme as _clean

pytestmark = pytest.mark.corpus  # renders faces / builds datasets: minutes

from thflax.synthetic import grammar, visemes
from thflax.io import speech


def test_viseme_bilabials_and_silence_closed_open_vowels_open():
    fps = 100.0  # sample densely to look inside each phoneme
    closed, opened, silent = [], [], []
    for words, voice in [(["place", "blue", "by", "m", "five", "again"], "en-us"),
                         (["bin", "blue", "at", "f", "two", "now"], "en-gb-x-rp"),
                         (["lay", "green", "by", "p", "nine", "please"], "en+m3")]:
        u = speech.synthesize(grammar.spoken_text(words), voice, labels=words,
                              leading_silence=0.4, trailing_silence=0.4)
        t = int(np.ceil(u.duration * fps))
        art = visemes.mouth_trajectory(u.phonemes, t, fps)
        times = np.arange(t) / fps + 0.02  # the model leads audio by 20 ms
        for start, end, name in u.phonemes:
            mid = (start + end) / 2
            v = float(np.interp(mid, times, art[:, 0]))
            p = _clean(name)
            if p in visemes.BILABIALS:
                closed.append(v)
            elif p in OPEN_VOWELS:
                opened.append(v)
        silent += list(art[times < 0.3, 0]) + list(art[times > u.duration - 0.25, 0])
    assert len(closed) >= 5 and len(opened) >= 5
    print(f"viseme opening: bilabial {np.mean(closed):.3f} (max {np.max(closed):.3f}), "
          f"open vowels {np.mean(opened):.3f} (min {np.min(opened):.3f}), silence max {np.max(silent):.3f}")
    assert np.max(closed) < 0.05
    assert np.max(silent) == 0.0
    assert np.mean(opened) > 0.5 and np.min(opened) > 0.25
