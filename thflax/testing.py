"""Random in-memory train batches for tests and benchmarks (numpy only: no TensorFlow, no dataset).

The batches have the keys, shapes and dtypes of the tf.data pipelines' train batches, with values
that look like data (landmarks near the crop centre, uint8 images), but carry no signal: use them
where only shapes, determinism or speed matter, e.g. 1-vs-N-device equivalence or steps/s.

`rng` is a seed or a `np.random.Generator`; the same seed gives the same batch.
"""

from __future__ import annotations

import numpy as np

from thflax.geometry import NUM_POINTS


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
    "ref_landmarks" = landmarks + 0.01}.
    """
    r = np.random.default_rng(rng)
    b, s = batch_size, int(config.ltv.image_size)
    landmarks = (0.5 + r.normal(0, 0.1, (b, NUM_POINTS, 2))).astype(np.float32)
    return {"reference": r.integers(0, 255, (b, s, s, 3), dtype=np.uint8),
            "target": r.integers(0, 255, (b, s, s, 3), dtype=np.uint8),
            "landmarks": landmarks, "ref_landmarks": landmarks + 0.01}


__all__ = ["random_stl_batch", "random_ltv_batch"]
