"""Pixel-range conversions shared by training, evaluation and generation.

Networks see images in [-1, 1]; files, datasets and metrics use uint8 [0, 255].
"""

from __future__ import annotations

import jax.numpy as jnp


def to_unit(images) -> jnp.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1] (any shape)."""
    return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def to_uint8(images) -> jnp.ndarray:
    """float [-1, 1] -> float32 in [0, 255], rounded like a saved frame (metrics are computed on these)."""
    return jnp.round(jnp.clip((images + 1.0) * 127.5, 0.0, 255.0))
