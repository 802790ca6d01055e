"""Helpers for tests and benchmarks: random in-memory train batches (numpy only: no TensorFlow, no dataset), a task wrapper.

The batches have the keys, shapes and dtypes of the tf.data pipelines' train batches, with values
that look like data (landmarks near the crop centre, uint8 images), but carry no signal: use them
where only shapes, determinism or speed matter, e.g. 1-vs-N-device equivalence or steps/s.

`rng` is a seed or a `np.random.Generator`; the same seed gives the same batch.
"""

from __future__ import annotations

import numpy as np

from thflax.face.points import NUM_POINTS


def random_stl_batch(config, batch_size: int, rng: int | np.random.Generator = 0, *,
                     landmark_noise: float = 0.02) -> dict[str, np.ndarray]:
    """A random STL batch shaped by `config.stl` (clip_len, mfcc_window, n_mfcc).

    Returns {"mfcc" [B, L, W, n_mfcc], "template" [B, 68, 2], "landmarks" [B, L, 68, 2] (the template
    plus Gaussian noise of std `landmark_noise`), "mask" [B, L] all ones}, all float32.
    """
    r = np.random.default_rng(rng)
    c = config.stl
    b, t = batch_size, c.clip_len
    template = (0.5 + r.normal(0, 0.1, (b, NUM_POINTS, 2))).astype(np.float32)
    mfcc = r.normal(size=(b, t, c.mfcc_window, c.n_mfcc)).astype(np.float32)
    landmarks = (template[:, None] + r.normal(0, landmark_noise, (b, t, NUM_POINTS, 2))).astype(np.float32)
    return {"mfcc": mfcc, "template": template, "landmarks": landmarks, "mask": np.ones((b, t), np.float32)}


def random_ltv_batch(config, batch_size: int, rng: int | np.random.Generator = 0) -> dict[str, np.ndarray]:
    """A random LTV batch at `config.ltv.image_size` S.

    Returns {"reference", "target": uint8 [B, S, S, 3], "landmarks" [B, 68, 2] float32,
    "ref_landmarks" = landmarks + 0.01}; with `config.ltv.sync_weight` > 0 also the sync loss's windows
    (`thflax.training.ltv_stage.sync_windows`): "sync_landmarks" [B, 5, 68, 2], "sync_mfcc" [B, L, 20, 20]
    and "sync_valid" [B, L] all ones, L = 2·config.syncnet.max_shift + 1.
    """
    r = np.random.default_rng(rng)
    b, s = batch_size, int(config.ltv.image_size)
    landmarks = (0.5 + r.normal(0, 0.1, (b, NUM_POINTS, 2))).astype(np.float32)
    batch = {"reference": r.integers(0, 255, (b, s, s, 3), dtype=np.uint8),
             "target": r.integers(0, 255, (b, s, s, 3), dtype=np.uint8),
             "landmarks": landmarks, "ref_landmarks": landmarks + 0.01}
    if config.ltv.sync_weight:
        length = 2 * int(config.syncnet.max_shift) + 1
        batch["sync_landmarks"] = (landmarks[:, None] + r.normal(0, 0.01, (b, 5, NUM_POINTS, 2))).astype(np.float32)
        batch["sync_mfcc"] = r.normal(size=(b, length, 20, 20)).astype(np.float32)
        batch["sync_valid"] = np.ones((b, length), np.float32)
    return batch


def face_landmarks(open_mouth: float = 0.0, centre=(0.5, 0.5), scale: float = 0.26) -> np.ndarray:
    """A 68-point face-like layout (dlib order) in normalised coordinates, [68, 2] float32, its mouth
    opened by `open_mouth` (0 = closed, 1 = wide): for warp tests and benchmarks."""
    p = np.zeros((68, 2))
    t = np.linspace(0, np.pi, 17)
    p[0:17] = np.stack([-np.cos(t), -0.15 + 1.05 * np.sin(t)], -1)  # jaw
    arch = -0.55 - 0.08 * np.sin(np.linspace(0, np.pi, 5))
    p[17:22] = np.stack([np.linspace(-0.8, -0.2, 5), arch], -1)
    p[22:27] = np.stack([np.linspace(0.2, 0.8, 5), arch], -1)
    p[27:31] = np.stack([np.zeros(4), np.linspace(-0.4, 0.05, 4)], -1)
    p[31:36] = np.stack([np.linspace(-0.18, 0.18, 5), 0.12 + 0.04 * np.sin(np.linspace(0, np.pi, 5))], -1)
    a6 = np.linspace(0, 2 * np.pi, 7)[:-1] + np.pi
    for base, cx in ((36, -0.4), (42, 0.4)):
        p[base:base + 6] = np.stack([cx + 0.16 * np.cos(a6), -0.33 + 0.06 * np.sin(a6)], -1)
    a12 = np.linspace(0, 2 * np.pi, 13)[:-1] + np.pi
    p[48:60] = np.stack([0.38 * np.cos(a12), 0.42 + 0.13 * np.sin(a12)], -1)
    a8 = np.linspace(0, 2 * np.pi, 9)[:-1] + np.pi
    p[60:68] = np.stack([0.26 * np.cos(a8), 0.42 + 0.02 * np.sin(a8)], -1)
    lower = np.sin(a8) > 1e-6
    drop = open_mouth * 0.25
    p[60:68][lower, 1] += drop * np.sin(a8[lower])
    p[55:60, 1] += drop * 0.9
    p[4:13, 1] += drop * np.array([0.08, 0.25, 0.5, 0.72, 0.8, 0.72, 0.5, 0.25, 0.08])
    return (np.asarray(centre) + scale * p).astype(np.float32)


def median_seconds(fn, args: tuple, repeats: int) -> float:
    """Median wall time of `fn(*args)` over `repeats` runs after one warm-up (JAX work awaited)."""
    import statistics
    import time

    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


__all__ = ["face_landmarks", "median_seconds", "random_ltv_batch", "random_stl_batch"]


def random_syncnet_batch(config, batch_size: int, rng: int | np.random.Generator = 0,
                         crop_size: int = 64) -> dict[str, np.ndarray]:
    """A random lip-sync expert batch of `batch_size` clips shaped by `config.syncnet` (clip_frames, n_mfcc)
    at `crop_size`.

    Returns {"frames" uint8 [B, L, S, S, 3], "audio" float32 [B, L, n_mfcc, 20], "valid" float32 [B, L] all
    ones}.
    """
    r = np.random.default_rng(rng)
    b, n, length = batch_size, int(config.syncnet.n_mfcc), int(config.syncnet.clip_frames)
    return {"frames": r.integers(0, 256, (b, length, crop_size, crop_size, 3), dtype=np.uint8),
            "audio": r.normal(size=(b, length, n, 20)).astype(np.float32),
            "valid": np.ones((b, length), np.float32)}


class AllFeatures:
    """A stage's task without `features`: the input pipeline then parses every feature of a record, as it
    did before stages named theirs (the loader benchmark's "before", and the test that parsing fewer
    features leaves the stream unchanged)."""

    def __init__(self, task):
        self._task = task

    def __getattr__(self, name):
        if name == "features":
            raise AttributeError(name)
        return getattr(self._task, name)
