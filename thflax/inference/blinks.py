"""Blinks for generation: eyelid closure per frame from the speech, and the eye points it moves.

The STL net predicts no blinks (its speech says nothing about them), so generation adds them after
it: `blink_closure` draws blink times from a seed, `rate` a minute, likelier where the speech pauses
(low RMS over ~200 ms), each 3–8 frames at 25 fps with a fast close and slower reopening;
`apply_blinks` moves the predicted eye landmarks by that closure. Timing and geometry are
`thflax.face.eyes`', the synthetic corpus's own (the closed lid a little higher: dlib, whose
landmarks the nets train on, never reads the corpus's closed lids as meeting), so the LTV net sees
eyelid landmarks like those it was trained on. Blinks go on through silence, as the head motion does.

numpy only.
"""

from __future__ import annotations

import numpy as np

from thflax.face import eyes

DEFAULT_BLINK_RATE = 15.0  # blinks per minute (people: ~15–20)
PAUSE_WINDOW_S = 0.2  # speech energy is judged over this much time around each frame
#: A frame is a pause where its RMS is this far below the loud part of the speech (its 95th
#: percentile), or below `SILENCE_DB` (digital silence, whatever the rest).
PAUSE_BELOW_DB = 30.0
SILENCE_DB = -60.0


def pause_track(speech: np.ndarray, num_frames: int, fps: float = 25.0, sample_rate: int = 16000) -> np.ndarray:
    """1 where the speaker pauses at frame t (time t / fps), else 0: float32 [T] from speech [N].

    RMS over `PAUSE_WINDOW_S` centred on each frame, in dB; a pause is `PAUSE_BELOW_DB` under the
    95th percentile of the frames (so the loudness of the recording does not matter) or under
    `SILENCE_DB` full scale.
    """
    x = np.asarray(speech, np.float64).reshape(-1)
    t = int(num_frames)
    if t <= 0:
        return np.zeros(0, np.float32)
    half = max(int(round(PAUSE_WINDOW_S * sample_rate / 2)), 1)
    # Running sums: the RMS of every window in O(N), however long the speech.
    c = np.concatenate([[0.0], np.cumsum(x * x)])
    centre = np.round(np.arange(t) * sample_rate / float(fps)).astype(np.int64)
    lo, hi = np.clip(centre - half, 0, len(x)), np.clip(centre + half, 0, len(x))
    power = (c[hi] - c[lo]) / np.maximum(hi - lo, 1)
    db = 10.0 * np.log10(power + 1e-12)
    threshold = max(float(np.percentile(db, 95)) - PAUSE_BELOW_DB, SILENCE_DB)
    return (db < threshold).astype(np.float32)


def blink_closure(speech: np.ndarray, num_frames: int, fps: float = 25.0, rate: float = DEFAULT_BLINK_RATE,
                  seed: int = 0, sample_rate: int = 16000) -> np.ndarray:
    """Per-frame eyelid closure float32 [T] in [0, 1] (0 open, 1 closed) for speech [N].

    Deterministic for (`seed`, speech, T, fps, rate); `rate` blinks per minute on average (0: none),
    at least ~1 s apart (less above 30 a minute), starting `thflax.face.eyes.PAUSE_WEIGHT` times
    likelier per frame in pauses (`pause_track`) than while speaking.
    """
    rng = np.random.default_rng([int(seed), 0xB11E])
    pause = pause_track(speech, num_frames, fps, sample_rate)
    return eyes.closure_track(eyes.schedule_blinks(pause, float(rate), rng, fps), int(num_frames))


def apply_blinks(landmarks: np.ndarray, closure: np.ndarray) -> np.ndarray:
    """Eye points of landmarks [T, 68, 2] moved by closure [T]: upper lids towards the lower lids
    (`thflax.face.eyes.close_eyes`; any coordinates: frame pixels or normalised crop). float32 [T, 68, 2];
    the other 60 points are returned unchanged.

    Fully closed, the lids stay a little apart (`thflax.face.eyes.DLIB_UPPER_CLOSED`: the LTV net
    learnt closed eyes from dlib's landmarks of the corpus, which never meet either).
    """
    lm = np.asarray(landmarks, np.float32)
    c = np.asarray(closure, np.float32).reshape(-1)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2) or len(c) != len(lm):
        raise ValueError(f"landmarks [T, 68, 2] and closure [T] expected, got {lm.shape} and {c.shape}")
    return eyes.close_eyes(lm, c, upper_closed=eyes.DLIB_UPPER_CLOSED)


def blink_chunks(chunks, closure: np.ndarray):
    """Landmark chunks [t, 68, 2] (as `predict_landmarks` yields them) with `closure` [T] applied in
    order: generation's stream stays a stream."""
    start = 0
    for chunk in chunks:
        n = len(chunk)
        yield apply_blinks(chunk, closure[start:start + n])
        start += n
