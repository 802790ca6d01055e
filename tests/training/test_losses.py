import jax
import jax.numpy as jnp
import numpy as np
import pytest

from thflax.training import losses


def test_wing_loss_hand_values():
    w, eps = 10.0, 2.0
    c = w - w * np.log(1 + w / eps)  # = 10 - 10 ln 6 = -7.9176
    x = jnp.array([0.0, 1.0, -2.0, 9.99, 10.0, 15.0, -20.0])
    expected = [0.0, 10 * np.log(1.5), 10 * np.log(2.0), 10 * np.log(1 + 9.99 / 2), 10 - c, 15 - c, 20 - c]
    np.testing.assert_allclose(losses.wing_loss(x), expected, rtol=1e-5)
    assert abs(c - (-7.917594692)) < 1e-6


def test_wing_loss_is_continuous_at_w():
    below = losses.wing_loss(jnp.array(10.0 - 1e-4))
    above = losses.wing_loss(jnp.array(10.0 + 1e-4))
    assert abs(float(above - below)) < 1e-3  # value continuous: both pieces equal w ln(1 + w/ε) at w


def test_wing_loss_gradient_at_w_matches_the_papers_formula():
    """The slope is w/(ε + |x|) inside and 1 outside: at |x| = w that is 10/12 vs 1.

    Eq. 7 is continuous in value but not in slope (the kink is part of the paper's definition,
    C only matches values); we check both one-sided derivatives so a change to the loss shows up.
    """
    g = jax.vmap(jax.grad(losses.wing_loss))
    inside = g(jnp.array([9.999, -9.999]))
    outside = g(jnp.array([10.001, -10.001]))
    np.testing.assert_allclose(inside, [10 / 11.999, -10 / 11.999], rtol=1e-4)
    np.testing.assert_allclose(outside, [1.0, -1.0], rtol=1e-6)
    # Smooth everywhere else, and larger than MSE's gradient for small errors (why the paper uses it).
    assert float(jax.grad(losses.wing_loss)(0.5)) > float(jax.grad(losses.mse)(0.5))


def test_landmark_loss_selects_kind():
    x = jnp.array([3.0])
    np.testing.assert_allclose(losses.landmark_loss(x, "mse"), [9.0])
    np.testing.assert_allclose(losses.landmark_loss(x, "wing"), losses.wing_loss(x))
    with pytest.raises(ValueError):
        losses.landmark_loss(x, "huber")


def test_gan_losses():
    big = jnp.full((2, 4, 4, 1), 20.0)
    assert float(losses.d_loss(big, -big)) < 1e-6  # perfect discriminator
    assert abs(float(losses.d_loss(jnp.zeros(3), jnp.zeros(3))) - 2 * np.log(2)) < 1e-6
    assert float(losses.g_loss(big)) < 1e-6 and float(losses.g_loss(-big)) > 10


def test_feature_matching_is_mean_layer_l1_without_gradient_to_the_real_side():
    import jax

    from thflax.training import losses

    real = [jnp.ones((2, 4, 4, 3)), jnp.zeros((2, 2, 2, 5))]
    fake = [jnp.full((2, 4, 4, 3), 3.0), jnp.full((2, 2, 2, 5), -1.0)]
    assert float(losses.feature_matching(real, real)) == 0.0
    np.testing.assert_allclose(float(losses.feature_matching(fake, real)), (2.0 + 1.0) / 2)
    g_real = jax.grad(lambda r: losses.feature_matching(fake, r))(real)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in g_real)
    g_fake = jax.grad(lambda f: losses.feature_matching(f, real))(fake)
    assert all(float(jnp.abs(g).max()) > 0.0 for g in g_fake)
