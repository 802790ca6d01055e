"""What generation accepts: defaults and ranges of its options, and the checks every entry point shares.

generate(), generate.py's flags, a jobs file's rows and the web page all check here, before anything
is read or written, so a bad value costs no work and gets one line (`InputError`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from thflax.errors import InputError
from thflax.inference.blinks import DEFAULT_BLINK_RATE
from thflax.io.speech import DEFAULT_PITCH, DEFAULT_RATE, DEFAULT_VOICE  # noqa: F401 (read from here)

#: Without --size, photos are worked on (and written) at most this many pixels on their longer side:
#: time and memory then do not grow with the camera's resolution.
MAX_SIDE = 1024

#: Text to speech: the voice, words per minute and base pitch are eSpeak NG's own defaults
#: (`thflax.io.speech.DEFAULT_VOICE`, `DEFAULT_RATE`, `DEFAULT_PITCH`: every entry point reads them from
#: here); rate and pitch ranges, and the silence around the speech so the mouth starts and ends closed
#: (as the demo's utterances do).
RATE_RANGE = (80, 450)
PITCH_RANGE = (0, 100)
SPEECH_PADDING = (0.3, 0.4)

#: Ranges of generate's numeric options (inclusive), checked by `check_options` for the library, generate.py's
#: flags, a jobs file's rows and the web page alike. Frame rates above 120 and heights above 4096 pixels
#: are no talking-head video; unbounded, they allocate the whole audio's frames (`--fps 1e9`) or frames
#: of tens of GB (`--size 100000`) before failing. `batch` frames go through the generator at once (the
#: last batch is padded to it), so it bounds the accelerator's memory.
FPS_RANGE = (1.0, 120.0)
SIZE_RANGE = (16, 4096)
BATCH_RANGE = (1, 256)
#: Blinks per minute added to a generated video (`thflax.inference.blinks`); 0 turns them off. People
#: blink ~15–20 times a minute; above one a second is no blinking but a twitch.
BLINK_RATE_RANGE = (0.0, 60.0)
#: How far the head moves: the predicted head's displacement from the photo's pose times this (0: a still
#: head, as `still`; 1: the network's own motion). Above 3 the face leaves its crop on a lively prediction.
HEAD_MOTION_RANGE = (0.0, 3.0)
DEFAULT_HEAD_MOTION = 1.0
#: The most pixels an output frame may have (a 4096-high frame with the landmark panel beside it): with
#: `size`, a very wide photo or video would otherwise make frames far wider than `size` is high.
MAX_FRAME_PIXELS = 4096 * 8192


def check_number(name: str, value: Any, bounds: tuple[float, float] | None, whole: bool, unit: str = "") -> None:
    """InputError (one line) unless `value` is a finite number (whole when `whole`; never a bool) within
    `bounds` (inclusive; None: 0 or more). NaN compares false with everything, so finiteness is tested
    on its own."""
    where = f"{bounds[0]:g}..{bounds[1]:g}{unit}" if bounds else "0 or more"
    if not isinstance(value, numbers.Integral if whole else numbers.Real) or isinstance(value, bool):
        raise InputError(f"{name} must be {'a whole number' if whole else 'a number'} ({where}), not {value!r}")
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if not math.isfinite(value) or not (bounds[0] <= value <= bounds[1] if bounds else value >= 0):
        raise InputError(f"{name} {shown} is out of range ({where})")


def check_options(*, fps: float | None = None, size: int | None = None, batch: int = 16, rate: int = DEFAULT_RATE,
                  pitch: int = DEFAULT_PITCH, face_index: int | None = None,
                  face_box: tuple[int, int, int, int] | None = None, prefix: str | None = None,
                  blink_rate: float = DEFAULT_BLINK_RATE, blink_seed: int = 0,
                  head_motion: float = DEFAULT_HEAD_MOTION) -> None:
    """Raises InputError (one line) for a numeric option of `generate` that is not a number or out of
    its range (`FPS_RANGE`, `SIZE_RANGE`, `BATCH_RANGE`, `RATE_RANGE`, `PITCH_RANGE`,
    `BLINK_RATE_RANGE`, `HEAD_MOTION_RANGE`; face_index and blink_seed 0 or more; face_box four finite
    pixel numbers x0 < x1, y0 < y1).

    The one place these are checked: `generate` calls it first, and generate.py calls it for its flags
    and every jobs row before any model is loaded, so a bad value costs no work and writes nothing.
    `prefix` names the options as the caller's user wrote them: "--" for flags (--fps), "" for a jobs
    file's columns (rate); None for the library's names (fps, speech rate).
    """

    def name(option: str, plain: str) -> str:
        return plain if prefix is None else prefix + option

    if fps is not None:
        check_number(name("fps", "fps"), fps, FPS_RANGE, whole=False, unit=" frames per second")
    if size is not None:
        check_number(name("size", "size"), size, SIZE_RANGE, whole=True, unit=" pixels")
    check_number(name("batch", "batch"), batch, BATCH_RANGE, whole=True, unit=" frames")
    check_number(name("rate", "speech rate"), rate, RATE_RANGE, whole=True, unit=" words per minute")
    check_number(name("pitch", "speech pitch"), pitch, PITCH_RANGE, whole=True)
    check_number(name("blink_rate", "blink_rate"), blink_rate, BLINK_RATE_RANGE, whole=False, unit=" blinks per minute")
    check_number(name("blink_seed", "blink_seed"), blink_seed, None, whole=True)
    check_number(name("head_motion", "head_motion"), head_motion, HEAD_MOTION_RANGE, whole=False)
    if face_index is not None:
        check_number(name("face_index", "face_index"), face_index, None, whole=True)
    if face_box is not None:
        box = tuple(face_box) if isinstance(face_box, (tuple, list)) else ()
        if (len(box) != 4 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                                     for v in box) or not (box[0] < box[2] and box[1] < box[3])):
            raise InputError(f"{name('face_box', 'face_box')} must be four pixel numbers x0,y0,x1,y1 with x0 < x1 "
                             f"and y0 < y1, not {face_box!r}")


def check_frame(height: int, width: int, size: int | None, crop_only: bool, landmarks_video: bool) -> None:
    """InputError unless the output frames made from a `height` x `width` picture fit `MAX_FRAME_PIXELS`
    (only `size` can make them large: without it pictures are read at most `MAX_SIDE` pixels)."""
    if size is None:
        return
    out_w = size if crop_only else int(round(width * size / max(height, 1) / 2)) * 2
    out_w += size if landmarks_video else 0
    if size * out_w > MAX_FRAME_PIXELS:
        raise InputError(f"size {size} makes {out_w}x{size} frames from the {width}x{height} picture: more than "
                         f"{MAX_FRAME_PIXELS:,} pixels (give a smaller size)")


def check_speech_options(text: Any, voice: str, rate: int, pitch: int) -> None:
    """Raises InputError for text-to-speech arguments eSpeak NG cannot use (before any slow work)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text to speak is empty")
    if not isinstance(voice, str) or not voice.strip():
        raise InputError("no voice given for the text")
    check_number("speech rate", rate, RATE_RANGE, whole=True, unit=" words per minute")
    check_number("speech pitch", pitch, PITCH_RANGE, whole=True)


def check_sources(image: Any, video: Any, audio: Any, text: Any, face_index: Any = None, face_box: Any = None) -> None:
    """InputError unless exactly one of image/video and exactly one of audio/text is given, and a face
    choice (face_index, face_box) comes only with a photo (a video's face is tracked)."""
    if (image is None) == (video is None):
        raise InputError("give an image or a video, not both" if image is not None
                         else "give an image (a photo) or a video")
    if (audio is None) == (text is None):
        raise InputError("give either audio or text to speak, not both" if audio is not None
                         else "give audio or text to speak")
    if video is not None and (face_index is not None or face_box is not None):
        raise InputError("face_index and face_box choose a face in a photo; a video's face is tracked")
