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


@pytest.mark.heavy  # builds and compiles a tiny STL net three times
def test_the_models_head_gain_scales_as_head_motion_does_and_old_configs_read_1():
    from thflax.inference import params
    from thflax.models import build

    c = tiny.get_config()
    variables = build.init_stl(c, jax.random.PRNGKey(0))
    variables = jax.tree.map(lambda x: x + 0.5 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), variables)
    plain = networks.Models(c, build_stl(c), variables, None, None)
    gained_config = tiny.get_config()
    gained_config.stl.head_gain = 2.0
    gained = networks.Models(gained_config, build_stl(gained_config), variables, None, None)
    assert networks.head_scale(plain) == 1.0 and networks.head_scale(gained) == 2.0
    assert networks.head_scale(gained, head_motion=0.5) == 1.0 and networks.head_scale(gained, still=True) == 0.0
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(12, c.stl.mfcc_window, c.stl.n_mfcc)).astype(np.float32)
    tmpl = np.clip(0.5 + rng.normal(0, 0.15, (68, 2)), 0, 1).astype(np.float32)
    run = lambda m, **kw: np.concatenate(list(networks.predict_landmarks(m, windows, tmpl, chunk=5, **kw)))  # noqa: E731
    untouched = run(plain)
    np.testing.assert_array_equal(run(gained), run(plain, head_motion=2.0))  # the gain is the default scale
    np.testing.assert_array_equal(run(gained, head_motion=0.5), untouched)  # --head_motion is relative to it
    assert np.abs(run(gained) - untouched)[:, :48].max() > 3e-3  # the gain moved the head
    # A config saved before the gain existed reads as 1 (laid over the schema), so old models are unchanged.
    saved = tiny.get_config().to_dict()
    del saved["stl"]["head_gain"]
    assert params.config_from_json(saved).stl.head_gain == 1.0
