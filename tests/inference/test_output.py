"""Tests of the output frame (thflax/inference/output.py): its size with and without the landmark panel
and `size`, and the step clock generate's summary reports."""

from __future__ import annotations

import numpy as np
import pytest

from thflax.inference import output
from thflax.testing import face_landmarks


@pytest.mark.parametrize("landmarks_video,size,shape", [
    (False, None, (96, 128, 3)),  # as given
    (True, None, (96, 128 + 96, 3)),  # a square panel of the frame's height beside it
    (False, 48, (48, 64, 3)),  # height `size`, aspect kept
    (True, 48, (48, 112, 3)),
    (False, 50, (50, 66, 3)),  # 66.7 rounded to an even width (H.264 wants even sides)
])
def test_finish_frame_sizes(landmarks_video: bool, size: int | None, shape: tuple[int, int, int]) -> None:
    frame = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    lm = face_landmarks()  # normalised to the crop (plotting.draw_landmarks scales them to the panel)
    out = output.finish_frame(frame, lm, 64, landmarks_video, size)
    assert out.shape == shape and out.dtype == np.uint8
    if size is None:
        np.testing.assert_array_equal(out[:, :128], frame)  # the frame itself untouched
    if landmarks_video and size is None:
        panel = out[:, 128:]
        assert (panel == 255).mean() > 0.5 and (panel != 255).any()  # white with the sketch drawn on it


def test_clock_adds_up_repeated_steps() -> None:
    clock = output.Clock()
    clock.mark("a")
    clock.mark("b")
    clock.mark("a")
    assert set(clock.times) == {"a", "b"} and all(t >= 0 for t in clock.times.values())
