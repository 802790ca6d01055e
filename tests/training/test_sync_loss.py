"""The expert sync loss of the LTV stage (thflax/training/sync_loss.py, `config.ltv.sync_weight`): its windows in
the tf.data elements, its agreement with the LSE measure's preprocessing, where its gradient goes, one train
step with it, and its refusals."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from tests.training.test_tasks import _example
from thflax.errors import CheckpointError, InputError
from thflax.face import sketch
from thflax.measures import lip_sync_expert
from thflax.models import build
from thflax.testing import random_ltv_batch
from thflax.training import ltv_stage, parallel, sync_loss, tasks


def _expert_config():
    c = tiny.get_config()
    c.syncnet.lip_channels = c.syncnet.audio_channels = (8, 8, 8, 8, 8, 8)  # GroupNorm: groups of 8
    c.syncnet.fc_features, c.syncnet.embed_features = 8, 8
    return c


@pytest.fixture(scope="module")
def expert_bundle(tmp_path_factory) -> str:
    """An export bundle holding a tiny, randomly initialised expert for 64x64 crops (configs/tiny.py)."""
    from thflax.inference import params

    config = _expert_config()
    out = str(tmp_path_factory.mktemp("expert") / "bundle")
    params.export_variables(config, {"syncnet": build.init_syncnet(config, jax.random.PRNGKey(1))}, out,
                            source="random")
    return out


def _config(expert: str, steps: int = 1):
    c = _expert_config()
    c.ltv.sync_weight, c.ltv.sync_expert = 0.3, expert
    c.ltv.num_steps, c.ltv.batch_size = steps, 2
    return c


def _elements(config, example, seed=(3, 4)):
    import tensorflow as tf

    task = tasks.get_task(config, "ltv")
    return {k: v.numpy() for k, v in task.elements(example, tf.constant(seed, tf.int64), True).items()}


def test_the_stream_without_the_sync_loss_is_unchanged_and_with_it_only_gains_windows(expert_bundle):
    ex = _example(frames=40)
    off = tiny.get_config()
    plain = _elements(off, ex)
    assert sorted(plain) == ["landmarks", "ref_landmarks", "reference", "target"]
    on = _elements(_config(expert_bundle), ex)
    assert set(on) - set(plain) == {"sync_landmarks", "sync_mfcc", "sync_valid"}
    for k in plain:  # the same pairs: the windows take no random draw
        np.testing.assert_array_equal(on[k], plain[k])
    # Held-out elements never carry windows (the loss is a training term).
    import tensorflow as tf

    held_out = tasks.get_task(_config(expert_bundle), "ltv").elements(ex, tf.constant([3, 4], tf.int64), False)
    assert "sync_mfcc" not in held_out


def test_the_windows_are_the_frames_around_the_target_and_their_speech(expert_bundle):
    config = _config(expert_bundle)
    m = int(config.syncnet.max_shift)
    for frames in (40, 12):  # 12: every window reaches past the utterance's ends
        ex = _example(frames=frames)
        lms, mfcc = ex["landmarks"].numpy(), ex["mfcc"].numpy()
        for seed in ((3, 4), (5, 6), (7, 8)):
            out = _elements(config, ex, seed)
            assert out["sync_landmarks"].shape == (2, 5, 68, 2) and out["sync_mfcc"].shape == (2, 2 * m + 1, 20, 20)
            for p in range(2):
                target = int(np.flatnonzero((lms == out["landmarks"][p]).all((1, 2)))[0])
                start = min(max(target - 2, 0), frames - 5)
                np.testing.assert_array_equal(out["sync_landmarks"][p], lms[start:start + 5])
                idx = start + 2 + np.arange(-m, m + 1)
                inside = (idx >= 0) & (idx < frames)
                np.testing.assert_array_equal(out["sync_valid"][p], inside.astype(np.float32))
                np.testing.assert_array_equal(out["sync_mfcc"][p][inside], mfcc[idx[inside]])
                np.testing.assert_array_equal(out["sync_mfcc"][p][m], mfcc[start + 2])  # the window's own speech


def test_the_loss_reads_frames_and_speech_as_the_lse_measure_does(expert_bundle):
    """-log P(in sync) recomputed from the measure's own embeddings (`lip_sync_expert.Expert`, which pairs window
    v with MFCC window v + 2) equals the loss on the same uint8 frames: same region, resize, pairing."""
    expert = lip_sync_expert.load_expert(expert_bundle)
    r = np.random.default_rng(0)
    t, m, min_shift, v = 40, 15, 3, 17  # the window at v..v+4 with all its shifts inside the video
    frames = r.integers(0, 255, (t, 64, 64, 3), dtype=np.uint8)
    mfcc = r.normal(size=(t, 20, 20)).astype(np.float32)
    video = expert.embed_video(frames)[v]  # [E]
    audio = expert._chunked(expert._audio_fn, expert.audio_windows(t, mfcc))  # [t - 5, E], window w <-> MFCC w + 2
    shifts = np.arange(-m, m + 1)
    keep = (shifts == 0) | (np.abs(shifts) >= min_shift)
    d = np.linalg.norm(video[None] - audio[v + shifts[keep]], axis=-1)
    logits = np.concatenate([-d, [-np.linalg.norm(video)]])
    top = logits.max()
    want = top + np.log(np.sum(np.exp(logits - top))) - logits[int(np.flatnonzero(shifts[keep] == 0)[0])]

    unit = jnp.asarray(frames[v:v + 5][None], jnp.float32) / 127.5 - 1.0
    got = sync_loss.sync_loss(expert, unit, jnp.asarray(mfcc[v + 2 + shifts][None]), jnp.ones((1, 2 * m + 1)),
                              min_shift)
    np.testing.assert_allclose(float(got[0]), want, rtol=2e-4, atol=2e-4)
    # Shifted speech as the "in sync" audio gives another value: the middle window is the answer.
    moved = sync_loss.sync_loss(expert, unit, jnp.asarray(np.roll(mfcc[v + 2 + shifts], 5, axis=0)[None]),
                                jnp.ones((1, 2 * m + 1)), min_shift)
    assert abs(float(moved[0]) - float(got[0])) > 1e-4


@pytest.mark.heavy  # compiles the generator's gradient (~25 s on 2 busy cores)
def test_the_gradient_reaches_the_generator_and_never_the_expert(expert_bundle):
    config = _config(expert_bundle)
    task = tasks.get_task(config, "ltv")
    batch = random_ltv_batch(config, 2, 0)
    ref = jnp.asarray(batch["reference"], jnp.float32) / 127.5 - 1.0
    gp = task.init_state(jax.random.PRNGKey(0)).params[ltv_stage.G]
    sk = sketch.draw_sketch(jnp.asarray(batch["landmarks"]), 64)
    grad = jax.grad(lambda p: task.sync_term(task.generate_with_windows(p, ref, batch, sk)[2], batch))(gp)
    norms = [float(jnp.abs(g).max()) for g in jax.tree.leaves(grad)]
    assert all(np.isfinite(norms)) and max(norms) > 0

    frames = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 5, 64, 64, 3)), jnp.float32)

    def of_expert(variables):
        return jnp.sum(sync_loss.sync_loss(dataclasses.replace(task.expert, variables=variables), frames,
                                           batch["sync_mfcc"], batch["sync_valid"], 3))

    expert_grad = jax.grad(of_expert)(task.expert.variables)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(expert_grad))


@pytest.mark.heavy  # compiles the generator's and discriminator's gradients with the expert in the step
def test_one_train_step_with_the_sync_loss_is_finite_and_reports_it(expert_bundle):
    config = _config(expert_bundle)
    task = tasks.get_task(config, "ltv")
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.replicate(task.init_state(jax.random.PRNGKey(0)), mesh)
    batch = parallel.global_batch(random_ltv_batch(config, 2, 0), mesh)
    state, m = parallel.data_parallel(task.train_step, mesh)(state, batch, jax.random.PRNGKey(0))
    assert int(state.step) == 1 and float(m["finite"]) == 1.0
    assert np.isfinite(float(m["loss_g_sync"])) and float(m["loss_g_sync"]) > 0
    assert set(jax.device_get(state.params)) == {ltv_stage.G, ltv_stage.D}  # the expert is no part of the state


def test_a_sync_weight_without_a_fitting_expert_is_refused_in_one_line(expert_bundle, tmp_path):
    from thflax.inference import params

    def refused(config, error):
        with pytest.raises(error) as e:
            tasks.get_task(config, "ltv")
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "sync_expert" in refused(_config(""), InputError)
    assert "not found" in refused(_config(str(tmp_path / "nowhere")), InputError)
    assert "no lip-sync expert" in refused(_config(str(tmp_path)), InputError)
    bigger = _config(expert_bundle)
    bigger.ltv.image_size = 128  # the expert read 64x64 crops
    assert "128px" in refused(bigger, CheckpointError)
    other = _expert_config()  # an expert of another mouth region
    other.syncnet.region = (0.2, 0.5, 0.8, 0.9)
    out = str(tmp_path / "other")
    params.export_variables(other, {"syncnet": build.init_syncnet(other, jax.random.PRNGKey(2))}, out)
    assert "region" in refused(_config(out), CheckpointError)
    off = _config("")
    off.ltv.sync_weight = 0.0  # off: no expert needed, none loaded
    assert tasks.get_task(off, "ltv").expert is None


def test_the_training_stream_keeps_its_batches_with_the_sync_loss_on(tiny_config, expert_bundle):
    """Through the tf.data pipeline (shuffle, unbatch, batch, resume): the stream with the option on has the
    batches of the stream with it off, step for step, plus the windows."""
    from input_pipeline import pipeline

    off = tiny.get_config()
    off.data = tiny_config.data
    on = _config(expert_bundle)
    on.data, on.ltv.batch_size = tiny_config.data, off.ltv.batch_size
    builder = pipeline.get_builder(off.data)
    for start in (0, 3):
        plain = pipeline.as_numpy(pipeline.train_dataset(off, tasks.get_task(off, "ltv"), builder, num_devices=1,
                                                         start_step=start))
        with_windows = pipeline.as_numpy(pipeline.train_dataset(on, tasks.get_task(on, "ltv"), builder,
                                                                num_devices=1, start_step=start))
        for _ in range(3):
            x, y = next(plain), next(with_windows)
            assert set(y) - set(x) == {"sync_landmarks", "sync_mfcc", "sync_valid"}
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])
            assert (y["sync_landmarks"] == y["landmarks"][:, None]).all((2, 3)).any(1).all()  # target in its window
