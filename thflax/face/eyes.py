"""Eyes as landmarks: the eye aspect ratio, blinks in time, and the eyelid move of one closure.

One home for the blink geometry and its timing, shared by the synthetic corpus
(`thflax.synthetic.renderer`, which renders the closed lid) and generation
(`thflax.inference.blinks`, which moves the predicted eye points): the LTV net then sees in
inference the same eyelid landmarks for a given closure as it saw in training.

numpy only. Points (dlib's 68, 0-based): right eye 36–41 (36 outer corner, 37–38 upper lid, 39 inner
corner, 40–41 lower lid), left eye 42–47 (42 inner corner, 43–44 upper lid, 45 outer corner, 46–47
lower lid). Each upper lid point has the lower lid point below it: 37–41, 38–40, 43–47, 44–46.
"""

from __future__ import annotations

import math

import numpy as np

RIGHT_EYE = tuple(range(36, 42))
LEFT_EYE = tuple(range(42, 48))
#: Each eye's lid region, brow to lower lid: the brow (17–21 / 22–26) then the eye's corners and lower lid.
#: Unlike the eye's own contour it keeps its area when the eye closes, so a loss or measure over it sees
#: the closed lid.
RIGHT_LID_REGION = (17, 18, 19, 20, 21, 39, 40, 41, 36)
LEFT_LID_REGION = (22, 23, 24, 25, 26, 45, 46, 47, 42)
#: Upper lid points and the lower lid points under them, pair by pair.
UPPER_LID = (37, 38, 43, 44)
LOWER_LID = (41, 40, 47, 46)
#: Where the lids meet at full closure, as a fraction of the open gap above the lower lid: the upper
#: lid comes down (most of the motion, as in a real blink), the lower lid rises a little. A small gap
#: is left so that no two points coincide (a 2-D landmarker never reads a gap of exactly 0 either).
UPPER_CLOSED = 0.15
LOWER_CLOSED = 0.05
#: Where generation puts a closed upper lid (`thflax.inference.blinks`), short of the renderer's: the
#: nets train on dlib's landmarks of the corpus, and dlib reads the corpus's fully closed eye with an
#: eye aspect ratio of 0.31 of the open one on astronaut speakers and ~0.55 on real portraits, not the
#: 0.1 drawn. At 0.35 (a ratio of 0.3) a model trained on a corpus with blinks makes eyes dlib reads
#: at 0.42–0.45 of open, thin slits; at 0.59 (matching the portraits' 0.55) they only droop (0.61–0.65,
#: no blink found). BENCHMARKS.md, 2026-12-07, "blinks".
DLIB_UPPER_CLOSED = 0.35

#: Blink timing (people: ~15–20 a minute, each 100–300 ms, more often at pauses in speech).
BLINK_SECONDS = (0.1, 0.32)  # a blink's length is drawn in [0.1, 0.32) s: 3–8 frames at 25 fps
MIN_SPACING_S = 1.0  # the least time from one blink's start to the next (less at very high rates)
PAUSE_WEIGHT = 4.0  # a blink is this many times likelier to start in a pause than during speech
PEAK_AT = 0.35  # the lid closes in the first ~third of a blink and reopens more slowly


#: A frame's eyes count as closed where its eye aspect ratio is under this fraction of the median over the
#: video or utterance (the eyes are open most of the time, so the median is the open eye's).
CLOSED_EAR_FRACTION = 0.6


def eye_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Soukupová and Čech's eye aspect ratio, the mean of both eyes: [..., 68, 2] -> [...] float64.

    Per eye (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|): ~0.25–0.35 open, near 0 closed, whatever the
    face's size. A zero eye width gives NaN.
    """
    lm = np.asarray(landmarks, np.float64)

    def one(eye: tuple[int, ...]) -> np.ndarray:
        p = lm[..., list(eye), :]
        d = lambda i, j: np.linalg.norm(p[..., i, :] - p[..., j, :], axis=-1)  # noqa: E731
        with np.errstate(invalid="ignore", divide="ignore"):
            return (d(1, 5) + d(2, 4)) / (2.0 * d(0, 3))

    return 0.5 * (one(RIGHT_EYE) + one(LEFT_EYE))


def close_eyes(landmarks: np.ndarray, closure: np.ndarray | float,
               upper_closed: float = UPPER_CLOSED) -> np.ndarray:
    """Eyelid points moved for a closure: [..., 68, 2], closure [...] in [0, 1] -> [..., 68, 2] float32.

    Each upper lid point moves straight towards the lower lid point under it, which rises a little
    (to `upper_closed` and `LOWER_CLOSED` of the open gap above it); 0 leaves the landmarks as they
    are, 1 closes the eye (a gap of `upper_closed - LOWER_CLOSED` is left). A linear
    move of point pairs, so it is the same in any coordinates related by an affine map (frame pixels,
    normalised crop coordinates): the corpus and generation close an eye alike. Other points are kept.
    """
    lm = np.asarray(landmarks, np.float32)
    c = np.clip(np.asarray(closure, np.float32), 0.0, 1.0)[..., None, None]
    out = lm.copy()
    up, low = lm[..., list(UPPER_LID), :], lm[..., list(LOWER_LID), :]
    gap = up - low
    out[..., list(UPPER_LID), :] = up - c * (1.0 - upper_closed) * gap
    out[..., list(LOWER_LID), :] = low + c * LOWER_CLOSED * gap
    return out


def blink_profile(length: int, hold: float = 1.0) -> np.ndarray:
    """The closure of one blink frame by frame, float32 [length] in (0, 1], 1 at one frame at least.

    A fast close over the first ~third (`PEAK_AT`) and a slower reopening, each a smoothstep. `hold` > 1
    speeds both up by that factor and keeps the lid shut in between (1 over more frames), same length.
    """
    n = int(length)
    if n < 1:
        return np.zeros(0, np.float32)
    p = int(round((n - 1) * PEAK_AT))
    i = np.arange(n, dtype=np.float64)
    x = np.where(i < p, (i + 1) / (p + 1), np.where(i > p, (n - i) / max(n - p, 1), 1.0))
    x = np.minimum(x * max(float(hold), 1.0), 1.0)
    return (x * x * (3 - 2 * x)).astype(np.float32)


def schedule_blinks(pause: np.ndarray, rate: float, rng: np.random.Generator,
                    fps: float = 25.0) -> list[tuple[int, int]]:
    """Blink (start frame, length in frames) over T frames, `rate` a minute on average, likelier in pauses.

    A renewal process at the frame rate: after each start no blink may start for `MIN_SPACING_S`
    (at most half the mean interval), otherwise one starts with a probability per frame weighted
    `PAUSE_WEIGHT` : 1 in pauses vs speech, scaled so the expected count is `rate` per minute
    whatever the share of pauses (the dead time is compensated). A blink that would not end inside
    the T frames does not start. The random numbers drawn depend on T only (not on `pause` or
    `rate`), so a seed gives the same stream whatever the speech.

    Args:
      pause: [T] in [0, 1], 1 where the speaker pauses (no speech), 0 while speaking.
      rate: mean blinks per minute; 0 (or less) gives none.
      rng: the randomness of the blinks.
      fps: frames per second.
    Returns:
      [(start, length)], sorted, not overlapping.
    """
    pause = np.clip(np.asarray(pause, np.float64).reshape(-1), 0.0, 1.0)
    t = len(pause)
    u = rng.random(t)
    seconds = rng.uniform(*BLINK_SECONDS, size=t)
    if t == 0 or not rate > 0:
        return []
    per_s = float(rate) / 60.0
    spacing = min(MIN_SPACING_S, 0.5 / per_s)
    # A dead time d after each start lowers a hazard h to h / (1 + h d): ask for more to get `rate`.
    hazard = per_s / (1.0 - per_s * spacing)
    w = 1.0 + (PAUSE_WEIGHT - 1.0) * pause
    p = np.minimum(hazard / fps * w / w.mean(), 1.0)
    dead = max(int(math.ceil(spacing * fps - 1e-9)), 1)
    blinks: list[tuple[int, int]] = []
    i = 0
    while i < t:
        if u[i] < p[i]:
            n = max(int(math.floor(seconds[i] * fps + 0.5)), 1)
            if i + n <= t:
                blinks.append((i, n))
                i += max(dead, n + 1)  # n + 1: blinks never touch, so each is its own run of closure
                continue
        i += 1
    return blinks


def closure_track(blinks: list[tuple[int, int]], num_frames: int, hold: float = 1.0) -> np.ndarray:
    """Per-frame eyelid closure float32 [T] in [0, 1] of blinks [(start, length)] (`blink_profile(n, hold)` each)."""
    c = np.zeros(int(num_frames), np.float32)
    for start, n in blinks:
        seg = blink_profile(n, hold)[: max(num_frames - start, 0)]
        c[start:start + len(seg)] = np.maximum(c[start:start + len(seg)], seg)
    return c


def closure_runs(closure: np.ndarray) -> list[tuple[int, int]]:
    """The (start, length) of each run of frames with closure > 0: the blinks of a closure track."""
    on = np.concatenate([[False], np.asarray(closure).reshape(-1) > 0, [False]])
    edges = np.flatnonzero(on[1:] != on[:-1])
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]
