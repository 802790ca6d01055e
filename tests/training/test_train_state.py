"""Tests of the train state's pure helpers (thflax/training/train_state.py): the EMA, the NaN guard and
gradient clipping, on hand-made pytrees (no network)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from thflax.training import train_state


def test_ema_update_is_the_weighted_mean_per_leaf() -> None:
    """decay·ema + (1-decay)·params on every leaf of a nested tree; decay 1 keeps the EMA, 0 copies."""
    ema = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(10.0)}}
    params = {"a": jnp.array([3.0, 6.0]), "b": {"c": jnp.array(0.0)}}
    out = train_state.ema_update(ema, params, 0.75)
    np.testing.assert_allclose(out["a"], [1.5, 3.0])
    np.testing.assert_allclose(out["b"]["c"], 7.5)
    np.testing.assert_allclose(train_state.ema_update(ema, params, 1.0)["a"], ema["a"])
    np.testing.assert_allclose(train_state.ema_update(ema, params, 0.0)["a"], params["a"])


def test_select_and_all_finite_make_a_bad_step_change_nothing() -> None:
    old = {"w": jnp.ones(3)}
    bad = {"w": jnp.array([1.0, jnp.nan, 2.0])}
    ok = train_state.all_finite(bad)
    assert not bool(ok) and bool(train_state.all_finite(old, {"x": jnp.zeros(2)})) and bool(train_state.all_finite())
    np.testing.assert_array_equal(train_state.select(ok, bad, old)["w"], old["w"])
    np.testing.assert_array_equal(train_state.select(jnp.array(True), bad, old)["w"], bad["w"])
    assert not bool(train_state.all_finite({"w": jnp.array(jnp.inf)}))


def test_make_optimizer_clips_the_global_norm_only_when_asked() -> None:
    """A gradient of norm 10 then the same direction at norm 1: clipped to norm 1, Adam sees the same
    gradient twice and makes the same step twice; unclipped, the small second gradient moves less (Adam's
    moments remember the large first one)."""
    params = {"w": jnp.zeros(2)}
    big, small = {"w": jnp.array([6.0, 8.0])}, {"w": jnp.array([0.6, 0.8])}

    def two_steps(opt: optax.GradientTransformation) -> tuple[np.ndarray, np.ndarray]:
        state = opt.init(params)
        first, state = opt.update(big, state, params)
        second, _ = opt.update(small, state, params)
        return np.asarray(first["w"]), np.asarray(second["w"])

    c1, c2 = two_steps(train_state.make_optimizer(0.1, grad_clip=1.0))
    np.testing.assert_allclose(c2, c1, rtol=1e-5)
    p1, p2 = two_steps(train_state.make_optimizer(0.1))
    assert np.all(np.abs(p2) < 0.9 * np.abs(p1))
    np.testing.assert_allclose(two_steps(train_state.make_optimizer(0.1, grad_clip=0.0))[1], p2)  # 0: no clipping
