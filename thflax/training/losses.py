"""Losses of the paper: wing loss for landmarks (eq. 7), BCE GAN losses and image MSE (eq. 10).

Every loss returns per-element values (no reduction) so callers can mask padded frames and normalise
by the *global* count across devices, which keeps data-parallel training identical to one device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def wing_loss(x, w: float = 10.0, eps: float = 2.0):
    """Eq. 7, elementwise: w·ln(1 + |x|/ε) if |x| < w else |x| − C, with C = w − w·ln(1 + w/ε).

    C makes the two pieces meet at |x| = w (both equal w·ln(1 + w/ε)); the slope is w/(ε + |x|) inside
    and 1 outside, which also agree at |x| = w only when ε = 0 — the paper's loss has a kink in its
    slope there (w/(ε+w) = 10/12 vs 1 for w=10, ε=2) but is continuous in value. x is in pixels of a
    256×256 face crop (see `thflax.models.stl`).
    """
    ax = jnp.abs(x)
    c = w - w * jnp.log1p(w / eps)
    return jnp.where(ax < w, w * jnp.log1p(ax / eps), ax - c)


def mse(x):
    """Squared error, elementwise (the paper's comparison for landmarks; image MSE in eq. 10)."""
    return jnp.square(x)


def landmark_loss(x, kind: str = "wing", w: float = 10.0, eps: float = 2.0):
    """Elementwise landmark loss by name: "wing" (the paper) or "mse"."""
    if kind == "wing":
        return wing_loss(x, w, eps)
    if kind == "mse":
        return mse(x)
    if kind == "l1":
        return jnp.abs(x)
    raise ValueError(f"unknown landmark loss {kind!r}")


def d_loss(real_logits, fake_logits):
    """L_d: BCE of the discriminator, real -> 1, fake -> 0 (mean over patches)."""
    real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
    fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    return jnp.mean(real) + jnp.mean(fake)


def feature_matching(fake_features, real_features):
    """Mean over layers of the L1 distance between the discriminator's activations on the generated
    and on the real image (pix2pixHD); no gradient flows into the real side."""
    terms = [jnp.mean(jnp.abs(f - jax.lax.stop_gradient(r))) for f, r in zip(fake_features, real_features)]
    return sum(terms) / len(terms)


def g_loss(fake_logits):
    """L_g: non-saturating BCE of the generator, fake -> 1 (mean over patches)."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))
