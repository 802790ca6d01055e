"""Blinks of the synthetic corpus: when each speaker's eyelids close, from the utterance's timings.

Each speaker blinks at a habitual rate drawn from their seed in `RATE_RANGE` per minute (people blink
~15–20 times a minute); blinks start more often in pauses (eSpeak's pause phonemes and the silence
before and after the words: `pause_track`) and last 100–300 ms. The timing model and the eyelid
geometry are `thflax.face.eyes`' (shared with generation); the renderer draws the closed lid.

Blinks draw from their own random streams (`blink_rate`'s from the speaker's seed, the timings from
a per-utterance generator), so adding them shifted none of the corpus's other random draws.
"""

from __future__ import annotations

import numpy as np

from thflax.face import eyes
from thflax.synthetic.speakers import Speaker

#: Blinks per minute: each speaker's habitual rate is drawn uniformly in this range.
RATE_RANGE = (10.0, 25.0)


def blink_rate(speaker: Speaker) -> float:
    """The speaker's habitual blinks per minute, drawn from its seed in `RATE_RANGE`.

    A stream of its own (not a field of `Speaker`): speakers, their manifests and every other draw
    stay as they were before blinks.
    """
    return float(np.random.default_rng([speaker.seed, 0xB11C]).uniform(*RATE_RANGE))


def pause_track(phonemes: list[tuple[float, float, str]], num_frames: int, fps: float = 25.0) -> np.ndarray:
    """1 where frame t (time t / fps) is in no spoken phoneme, else 0: float32 [T].

    Pauses are eSpeak's pause phonemes ("_", "_:", ...) and any time outside the phonemes (the
    leading and trailing silence).
    """
    times = np.arange(int(num_frames)) / float(fps)
    speaking = np.zeros(len(times), bool)
    for start, end, name in phonemes:
        if not name.strip().startswith("_"):
            speaking |= (times >= start) & (times < end)
    return (~speaking).astype(np.float32)


def eye_closure(speaker: Speaker, phonemes: list[tuple[float, float, str]], num_frames: int,
                rng: np.random.Generator, fps: float = 25.0, rate: float | None = None) -> np.ndarray:
    """Per-frame eyelid closure of one utterance, float32 [T] in [0, 1] (0 open, 1 closed).

    Args:
      speaker: whose habitual rate (`blink_rate`) is used unless `rate` is given (0: no blinks).
      phonemes: (start_s, end_s, mnemonic) of the utterance, times from the start of its audio.
      num_frames: T.
      rng: the randomness of the blink timings (`thflax.face.eyes.schedule_blinks`).
    """
    r = blink_rate(speaker) if rate is None else float(rate)
    blinks = eyes.schedule_blinks(pause_track(phonemes, num_frames, fps), r, rng, fps)
    return eyes.closure_track(blinks, num_frames)
