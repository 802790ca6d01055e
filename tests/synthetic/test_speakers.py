"""Tests of the synthetic speakers (thflax/synthetic/speakers.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.corpus  # renders faces / builds datasets: minutes

from thflax.synthetic import renderer, speakers


def test_speakers_differ():
    a, b = speakers.make_speaker(1), speakers.make_speaker(2)
    assert a != b and a == speakers.make_speaker(1)
    fa = renderer.get_renderer(a).render_frame(renderer.get_renderer(a).neutral, np.array([0, 0, 0, 0, 0, 1.0]))[0]
    fb = renderer.get_renderer(b).render_frame(renderer.get_renderer(b).neutral, np.array([0, 0, 0, 0, 0, 1.0]))[0]
    assert np.abs(fa.astype(int) - fb.astype(int)).mean() > 10
    json.dumps(a.to_dict())
