"""Idle head motion for live video: a slow seeded sway of the whole face, so the head never freezes.

The STL net's head moves with the speech only: in a pause its input is constant and so is its head,
which stands still through every silence of a live stream (the demo's STL, measured in BENCHMARKS.md,
"live"). People keep moving. This
adds a small similarity motion (roll, shift, scale) of all 68 points about the nose, each parameter a
sum of `COMPONENTS` slow sinusoids with seeded frequencies and phases: smooth, never periodic to the
eye, and a function of the frame index alone, so a stream gets the same motion however its audio is
chunked. The amplitudes are below the synthetic corpus's random head motion (its roll 2°, shift ~2.5 %
of the face; `thflax.synthetic.head_motion`), whose frames the generator learnt to warp.

numpy only.
"""

from __future__ import annotations

import numpy as np

#: Standard deviation of each pose parameter at sway 1: roll (degrees), x and y shift (normalised crop
#: coordinates: the face is about 0.6 of the crop), scale (relative).
ROLL_DEG, SHIFT_X, SHIFT_Y, SCALE = 1.5, 0.010, 0.006, 0.008
COMPONENTS = 3
FREQUENCIES_HZ = (0.06, 0.3)  # periods of 3–16 s
NOSE = tuple(range(27, 36))  # the points the face turns and scales about


def sway_poses(frames: np.ndarray, fps: float = 25.0, seed: int = 0, amount: float = 1.0) -> np.ndarray:
    """(roll degrees, x shift, y shift, scale - 1) of each frame index in `frames` [n]: float64 [n, 4]."""
    rng = np.random.default_rng([int(seed), 0x5A7])
    freq = rng.uniform(*FREQUENCIES_HZ, size=(4, COMPONENTS))
    phase = rng.uniform(0, 2 * np.pi, size=(4, COMPONENTS))
    # A sum of K unit sinusoids has std sqrt(K / 2): scaled so each parameter has its std.
    std = np.array([ROLL_DEG, SHIFT_X, SHIFT_Y, SCALE]) * float(amount) / np.sqrt(COMPONENTS / 2.0)
    t = np.asarray(frames, np.float64).reshape(-1, 1, 1) / float(fps)
    return (np.sin(2 * np.pi * freq[None] * t + phase[None]).sum(-1)) * std[None]


def apply_sway(landmarks: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Landmarks [n, 68, 2] moved by poses [n, 4] (`sway_poses`), each frame about its own nose: float32."""
    lm = np.asarray(landmarks, np.float64)
    p = np.asarray(poses, np.float64)
    centre = lm[:, list(NOSE)].mean(axis=1, keepdims=True)
    a = np.deg2rad(p[:, 0])
    s = 1.0 + p[:, 3]
    rot = np.stack([np.stack([np.cos(a), -np.sin(a)], -1), np.stack([np.sin(a), np.cos(a)], -1)], -2)  # [n, 2, 2]
    moved = np.einsum("nij,npj->npi", rot * s[:, None, None], lm - centre) + centre + p[:, None, 1:3]
    return moved.astype(np.float32)
