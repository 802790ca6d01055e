"""Train state and optimiser shared by both stages (pure pytrees; no hidden state)."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Everything a step needs and a checkpoint stores.

    `params`/`opt_state`/`ema_params` are dicts keyed by network ("stl", or "generator" and
    "discriminator"), so both stages share this one structure. `rng` is raw key data (uint32[2]) so
    it checkpoints as a plain array.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    ema_params: Any
    rng: jax.Array


def make_optimizer(learning_rate: float, b1: float = 0.9, b2: float = 0.999,
                   grad_clip: float = 0.0) -> optax.GradientTransformation:
    """Adam (the paper: fixed learning rate 1e-4), with optional global-norm clipping."""
    parts = []
    if grad_clip and grad_clip > 0:
        parts.append(optax.clip_by_global_norm(grad_clip))
    parts.append(optax.adam(learning_rate, b1=b1, b2=b2))
    return optax.chain(*parts)


def ema_update(ema, params, decay: float):
    """Exponential moving average of parameters (returns `params` unchanged in shape)."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def select(ok, new, old):
    """`new` where the scalar `ok` is true, else `old` (the NaN guard: a bad step changes nothing)."""
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def all_finite(*trees) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
