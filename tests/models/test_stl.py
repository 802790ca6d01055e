import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from thflax.face import geometry
from thflax.models import stl
from thflax.inference.networks import stl_predictor
from thflax.models.build import build_stl
from thflax.training.stl_stage import STLTask


def _inputs(b=2, t=12, seed=0):
    rng = np.random.default_rng(seed)
    mfcc = rng.normal(size=(b, t, 20, 20)).astype(np.float32)
    tmpl = np.clip(0.5 + rng.normal(0, 0.15, (b, 68, 2)), 0, 1).astype(np.float32)
    return mfcc, tmpl


@pytest.mark.parametrize("split", [True, False])
def test_shapes_and_zero_init_equals_template(split):
    cfg = tiny.get_config()
    cfg.stl.split = split
    model = build_stl(cfg)
    mfcc, tmpl = _inputs()
    variables = model.init(jax.random.PRNGKey(0), mfcc, tmpl)
    out, carry = model.apply(variables, mfcc, tmpl)
    assert out["landmarks"].shape == (2, 12, 68, 2)
    if split:
        assert out["mouth"].shape == (2, 12, 21, 2) and out["head"].shape == (2, 12, 50, 2)
        assert set(carry) == {"lip", "head"}
    else:
        assert out["full"].shape == (2, 12, 68, 2) and set(carry) == {"full"}
    # Offsets start at zero, so the untrained model predicts the template (the trivial baseline).
    np.testing.assert_allclose(out["landmarks"], np.broadcast_to(tmpl[:, None], (2, 12, 68, 2)), atol=1e-4)


@pytest.mark.heavy
def test_chunked_inference_equals_one_pass():
    cfg = tiny.get_config()
    model = build_stl(cfg)
    mfcc, tmpl = _inputs(b=1, t=30)
    variables = model.init(jax.random.PRNGKey(0), mfcc, tmpl)
    # Non-zero head weights so the output depends on the GRU state.
    variables = jax.tree.map(lambda x: x + 0.1 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), variables)
    predict = stl_predictor(model)
    full, _ = predict(variables, mfcc, tmpl)
    parts, carry = [], None
    for s in range(0, 30, 7):
        y, carry = predict(variables, mfcc[:, s:s + 7], tmpl, carry)
        parts.append(y)
    np.testing.assert_allclose(np.concatenate(parts, 1), full, atol=1e-5)
    assert np.abs(np.asarray(full) - tmpl[:, None]).max() > 1e-3  # the comparison is not trivial


def test_targets_round_trip_through_merge():
    _, tmpl = _inputs(b=3)
    t = stl.targets(tmpl)
    back = geometry.merge(t["mouth"], t["head"]) / stl.LANDMARK_SCALE
    np.testing.assert_allclose(back, tmpl, atol=1e-5)


def test_lip_branch_uses_template_in_gru_and_head_branch_after():
    cfg = tiny.get_config()
    cfg.stl.head_lip_state = "none"  # the paper's branches (the default's head also reads the lip GRU)
    variables = build_stl(cfg).init(jax.random.PRNGKey(0), *_inputs())
    p = variables["params"]
    g = cfg.stl.gru_features
    # eq. 4: GRU input = audio (64) + template (32); eq. 5: GRU input = audio only.
    lip_in = p["lip"]["gru"]["ir"]["kernel"].shape[0]
    head_in = p["head"]["gru"]["ir"]["kernel"].shape[0]
    assert lip_in == cfg.stl.audio_features + cfg.stl.template_features
    assert head_in == cfg.stl.audio_features
    assert p["head"]["head"]["kernel"].shape == (g + cfg.stl.template_features, 100)
    assert p["lip"]["head"]["kernel"].shape == (g, 42)


@pytest.mark.heavy
def test_train_step_reduces_loss_on_a_fixed_batch():
    from thflax.training import parallel

    cfg = tiny.get_config()
    cfg.stl.learning_rate = 3e-3
    task = STLTask(cfg)
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.replicate(task.init_state(jax.random.PRNGKey(0)), mesh)
    mfcc, tmpl = _inputs(b=4, t=16)
    # A learnable target: the lower lip and jaw drop in proportion to the frame's mean MFCC.
    drop = 0.03 * np.tanh(5 * mfcc.mean((2, 3)))  # [b, t], up to ±7.7 px at 256
    lm = np.broadcast_to(tmpl[:, None], (4, 16, 68, 2)).copy()
    lm[:, :, 55:60, 1] += drop[..., None]
    lm[:, :, 5:12, 1] += drop[..., None]
    batch = parallel.global_batch({"mfcc": mfcc, "template": tmpl, "landmarks": lm,
                                   "mask": np.ones((4, 16), np.float32)}, mesh)
    step = parallel.data_parallel(task.train_step, mesh)
    losses = []
    for i in range(40):
        state, m = step(state, batch, jax.random.PRNGKey(i))
        losses.append(float(m["loss"]))
    assert int(state.step) == 40 and losses[-1] < 0.6 * losses[0], losses


@pytest.mark.heavy
def test_ema_tracks_parameters_when_enabled():
    from thflax.training import parallel

    cfg = tiny.get_config()
    cfg.stl.ema_decay = 0.5
    cfg.stl.learning_rate = 1e-2
    task = STLTask(cfg)
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.replicate(task.init_state(jax.random.PRNGKey(0)), mesh)
    mfcc, tmpl = _inputs(b=2, t=8)
    lm = np.broadcast_to(tmpl[:, None], (2, 8, 68, 2)) + 0.02
    batch = parallel.global_batch({"mfcc": mfcc, "template": tmpl, "landmarks": lm.astype(np.float32),
                                   "mask": np.ones((2, 8), np.float32)}, mesh)
    p0 = jax.device_get(state.params["stl"]["lip"]["head"]["bias"])
    state, _ = parallel.data_parallel(task.train_step, mesh)(state, batch, jax.random.PRNGKey(0))
    p1 = np.asarray(state.params["stl"]["lip"]["head"]["bias"])
    ema = np.asarray(state.ema_params["stl"]["lip"]["head"]["bias"])
    np.testing.assert_allclose(ema, 0.5 * p0 + 0.5 * p1, atol=1e-6)
    assert np.abs(p1 - p0).max() > 0


def test_head_branch_options_change_only_the_head_branch_and_the_signature_when_set():
    """head_audio "lip"/"lip_frozen": the head branch builds no speech encoder of its own (it reads the lip
    branch's); head_template_in_gru: its GRU reads the template too. Off (the paper), the signature is the
    one checkpoints saved before the options existed carry."""
    from thflax.models import build

    cfg = tiny.get_config()
    cfg.stl.head_lip_state = "none"  # the paper's head branch
    paper = build_stl(cfg).init(jax.random.PRNGKey(0), *_inputs())["params"]
    assert set(build.signature(cfg, "stl")) == {"stage", "split", "audio_channels", "audio_features",
                                                "template_features", "gru_features", "mfcc_window", "n_mfcc"}
    for audio in ("lip", "lip_frozen"):
        cfg.stl.head_audio = audio
        p = build_stl(cfg).init(jax.random.PRNGKey(0), *_inputs())["params"]
        assert "AudioEncoder_0" in p["lip"] and "AudioEncoder_0" not in p["head"]
        assert jax.tree.map(np.shape, p["lip"]) == jax.tree.map(np.shape, paper["lip"])
        assert build.signature(cfg, "stl")["head_audio"] == audio
    cfg.stl.head_audio = "own"
    cfg.stl.head_template_in_gru = True
    p = build_stl(cfg).init(jax.random.PRNGKey(0), *_inputs())["params"]
    assert p["head"]["gru"]["ir"]["kernel"].shape[0] == cfg.stl.audio_features + cfg.stl.template_features
    assert p["head"]["head"]["kernel"].shape == (cfg.stl.gru_features, 100)  # nothing concatenated after it
    assert build.signature(cfg, "stl")["head_template_in_gru"] is True
    cfg.stl.head_audio = "both"
    with pytest.raises(ValueError, match="unknown head_audio"):
        build_stl(cfg).init(jax.random.PRNGKey(0), *_inputs())


@pytest.mark.heavy
def test_frozen_lip_audio_gets_no_gradient_from_the_head_and_velocity_term_is_reported():
    """head_audio "lip_frozen": the head's loss leaves the lip branch's encoder alone ("lip": it trains it);
    velocity_weight: the train step reports the head-motion term, 0 when it is off."""
    from thflax.training import parallel

    mfcc, tmpl = _inputs(b=2, t=8)
    lm = np.broadcast_to(tmpl[:, None], (2, 8, 68, 2)).copy()
    lm[:, :, :48] += 0.01 * np.sin(np.arange(8))[None, :, None, None]  # a moving head, still lips
    for audio, moved in (("lip_frozen", False), ("lip", True)):
        cfg = tiny.get_config()
        cfg.stl.head_audio = audio
        model = build_stl(cfg)
        variables = model.init(jax.random.PRNGKey(0), mfcc, tmpl)
        # Non-zero output layers, so that gradients reach the encoders.
        params = jax.tree.map(lambda x: x + 0.1 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), variables["params"])

        def head_loss(p):
            (out, _), _ = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, mfcc, tmpl,
                                      train=True, mutable=["batch_stats"])
            return jnp.mean((out["head"] - stl.targets(lm)["head"]) ** 2)

        g = jax.grad(head_loss)(params)["lip"]["AudioEncoder_0"]
        norm = float(sum(jnp.abs(x).sum() for x in jax.tree.leaves(g)))
        assert (norm > 0) == moved, (audio, norm)
    cfg = tiny.get_config()
    cfg.stl.velocity_weight = 1.0
    task = STLTask(cfg)
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.replicate(task.init_state(jax.random.PRNGKey(0)), mesh)
    batch = parallel.global_batch({"mfcc": mfcc, "template": tmpl, "landmarks": lm.astype(np.float32),
                                   "mask": np.ones((2, 8), np.float32)}, mesh)
    _, m = parallel.data_parallel(task.train_step, mesh)(state, batch, jax.random.PRNGKey(0))
    # The untrained net predicts the still template: its motion error is the target's motion itself.
    assert float(m["loss_velocity"]) > 0
    np.testing.assert_allclose(float(m["loss"]), float(m["loss_mouth"] + m["loss_head"] + m["loss_velocity"]),
                               rtol=1e-5)


def test_head_reading_the_lip_state_changes_only_its_output_layer_and_frozen_keeps_the_lips_the_papers():
    """head_lip_state "lip"/"lip_frozen": the head's output layer reads the lip GRU's output beside its own
    (and the template): only that layer's input widens. "lip_frozen": the head's loss sends no gradient
    into the lip branch (the lips train as in the paper's split net); "lip": it does. A config saved before
    the option existed is read as the paper's ("none"), whatever today's default."""
    from thflax.inference import params as params_lib
    from thflax.models import build

    mfcc, tmpl = _inputs(b=2, t=8)
    cfg = tiny.get_config()
    cfg.stl.head_lip_state = "none"
    paper = build_stl(cfg).init(jax.random.PRNGKey(0), mfcc, tmpl)["params"]
    lm = np.broadcast_to(tmpl[:, None], (2, 8, 68, 2)).copy()
    lm[:, :, :17] += 0.01 * np.sin(np.arange(8))[None, :, None, None]  # a moving jaw line (head branch)
    for state, reaches_lips in (("lip_frozen", False), ("lip", True)):
        cfg.stl.head_lip_state = state
        model = build_stl(cfg)
        variables = model.init(jax.random.PRNGKey(0), mfcc, tmpl)
        p = variables["params"]
        assert jax.tree.map(np.shape, p["lip"]) == jax.tree.map(np.shape, paper["lip"])
        widened = cfg.stl.gru_features + cfg.stl.template_features + cfg.stl.gru_features
        assert p["head"]["head"]["kernel"].shape == (widened, 100)
        assert paper["head"]["head"]["kernel"].shape == (widened - cfg.stl.gru_features, 100)
        assert build.signature(cfg, "stl")["head_lip_state"] == state
        # Non-zero output layers, so that gradients reach the GRUs.
        params = jax.tree.map(lambda x: x + 0.1 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), p)

        def head_loss(q):
            (out, _), _ = model.apply({"params": q, "batch_stats": variables["batch_stats"]}, mfcc, tmpl,
                                      train=True, mutable=["batch_stats"])
            return jnp.mean((out["head"] - stl.targets(lm)["head"]) ** 2)

        g = jax.grad(head_loss)(params)
        lip_norm = float(sum(jnp.abs(x).sum() for x in jax.tree.leaves(g["lip"])))
        assert (lip_norm > 0) == reaches_lips, (state, lip_norm)
        assert float(jnp.abs(g["head"]["head"]["kernel"][-cfg.stl.gru_features:]).sum()) > 0  # it is read
    cfg.stl.head_lip_state = "both"
    with pytest.raises(ValueError, match="unknown head_lip_state"):
        build_stl(cfg).init(jax.random.PRNGKey(0), mfcc, tmpl)
    saved = tiny.get_config().to_dict()
    del saved["stl"]["head_lip_state"]
    assert params_lib.config_from_json(saved).stl.head_lip_state == "none"
    saved["stl"]["head_lip_state"] = "lip"
    assert params_lib.config_from_json(saved).stl.head_lip_state == "lip"
