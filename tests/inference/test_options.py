"""Tests of generation's option checks (thflax/inference/options.py): every entry point relies on them to
refuse a bad number in one line before any work, so both edges of each range must pass and everything
just outside, non-finite or of the wrong type must not."""

from __future__ import annotations

import math

import pytest

from thflax.errors import InputError
from thflax.inference import options


def test_check_options_accepts_both_ends_of_every_range() -> None:
    """Inclusive ranges: the bounds themselves are valid values (an off-by-one would refuse them)."""
    for i in (0, 1):
        options.check_options(fps=options.FPS_RANGE[i], size=options.SIZE_RANGE[i], batch=options.BATCH_RANGE[i],
                              rate=options.RATE_RANGE[i], pitch=options.PITCH_RANGE[i], face_index=0,
                              face_box=(0, 0, 1, 1), head_motion=options.HEAD_MOTION_RANGE[i])


@pytest.mark.parametrize("kwargs,match", [
    ({"fps": math.nan}, "fps nan is out of range"),  # NaN compares false with both bounds
    ({"fps": math.inf}, "fps inf is out of range"),
    ({"fps": options.FPS_RANGE[1] + 0.5}, "out of range"),
    ({"size": options.SIZE_RANGE[0] - 1}, "size 15 is out of range"),
    ({"size": 64.0}, "must be a whole number"),
    ({"batch": True}, "must be a whole number"),  # a bool is an int to Python, not a batch size
    ({"batch": options.BATCH_RANGE[1] + 1}, "out of range"),
    ({"rate": options.RATE_RANGE[0] - 1}, "speech rate 79 is out of range"),
    ({"pitch": -1}, "speech pitch -1 is out of range"),
    ({"face_index": -1}, r"face_index -1 is out of range \(0 or more\)"),
    ({"face_box": (10, 0, 10, 5)}, "x0 < x1"),  # empty box
    ({"face_box": (0, 0, math.nan, 5)}, "four pixel numbers"),
    ({"face_box": (0, 0, 5)}, "four pixel numbers"),
    ({"head_motion": -0.5}, r"head_motion -0.5 is out of range \(0..3\)"),
    ({"head_motion": options.HEAD_MOTION_RANGE[1] + 0.1}, "head_motion 3.1 is out of range"),
    ({"head_motion": math.nan}, "head_motion nan is out of range"),
    ({"head_motion": "2"}, "head_motion must be a number"),
    ({"head_motion": False}, "head_motion must be a number"),
])
def test_check_options_refuses_in_one_line(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match) as e:
        options.check_options(**kwargs)
    assert "\n" not in str(e.value)


def test_prefix_names_the_option_as_the_user_wrote_it() -> None:
    """Flags are named --fps, a jobs file's columns rate, the library's arguments speech rate."""
    for prefix, name in (("--", "--rate"), ("", "rate"), (None, "speech rate")):
        with pytest.raises(InputError, match=f"^{name} 9999 "):
            options.check_options(rate=9999, prefix=prefix)


def test_check_frame_bounds_the_pixels_only_when_a_size_is_given() -> None:
    options.check_frame(100, 100000, None, crop_only=False, landmarks_video=True)  # no size: read at MAX_SIDE
    options.check_frame(4096, 8192, 4096, crop_only=False, landmarks_video=False)  # exactly MAX_FRAME_PIXELS
    with pytest.raises(InputError, match="more than"):
        options.check_frame(4096, 8192, 4096, crop_only=False, landmarks_video=True)  # the panel doubles it
    options.check_frame(4096, 8192, 4096, crop_only=True, landmarks_video=True)  # a square crop + panel fits


@pytest.mark.parametrize("sources,match", [
    (dict(image="a.png", video="b.mp4", audio="s.wav", text=None), "not both"),
    (dict(image=None, video=None, audio="s.wav", text=None), "give an image"),
    (dict(image="a.png", video=None, audio="s.wav", text="hi"), "audio or text to speak, not both"),
    (dict(image="a.png", video=None, audio=None, text=None), "give audio or text"),
    (dict(image=None, video="b.mp4", audio="s.wav", text=None, face_index=0), "a video's face is tracked"),
])
def test_check_sources_wants_one_picture_and_one_speech(sources: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        options.check_sources(**sources)
    options.check_sources("a.png", None, None, "hi", face_index=1)  # a photo may choose its face


def test_check_speech_options_refuses_empty_text_and_voice() -> None:
    with pytest.raises(InputError, match="empty"):
        options.check_speech_options("  ", "en-us", options.DEFAULT_RATE, options.DEFAULT_PITCH)
    with pytest.raises(InputError, match="no voice"):
        options.check_speech_options("hello", "", options.DEFAULT_RATE, options.DEFAULT_PITCH)
    options.check_speech_options("hello", "en-us", options.DEFAULT_RATE, options.DEFAULT_PITCH)
