"""dlib's 68-point layout: the index groups every part of the project names, and the mouth opening.

numpy only (no JAX), so the data layer, the synthetic corpus and the measures can import it without
the model stack. Groups are tuples of ints: they index numpy and JAX arrays alike inside an index
tuple (``lm[..., MOUTH, :]``) and concatenate (``(NOSE_TIP,) + MOUTH``); on their own as a numpy
index they need ``list(...)`` (a bare tuple would index several axes).
"""

from __future__ import annotations

import numpy as np

NUM_POINTS = 68
#: Jaw contour, ear to ear (0–16).
JAW = tuple(range(0, 17))
#: Nose: bridge (27–30) then base (31–35).
NOSE = tuple(range(27, 36))
NOSE_TIP = 30
#: The outer eye corners (right eye's 36, left eye's 45): their distance is the inter-ocular distance
#: (300-W's normalisation), which lids closing in a blink do not change.
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 36, 45
MOUTH_LEFT, MOUTH_RIGHT = 48, 54
#: Outer lip contour then inner lip contour (48–67).
MOUTH = tuple(range(48, 68))
OUTER_LIP = tuple(range(48, 60))
INNER_LIP = tuple(range(60, 68))
#: The inner lips' middle points, paired top to bottom (61<->67, 62<->66, 63<->65): their distance
#: is how far the mouth is open.
UPPER_INNER = (61, 62, 63)
LOWER_INNER = (67, 66, 65)


def mouth_opening(landmarks: np.ndarray, min_width: float | None = None) -> np.ndarray:
    """Inner-lip gap over mouth width: [..., 68, 2] -> [...] float64 (0 closed, 0.3–0.5 wide open).

    Gap: the mean distance of the `UPPER_INNER`/`LOWER_INNER` pairs; width: corner to corner (48–54).
    The ratio does not depend on the face's size in the frame. A zero width has no ratio: with
    `min_width` None the result is NaN there (a measure reports no value); with a number the width is
    taken as at least `min_width`, so every frame gets a finite value to compare (dubbing's choice of
    the most closed mouth). NaN landmarks give NaN either way.
    """
    lm = np.asarray(landmarks, np.float64)
    gap = np.linalg.norm(lm[..., UPPER_INNER, :] - lm[..., LOWER_INNER, :], axis=-1).mean(-1)
    width = np.linalg.norm(lm[..., MOUTH_RIGHT, :] - lm[..., MOUTH_LEFT, :], axis=-1)
    if min_width is not None:
        return gap / np.maximum(width, min_width)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(width > 0, gap / width, np.nan)
