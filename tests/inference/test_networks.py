"""thflax.inference.networks: the STL predictor's head-motion scale on a small untrained (perturbed) STL."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from thflax.face import geometry
from thflax.inference import networks
from thflax.models.build import build_stl


@pytest.mark.heavy  # six compilations of the STL net (~20 s on 2 busy cores)
def test_head_motion_scale_0_is_still_1_is_untouched_2_doubles():
    model = build_stl(tiny.get_config())
    rng = np.random.default_rng(0)
    mfcc = rng.normal(size=(1, 10, 20, 20)).astype(np.float32)
    tmpl = np.clip(0.5 + rng.normal(0, 0.15, (1, 68, 2)), 0, 1).astype(np.float32)
    variables = model.init(jax.random.PRNGKey(0), mfcc, tmpl)
    # Non-zero output layers (they start at zero: the template), so the head moves.
    variables = jax.tree.map(lambda x: x + 0.5 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), variables)
    run = lambda **kw: np.asarray(networks.stl_predictor(model, **kw)(variables, mfcc, tmpl)[0])  # noqa: E731
    default, still = run(), run(still=True)
    np.testing.assert_array_equal(run(head_motion=1.0), default)  # bit for bit: the option changes nothing
    np.testing.assert_array_equal(run(head_motion=0.0), still)
    np.testing.assert_array_equal(run(still=True, head_motion=2.0), still)  # still wins
    np.testing.assert_array_equal(still[..., :48, :], np.broadcast_to(tmpl[:, None, :48], still[..., :48, :].shape))
    moved = default[..., :48, :] - tmpl[:, None, :48]
    assert np.abs(moved).max() > 3e-3  # not a trivial comparison (~1 px of a 256-px crop)
    double = run(head_motion=2.0)
    np.testing.assert_allclose(double[..., :48, :] - tmpl[:, None, :48], 2 * moved, atol=1e-5)
    # The lips keep the prediction's shape: a similarity transform of the calibrated mouth.
    mouth = geometry.calibrate_mouth(default)[..., 1:, :]
    a, b = geometry.similarity_fit(mouth, double[..., 48:, :])
    np.testing.assert_allclose(geometry.similarity_apply(a, b, mouth), double[..., 48:, :], atol=1e-5)
    names = {networks.predictor_name(), networks.predictor_name(still=True), networks.predictor_name(head_motion=0.0),
             networks.predictor_name(head_motion=2.0), networks.predictor_name(head_motion=0.5)}
    assert networks.predictor_name(head_motion=0.0) == networks.predictor_name(still=True)
    assert networks.predictor_name(head_motion=1.0) == networks.predictor_name() == "stl_still=False"
    assert len(names) == 4
