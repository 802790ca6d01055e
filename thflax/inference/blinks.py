"""Blinks for generation: eyelid closure per frame from the speech, and the eye points it moves.

The STL net predicts no blinks (its speech says nothing about them), so generation adds them after
it: `blink_closure` draws blink times from a seed, `rate` a minute, likelier where the speech pauses
(low RMS over ~200 ms), each 3–8 frames at 25 fps with a fast close, the lid held shut, and a
slower reopening (`HOLD`);
`apply_blinks` moves the predicted eye landmarks by that closure. Timing and geometry are
`thflax.face.eyes`', the synthetic corpus's own (the closed lid a little higher: dlib, whose
landmarks the nets train on, never reads the corpus's closed lids as meeting), so the LTV net sees
eyelid landmarks like those it was trained on. Blinks go on through silence, as the head motion does.

Live (`thflax.inference.live`): `BlinkStream` is the same process decided frame by frame from the
audio heard so far (`causal_blink_closure` runs it over a whole utterance): the pause threshold is
judged against the last `PAUSE_HISTORY_S` of speech instead of the whole file, the blink rate's
correction for the share of pauses uses the frames so far, and a blink at the end of the stream is
cut off rather than never started. Its closures are therefore not `blink_closure`'s for the same seed.

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
#: Generated blinks close and reopen this much faster than the corpus's (`thflax.face.eyes.blink_profile`),
#: the lid shut in between, in the same 3–8 frames: the generator closes an eye only part way, so around
#: the corpus's single closed frame too few frames read as closed (figures: BENCHMARKS.md "blinks held shut").
HOLD = 2.0
#: Live: the loud part of the speech (`PAUSE_BELOW_DB`) is judged over this many seconds before a frame.
PAUSE_HISTORY_S = 30.0


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
    return eyes.closure_track(eyes.schedule_blinks(pause, float(rate), rng, fps), int(num_frames), HOLD)


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


class BlinkStream:
    """`blink_closure`'s process frame by frame, causally, for live video: `push(samples)` the audio,
    then `next_closure()` for each frame in order, once `samples_needed(frame)` samples have arrived
    (`ended=True` after the last sample: the RMS window is then cut at the end, as offline).

    The random numbers are drawn one frame at a time from two seeded streams, so the closures depend
    on the seed and the audio, not on how the audio was chunked.
    """

    def __init__(self, fps: float = 25.0, rate: float = DEFAULT_BLINK_RATE, seed: int = 0,
                 sample_rate: int = 16000):
        import collections

        self.fps, self.rate, self.sample_rate = float(fps), float(rate), int(sample_rate)
        self._half = max(int(round(PAUSE_WINDOW_S * sample_rate / 2)), 1)
        self._start_rng = np.random.default_rng([int(seed), 0xB11E, 1])
        self._length_rng = np.random.default_rng([int(seed), 0xB11E, 2])
        self._history = collections.deque(maxlen=max(int(round(PAUSE_HISTORY_S * self.fps)), 1))
        self._buffer = np.zeros(0, np.float64)
        self._buffer_start = 0  # stream index of _buffer[0]
        self.num_samples = 0
        self.frame = 0  # the next frame
        self._weights = 0.0  # sum of the pause weights of the frames so far
        self._free_from = 0  # no blink may start before this frame (dead time)
        self._blink: tuple[int, np.ndarray] | None = None  # (start, profile) of the current blink
        per_s = self.rate / 60.0
        self._spacing = min(eyes.MIN_SPACING_S, 0.5 / per_s) if per_s > 0 else 0.0
        self._hazard = per_s / (1.0 - per_s * self._spacing) if per_s > 0 else 0.0
        self._dead = max(int(np.ceil(self._spacing * self.fps - 1e-9)), 1)

    def _centre(self, frame: int) -> int:
        return int(np.round(frame * self.sample_rate / self.fps))

    def samples_needed(self, frame: int) -> int:
        """Samples the pause judgement of `frame` needs (its RMS window)."""
        return self._centre(frame) + self._half

    def push(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, np.float64).reshape(-1)
        self._buffer = np.concatenate([self._buffer, x])
        self.num_samples += len(x)

    def pause_db(self, frame: int, ended: bool = False) -> float:
        """RMS of the audio around `frame` (`PAUSE_WINDOW_S`, cut at the stream's start and, once
        `ended`, its end) in dB."""
        c = self._centre(frame)
        lo = max(c - self._half, 0)
        hi = min(c + self._half, self.num_samples) if ended else c + self._half
        if hi > self.num_samples:
            raise ValueError(f"frame {frame} needs {hi} samples, {self.num_samples} have arrived")
        seg = self._buffer[lo - self._buffer_start:hi - self._buffer_start]
        power = float(np.dot(seg, seg)) / max(hi - lo, 1)
        return 10.0 * np.log10(power + 1e-12)

    def next_closure(self, ended: bool = False) -> float:
        """The eyelid closure of the next frame, in [0, 1]."""
        t = self.frame
        db = self.pause_db(t, ended)
        self._history.append(db)
        threshold = max(float(np.percentile(np.fromiter(self._history, np.float64), 95)) - PAUSE_BELOW_DB,
                        SILENCE_DB)
        pause = 1.0 if db < threshold else 0.0
        w = 1.0 + (eyes.PAUSE_WEIGHT - 1.0) * pause
        self._weights += w
        u = self._start_rng.random()
        seconds = self._length_rng.uniform(*eyes.BLINK_SECONDS)
        if self._hazard > 0 and t >= self._free_from:
            p = min(self._hazard / self.fps * w / (self._weights / (t + 1)), 1.0)
            if u < p:
                n = max(int(np.floor(seconds * self.fps + 0.5)), 1)
                self._blink = (t, eyes.blink_profile(n, HOLD))
                self._free_from = t + max(self._dead, n + 1)
        closure = 0.0
        if self._blink is not None:
            start, profile = self._blink
            if t - start < len(profile):
                closure = float(profile[t - start])
            else:
                self._blink = None
        self.frame += 1
        # Keep the samples from the next frame's RMS window on.
        drop = min(max(self._centre(self.frame) - self._half, 0), self.num_samples) - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop
        return closure


def causal_blink_closure(speech: np.ndarray, num_frames: int, fps: float = 25.0, rate: float = DEFAULT_BLINK_RATE,
                         seed: int = 0, sample_rate: int = 16000) -> np.ndarray:
    """A `BlinkStream`'s closures float32 [T] for a whole utterance [N] (what a live session adds)."""
    stream = BlinkStream(fps, rate, seed, sample_rate)
    stream.push(speech)
    return np.asarray([stream.next_closure(ended=True) for _ in range(int(num_frames))], np.float32)
