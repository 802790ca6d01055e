"""Head motion of the synthetic corpus: a head pose per frame [T, 6], partly driven by speech.

`head_poses` mixes low-pass random motion with nods and bobs that follow the loudness of the
speech (`normalised_loudness`), so part of the motion is predictable from the audio and part is
not. Pose limits keep dlib tracking reliably.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from thflax.synthetic.speakers import Speaker

POSE_NAMES: tuple[str, ...] = ("yaw_deg", "pitch_deg", "roll_deg", "tx_px", "ty_px", "scale")
# Pose limits keep dlib tracking reliably (it is trained on mostly frontal faces).
MAX_YAW, MAX_PITCH, MAX_ROLL = 14.0, 10.0, 9.0


def _smooth_noise(rng: np.random.Generator, n: int, sigma_frames: float) -> np.ndarray:
    """Unit-variance low-pass Gaussian noise [n]."""
    pad = int(3 * sigma_frames) + 1
    x = gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma_frames, mode="wrap")[pad:pad + n]
    return x / (x.std() + 1e-8) if n > 1 else x


def normalised_loudness(audio: np.ndarray, num_frames: int, sample_rate: int = 16000,
                        fps: float = 25.0) -> np.ndarray:
    """Per-frame speech loudness in [0, 1], float32 [T]: what drives the nods.

    RMS over a window centred on each frame's start time t / fps, in dB mapped so that -50 dB
    (relative to the loudest frame) or less is 0 and the loudest frame is 1.

    Not `thflax.measures.face_measures.speech_energy`, on purpose: that one is librosa's RMS read at
    frame centres (t + 0.5) / fps, in dB floored at -60 (or linear), the measure of lip sync. This
    one makes the corpus; changing it to share that code would change every head pose it renders.
    """
    hop = sample_rate / fps
    win = int(round(hop))
    padded = np.pad(audio.astype(np.float64), (win, win))
    centres = (np.arange(num_frames) * hop).astype(int) + win
    rms = np.array([np.sqrt(np.mean(padded[c - win // 2 : c + win // 2] ** 2)) for c in centres])
    db = 20 * np.log10(rms + 1e-9)
    db -= db.max() if len(db) else 0.0
    return np.clip(1 + db / 50.0, 0, 1).astype(np.float32)


def head_poses(
    speaker: Speaker,
    audio: np.ndarray,
    num_frames: int,
    rng: np.random.Generator,
    fps: float = 25.0,
    sample_rate: int = 16000,
    head_motion_scale: float = 1.0,
) -> np.ndarray:
    """Head pose trajectory: random smooth motion plus speech-driven nods.

    The speech-driven part follows the energy envelope 120 ms late (the head
    dips and bobs while speaking, more at loud onsets), so part of the motion is
    predictable from audio; the rest is low-pass noise the audio cannot explain.

    ``head_motion_scale`` multiplies the whole trajectory's deviation from the
    rest pose (frontal, centred, scale 1), random and speech-driven parts and
    per-utterance offsets alike: the same motion, k times smaller (< 1: a
    stiller, more frontal head, GRID-like; see `input_pipeline.synthetic`). It
    draws the same random numbers whatever its value, and at 1.0 the arithmetic
    is skipped, so the default trajectories are bit-identical to those made
    before the parameter existed.

    Returns:
      float32 [T, 6]: yaw, pitch, roll (degrees; pitch > 0 = nod down), tx, ty
      (frame px at 288-px height), scale (multiplier).
    """
    t = num_frames
    e = normalised_loudness(audio, t, sample_rate, fps)
    e = gaussian_filter1d(e.astype(np.float64), 2.0, mode="nearest")
    delay = 3  # frames (120 ms)
    e_d = np.concatenate([np.full(delay, e[0]), e[:-delay]]) if t > delay else e
    onset = np.clip(np.gradient(e_d), 0, None) * 6.0
    a = speaker.head_motion
    yaw = 4.5 * a * _smooth_noise(rng, t, 14) + rng.uniform(-2, 2)
    pitch = 2.0 * a * _smooth_noise(rng, t, 10) + speaker.nod_gain * (e_d + onset) - 1.0
    roll = 2.0 * a * _smooth_noise(rng, t, 16) + rng.uniform(-1.5, 1.5)
    tx = 3.0 * a * _smooth_noise(rng, t, 18)
    ty = 1.5 * a * _smooth_noise(rng, t, 14) + speaker.sway_gain * e_d
    scale = 1.0 + 0.01 * a * _smooth_noise(rng, t, 20) + 0.01 * e_d
    def soft(x, m):  # smooth saturation instead of flat plateaus at the limits
        return m * np.tanh(x / m)

    poses = np.stack([
        soft(yaw, MAX_YAW), soft(pitch, MAX_PITCH), soft(roll, MAX_ROLL),
        soft(tx, 12.0), soft(ty, 8.0), 1.0 + soft(scale - 1.0, 0.05),
    ], -1)
    if head_motion_scale != 1.0:  # after every draw: the random stream is the same for any scale
        k = float(head_motion_scale)
        poses[:, :5] *= k
        poses[:, 5] = 1.0 + k * (poses[:, 5] - 1.0)
    return poses.astype(np.float32)
