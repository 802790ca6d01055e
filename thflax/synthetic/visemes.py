"""Mouth motion from phonemes: the viseme model of the synthetic corpus.

eSpeak phoneme mnemonics map to articulation targets (opening 0..1, width -1 rounded .. +1
spread, `viseme_target`); `mouth_trajectory` lays them out in time and smooths them into one
articulation state per video frame [T, 2]; `deform_mouth` applies one state to a closed-mouth
shape [68, 2] (photo px).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter1d

from thflax.face.points import MOUTH

# Targets per phoneme class: (opening 0..1, width -1 rounded .. +1 spread).
_VOWEL_TARGETS: dict[str, tuple[float, float]] = {
    # open
    "a": (0.9, 0.25), "a#": (0.8, 0.2), "A:": (1.0, 0.05), "A@": (0.9, 0.0), "aa": (0.95, 0.2),
    "V": (0.75, 0.1), "0": (0.8, -0.3), "Q": (0.8, -0.3), "A": (0.9, 0.05),
    # mid
    "E": (0.6, 0.35), "e": (0.55, 0.4), "e@": (0.6, 0.3), "@": (0.42, 0.0), "3": (0.45, 0.0),
    "3:": (0.45, 0.0), "@2": (0.4, 0.0), "@5": (0.4, 0.0), "@L": (0.4, 0.0), "a2": (0.55, 0.1),
    # close, spread
    "i": (0.22, 0.7), "i:": (0.22, 0.75), "I": (0.28, 0.55), "I2": (0.28, 0.5), "I#": (0.28, 0.4),
    "i@": (0.3, 0.5), "i@3": (0.3, 0.5),
    # rounded
    "u:": (0.22, -0.85), "U": (0.3, -0.6), "O:": (0.6, -0.6), "O": (0.6, -0.55), "O@": (0.55, -0.5),
    "o@": (0.5, -0.6), "o": (0.45, -0.7), "U@": (0.35, -0.5),
}
# Diphthongs: (first half, second half).
_DIPHTHONGS: dict[str, tuple[str, str]] = {
    "aI": ("a", "I"), "aU": ("a", "U"), "eI": ("e", "I"), "oU": ("o", "U"), "OI": ("O:", "I"),
    "aI@": ("a", "@"), "aU@": ("a", "@"), "eI@": ("e", "@"), "I@": ("I", "@"), "e@": ("E", "@"),
    "aI3": ("a", "3"), "aU3": ("a", "3"),
}
_CONSONANT_TARGETS: dict[str, tuple[float, float]] = {
    "p": (0.0, 0.0), "b": (0.0, 0.0), "m": (0.0, 0.0),
    "f": (0.08, 0.1), "v": (0.08, 0.1),
    "T": (0.22, 0.1), "D": (0.22, 0.1),
    "t": (0.2, 0.15), "d": (0.2, 0.15), "n": (0.2, 0.15), "l": (0.28, 0.1), "s": (0.15, 0.3),
    "z": (0.15, 0.3), "t#": (0.2, 0.15), "d#": (0.2, 0.15), "n-": (0.2, 0.1), "l/": (0.28, 0.0),
    "S": (0.2, -0.45), "Z": (0.2, -0.45), "tS": (0.2, -0.45), "dZ": (0.2, -0.45),
    "r": (0.25, -0.4), "r-": (0.25, -0.4), "w": (0.15, -0.9), "j": (0.2, 0.5),
    "h": (0.4, 0.0), "k": (0.3, 0.05), "g": (0.3, 0.05), "N": (0.3, 0.05), "x": (0.3, 0.0),
    "?": (0.1, 0.0),
}
BILABIALS = frozenset({"p", "b", "m"})
LABIODENTALS = frozenset({"f", "v"})


def _clean(mnemonic: str) -> str:
    """Strips eSpeak stress marks ('secondary ,primary) and other prosody marks."""
    return mnemonic.replace("'", "").replace(",", "").replace("=", "").strip()


def viseme_target(mnemonic: str) -> tuple[float, float]:
    """(opening 0..1, width -1..1) target of one eSpeak phoneme mnemonic.

    Pauses and unknown symbols are treated by their first letter (vowel-like ->
    mid opening, otherwise a slightly open consonant); pauses close the mouth.
    """
    p = _clean(mnemonic)
    if not p or p.startswith("_"):
        return 0.0, 0.0
    for table in (_CONSONANT_TARGETS, _VOWEL_TARGETS):
        if p in table:
            return table[p]
    if p in _DIPHTHONGS:
        a, b = _DIPHTHONGS[p]
        oa, wa = viseme_target(a)
        ob, wb = viseme_target(b)
        return (oa + ob) / 2, (wa + wb) / 2
    # eSpeak variants like "u:#" or "@-": fall back to the longest known prefix.
    for n in range(len(p) - 1, 0, -1):
        if p[:n] in _CONSONANT_TARGETS or p[:n] in _VOWEL_TARGETS or p[:n] in _DIPHTHONGS:
            return viseme_target(p[:n])
    return (0.45, 0.0) if p[0] in "aeiouAEIOUV03@" else (0.2, 0.0)


def mouth_trajectory(
    phonemes: list[tuple[float, float, str]],
    num_frames: int,
    fps: float = 25.0,
    smoothing_s: float = 0.035,
    lead_s: float = 0.02,
) -> np.ndarray:
    """Smoothed articulation parameters sampled at the video frame times.

    Targets are laid out at 200 Hz (silence = closed, neutral), smoothed with a
    Gaussian of ``smoothing_s`` (coarticulation: short phonemes do not reach
    their target) and shifted ``lead_s`` earlier, since lips move slightly before
    the sound. Bilabials then force full closure through a narrow gate, because
    /p b m/ cannot be produced with open lips whatever the context.

    Args:
      phonemes: (start_s, end_s, mnemonic) from ``speech.synthesize``.
      num_frames: T.
    Returns:
      float32 [T, 2]: (opening 0..~1, width -1..1) at times t / fps.
    """
    hz = 200.0
    duration = num_frames / fps
    n = int(math.ceil(duration * hz)) + 1
    tgt = np.zeros((n, 2), np.float64)
    closure = np.zeros(n, np.float64)
    labio = np.zeros(n, np.float64)
    min_closure = int(round(0.05 * hz))  # a bilabial seals the lips for >= 50 ms
    for start, end, name in phonemes:
        i0, i1 = int(round(start * hz)), max(int(round(end * hz)), int(round(start * hz)) + 1)
        i0, i1 = min(i0, n), min(i1, n)
        p = _clean(name)
        if p in BILABIALS and i1 - i0 < min_closure:
            # eSpeak can make a /b/ very short; real lips still close fully.
            mid = (i0 + i1) // 2
            c0, c1 = max(mid - min_closure // 2, 0), min(mid + min_closure // 2, n)
            closure[c0:c1] = 1.0
        if p in _DIPHTHONGS:  # glide: first half to the first vowel, second half to the second
            a, b = _DIPHTHONGS[p]
            mid = (i0 + i1) // 2
            tgt[i0:mid] = viseme_target(a)
            tgt[mid:i1] = viseme_target(b)
        else:
            tgt[i0:i1] = viseme_target(name)
        if p in BILABIALS:
            closure[i0:i1] = 1.0
        elif p in LABIODENTALS:
            labio[i0:i1] = 1.0
    sigma = smoothing_s * hz
    smooth = gaussian_filter1d(tgt, sigma, axis=0, mode="nearest")
    gate = np.clip(1.6 * gaussian_filter1d(closure, 0.4 * sigma, mode="nearest"), 0, 1)
    lgate = np.clip(1.6 * gaussian_filter1d(labio, 0.4 * sigma, mode="nearest"), 0, 1)
    smooth[:, 0] *= 1.0 - gate
    smooth[:, 0] = np.minimum(smooth[:, 0], (1.0 - lgate) + lgate * 0.08)
    # Snap the Gaussian tails to exact closure (a sub-pixel gap is not a gap).
    smooth[smooth[:, 0] < 0.02, 0] = 0.0
    t_frames = np.arange(num_frames) / fps + lead_s
    grid = np.arange(n) / hz
    out = np.stack([np.interp(t_frames, grid, smooth[:, k]) for k in range(2)], -1)
    return out.astype(np.float32)


def deform_mouth(shape: np.ndarray, opening: float, width: float, open_gain: float = 1.0) -> np.ndarray:
    """Applies one articulation state to a closed-mouth shape (photo px).

    Args:
      shape: float [68, 2] neutral closed-mouth landmarks.
      opening: 0 (closed) .. ~1 (open vowel).
      width: -1 (rounded/protruded) .. +1 (spread).
    Returns:
      float32 [68, 2].
    """
    out = shape.astype(np.float64).copy()
    mw = float(np.linalg.norm(shape[54] - shape[48]))
    gap = max(opening, 0.0) * open_gain * 0.4 * mw  # inner-lip gap (px) at the centre
    up, down = 0.12 * gap, 0.88 * gap  # the upper lip lifts a little, the jaw does the rest
    out[[61, 62, 63], 1] -= up * np.array([0.85, 1.0, 0.85])
    out[[50, 51, 52], 1] -= 0.6 * up
    out[[49, 53], 1] -= 0.4 * up
    out[[65, 66, 67], 1] += down * np.array([0.85, 1.0, 0.85])
    out[[56, 57, 58], 1] += down * np.array([0.9, 0.95, 0.9])
    out[[55, 59], 1] += 0.75 * down
    out[[48, 54, 60, 64], 1] += 0.32 * down
    jaw_w = np.array([0.08, 0.25, 0.5, 0.72, 0.8, 0.72, 0.5, 0.25, 0.08])  # points 4..12
    out[4:13, 1] += down * jaw_w
    # Width: corners move most, lips in between partly; rounding also pouts the
    # lips (thicker vertically) and narrows the opening horizontally.
    mc = out[list(MOUTH)].mean(0)
    k = 0.09 * width if width > 0 else 0.16 * width
    wt = np.ones(20)
    wt[[0, 6, 12, 16]] = 1.0  # corners 48, 54, 60, 64
    wt[[1, 5, 7, 11, 13, 15, 17, 19]] = 0.6
    wt[[2, 4, 8, 10, 14, 18]] = 0.3
    wt[[3, 9]] = 0.0
    out[MOUTH, 0] = mc[0] + (out[MOUTH, 0] - mc[0]) * (1 + k * wt)
    if width < 0:
        pout = -width * 0.04 * mw
        out[[49, 50, 51, 52, 53], 1] -= pout
        out[[55, 56, 57, 58, 59], 1] += pout
    return out.astype(np.float32)
