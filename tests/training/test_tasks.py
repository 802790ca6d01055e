"""The stage registry and each stage's task: one tiny training run per stage on in-memory batches
(flax examples' train_test.py), and the tf.data element functions on an in-memory example."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from thflax.training import parallel, tasks, trainer
from thflax.errors import InputError
from thflax.testing import random_ltv_batch, random_stl_batch

STAGES = ["stl", "ltv"]


class InMemoryData:
    """A `trainer.StageData` of random batches: the trainer needs no dataset files."""

    def __init__(self, config, stage: str, crop_size: int = 64):
        self.config, self.stage = config, stage
        self.metadata = {"name": "in_memory", "crop_size": crop_size}

    def _batch(self, i: int):
        b = int(self.config[self.stage].batch_size)
        return (random_stl_batch if self.stage == "stl" else random_ltv_batch)(self.config, b, i)

    def train(self, start_step: int = 0, num_devices=None):
        i = start_step
        while True:
            yield self._batch(i)  # a pure function of the step, as the real pipeline is
            i += 1

    def eval(self):
        return [self._batch(10_000)]


def _tiny(stage: str, steps: int = 2):
    c = tiny.get_config()
    c[stage].num_steps = steps
    c[stage].batch_size = c[stage].eval_batch_size = 2
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 1
    c.train.async_checkpoint = False
    return c


def test_registry_names_every_stage_and_refuses_others():
    assert tasks.stage_names("all") == ["stl", "ltv"]
    assert tasks.stage_names("ltv") == ["ltv"]
    with pytest.raises(InputError, match="unknown stage 'foo'"):
        tasks.stage_names("foo")
    with pytest.raises(InputError, match="unknown stage"):
        tasks.get_task(tiny.get_config(), "foo")
    for stage in STAGES:
        task = tasks.get_task(tiny.get_config(), stage)
        assert task.name == stage and task.signature()["stage"] == stage


@pytest.mark.heavy  # compiles both stages' gradients (most of test-fast's time); the same train_step under
# data_parallel is run by test_train_stage_runs_evaluates_checkpoints_and_resumes and test_parallel.py
@pytest.mark.parametrize("stage", STAGES)
def test_one_train_step_per_stage(stage):
    """flax examples' train_test.py: one step of each stage on a tiny in-memory batch."""
    config = _tiny(stage)
    task = tasks.get_task(config, stage)
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.replicate(task.init_state(jax.random.PRNGKey(0)), mesh)
    before = jax.device_get(state.params)
    batch = parallel.global_batch(InMemoryData(config, stage)._batch(0), mesh)
    state, m = parallel.data_parallel(task.train_step, mesh)(state, batch, jax.random.PRNGKey(0))
    assert int(state.step) == 1 and float(m["finite"]) == 1.0 and np.isfinite(float(m["loss"]))
    moved = [float(np.abs(np.asarray(a) - np.asarray(b)).max())
             for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params)))]
    assert max(moved) > 0


@pytest.mark.heavy
# The warp generator's training is also run by the learning tests (in CI): its variant here is `slow`.
@pytest.mark.parametrize("stage,generator", [("stl", None), ("ltv", "tiny"),
                                             pytest.param("ltv", "warp_tiny", marks=pytest.mark.slow)])
def test_train_stage_runs_evaluates_checkpoints_and_resumes(stage, generator, tmp_path):
    config = _tiny(stage)
    if generator:
        config.ltv.generator = generator
    task = tasks.get_task(config, stage)
    state = trainer.train_stage(config, str(tmp_path), task, InMemoryData(config, stage))
    assert int(state.step) == 2
    ckpts = sorted(int(p) for p in os.listdir(tmp_path / stage / "checkpoints") if p.isdigit())
    assert ckpts == [1, 2]
    # Resuming a finished run changes nothing; a longer run continues from the checkpoint.
    config[stage].num_steps = 3
    resumed = trainer.train_stage(config, str(tmp_path), tasks.get_task(config, stage), InMemoryData(config, stage))
    assert int(resumed.step) == 3
    # Another model config is refused with one line.
    other = _tiny(stage)
    if stage == "stl":
        other.stl.gru_features = 8
    else:
        other.ltv.disc_channels = 4
    with pytest.raises(InputError, match="different .* config") as e:
        trainer.train_stage(other, str(tmp_path), tasks.get_task(other, stage), InMemoryData(other, stage))
    assert "\n" not in str(e.value)


def test_ltv_refuses_data_of_another_crop_size(tmp_path):
    config = _tiny("ltv")
    with pytest.raises(InputError, match="image_size=64 but the dataset has 128x128 crops"):
        trainer.train_stage(config, str(tmp_path), tasks.get_task(config, "ltv"),
                            InMemoryData(config, "ltv", crop_size=128))


@pytest.mark.heavy
def test_ltv_generator_loss_terms_are_each_one_weighted_term():
    """Every generator term enters the loss with its config weight (no hand-written gradients)."""
    config = _tiny("ltv")
    config.ltv.gan_weight, config.ltv.mse_weight, config.ltv.l1_weight, config.ltv.mask_weight = 0, 0, 0, 1
    task = tasks.get_task(config, "ltv")
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.replicate(task.init_state(jax.random.PRNGKey(0)), mesh)
    batch = parallel.global_batch(random_ltv_batch(config, 2, 0), mesh)
    _, m = parallel.data_parallel(task.train_step, mesh, donate_state=False)(state, batch, jax.random.PRNGKey(0))
    # Only the mask term is weighted: the generator loss is the mask mean, and it has a gradient.
    np.testing.assert_allclose(float(m["loss_g"]), float(m["mask_mean"]), rtol=1e-6)
    assert float(m["grad_norm_g"]) > 0


@pytest.mark.heavy
def test_ltv_feature_matching_term_enters_the_generator_loss():
    """fm_weight alone: the generator loss is the discriminator feature-matching term, with a gradient."""
    config = _tiny("ltv")
    config.ltv.gan_weight, config.ltv.mse_weight, config.ltv.l1_weight, config.ltv.mask_weight = 0, 0, 0, 0
    config.ltv.fm_weight = 1.0
    task = tasks.get_task(config, "ltv")
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.replicate(task.init_state(jax.random.PRNGKey(0)), mesh)
    batch = parallel.global_batch(random_ltv_batch(config, 2, 0), mesh)
    _, m = parallel.data_parallel(task.train_step, mesh, donate_state=False)(state, batch, jax.random.PRNGKey(0))
    assert float(m["loss_g_fm"]) > 0
    np.testing.assert_allclose(float(m["loss_g"]), float(m["loss_g_fm"]), rtol=1e-6)
    assert float(m["grad_norm_g"]) > 0


def test_ltv_mouth_term_measures_the_lips_only():
    """mouth_weight's term: the L1 inside the target's outer lip contour, averaged over that region; a
    difference outside the lips does not enter it, one inside does, whatever the mouth's size."""
    from thflax.measures import metrics
    from thflax.testing import face_landmarks

    config = _tiny("ltv")
    config.ltv.mouth_weight = 1.0
    task = tasks.get_task(config, "ltv")
    s = int(config.ltv.image_size)
    lms = jnp.asarray(np.stack([face_landmarks(0.0), face_landmarks(1.0)]))
    lips = np.asarray(metrics.polygon_mask(lms[:, metrics.OUTER_LIP], s))[..., None]
    assert 0 < lips[0].sum() < lips[1].sum() < 0.1 * s * s  # a small region, larger when open
    target = jnp.zeros((2, s, s, 3))
    terms = lambda fake: task.g_loss_terms(fake, jnp.zeros((2, s, s, 1)), target, jnp.zeros((2, 4, 4, 1)), lms)  # noqa: E731
    assert float(terms(jnp.asarray(0.5 * (1 - lips) * np.ones((2, s, s, 3))))["mouth"]) == 0.0
    np.testing.assert_allclose(float(terms(jnp.asarray(0.5 * lips * np.ones((2, s, s, 3))))["mouth"]), 0.5, rtol=1e-6)
    config.ltv.mouth_weight = 0.0  # off: not computed
    assert "mouth" not in tasks.get_task(config, "ltv").g_loss_terms(target, target[..., :1], target,
                                                                     jnp.zeros((2, 4, 4, 1)), lms)



def test_ltv_eyes_term_covers_the_lids_open_or_closed():
    """eyes_weight's term: the L1 from brow to lower lid of both eyes, averaged over that region. The
    region keeps its area when the eyes close (so a closed lid is scored), and a difference outside it
    (the mouth) does not enter the term."""
    from thflax.face import eyes
    from thflax.measures import metrics
    from thflax.testing import face_landmarks

    config = _tiny("ltv")
    config.ltv.eyes_weight = 1.0
    task = tasks.get_task(config, "ltv")
    s = int(config.ltv.image_size)
    open_lm = np.asarray(face_landmarks(0.0))
    lms = jnp.asarray(np.stack([open_lm, eyes.close_eyes(open_lm, 1.0)]).astype(np.float32))
    region = lambda lm: sum(np.asarray(metrics.polygon_mask(lm[:, list(r)], s))  # noqa: E731
                            for r in (eyes.RIGHT_LID_REGION, eyes.LEFT_LID_REGION))
    area = region(lms).reshape(2, -1).sum(-1)
    assert 0 < area[1] and area[1] > 0.6 * area[0] and area[0] < 0.15 * s * s
    lids = np.minimum(region(lms), 1.0)[..., None]
    lips = np.asarray(metrics.polygon_mask(lms[:, metrics.OUTER_LIP], s))[..., None]
    target = jnp.zeros((2, s, s, 3))
    terms = lambda fake: task.g_loss_terms(fake, jnp.zeros((2, s, s, 1)), target, jnp.zeros((2, 4, 4, 1)), lms)  # noqa: E731
    assert float(terms(jnp.asarray(0.5 * lips * np.ones((2, s, s, 3))))["eyes"]) == 0.0
    np.testing.assert_allclose(float(terms(jnp.asarray(0.5 * lids * np.ones((2, s, s, 3))))["eyes"]), 0.5, rtol=1e-6)
    config.ltv.eyes_weight = 0.0  # off: not computed
    assert "eyes" not in tasks.get_task(config, "ltv").g_loss_terms(target, target[..., :1], target,
                                                                    jnp.zeros((2, 4, 4, 1)), lms)

def _example(frames: int = 12, size: int = 64):
    import tensorflow as tf

    r = np.random.default_rng(0)
    jpeg = [tf.io.encode_jpeg(r.integers(0, 255, (size, size, 3), dtype=np.uint8)).numpy() for _ in range(frames)]
    raw = (0.5 + r.normal(0, 0.1, (frames, 68, 2))).astype(np.float32)
    return {"landmarks": tf.constant(raw + 0.01),  # "smoothed": apart from the raw track
            "landmarks_raw": tf.constant(raw),
            "mfcc": tf.constant(r.normal(size=(frames, 20, 20)).astype(np.float32)),
            "frames": tf.constant(jpeg)}


@pytest.mark.parametrize("stage,train,count", [("stl", True, 1), ("ltv", True, 2), ("ltv", False, 1)])
def test_elements_are_deterministic_in_the_seed_and_shaped(stage, train, count):
    import tensorflow as tf

    config = tiny.get_config()
    task = tasks.get_task(config, stage)
    assert task.elements_per_example(train) == count
    ex = _example()
    seed = tf.constant([3, 4], tf.int64)
    a = {k: v.numpy() for k, v in task.elements(ex, seed, train).items()}
    b = {k: v.numpy() for k, v in task.elements(ex, seed, train).items()}
    c = {k: v.numpy() for k, v in task.elements(ex, tf.constant([3, 5], tf.int64), train).items()}
    for k in a:
        assert a[k].shape[0] == count
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    if stage == "stl":
        assert a["mfcc"].shape == (1, config.stl.clip_len, 20, 20) and a["mask"].shape == (1, config.stl.clip_len)
        assert a["mask"][0, :12].all() and not a["mask"][0, 12:].any()  # 12 frames < clip_len 16: padded
        # The template is a frame's unsmoothed landmarks (as generation's photo), never the smoothed track.
        raw, smoothed = ex["landmarks_raw"].numpy(), ex["landmarks"].numpy()
        assert any(np.array_equal(a["template"][0], f) for f in raw)
        assert not any(np.array_equal(a["template"][0], f) for f in smoothed)
    else:
        assert a["reference"].shape == (count, 64, 64, 3) and a["landmarks"].shape == (count, 68, 2)
        # reference and target are different frames of the utterance
        assert not np.array_equal(a["landmarks"], a["ref_landmarks"])


def test_closed_eye_share_moves_that_share_of_targets_to_closed_eye_frames():
    import tensorflow as tf

    from thflax.face import eyes
    from thflax.synthetic.base_face import base_landmarks

    # 40 frames of one face, eyes closed in frames 10-12 and a quarter closed in 13.
    closure = np.zeros(40, np.float32)
    closure[10:13], closure[13] = 1.0, 0.25
    lm = eyes.close_eyes(np.repeat(base_landmarks()[None], 40, axis=0), closure).astype(np.float32)
    closed = {10, 11, 12}
    ratio = eyes.eye_aspect_ratio(lm)
    assert {t for t in range(40) if ratio[t] < eyes.CLOSED_EAR_FRACTION * np.median(ratio)} == closed
    target = tf.constant(np.arange(40, dtype=np.int32) % 9 + 20)  # 40 pairs, none on a closed frame
    seed = tf.constant([7, 8], tf.int64)
    from thflax.training.ltv_stage import closed_eye_targets

    def moved(share):
        out = closed_eye_targets(tf.constant(lm), target, share, seed).numpy()
        kept = out == target.numpy()
        assert set(out[~kept]) <= closed  # every target that moved went to a closed-eye frame
        return (~kept).mean()

    assert moved(1.0) == 1.0 and moved(0.0) == 0.0 and 0.05 < moved(0.25) < 0.5
    # An utterance without a closed eye keeps its targets.
    still = tf.constant(np.repeat(lm[:1], 40, axis=0))
    np.testing.assert_array_equal(closed_eye_targets(still, target, 1.0, seed).numpy(), target.numpy())
    # Off (the default), the LTV stream's targets are the uniform ones; on, only some of them change.
    config = tiny.get_config()
    ex = {**_example(40), "landmarks": tf.constant(lm)}
    off = tasks.get_task(config, "ltv").elements(ex, seed, True)
    config.ltv.closed_eye_share = 1.0
    on = tasks.get_task(config, "ltv").elements(ex, seed, True)
    assert not np.array_equal(off["target"].numpy(), on["target"].numpy())
    assert all(eyes.eye_aspect_ratio(f) < eyes.CLOSED_EAR_FRACTION * np.median(ratio) for f in on["landmarks"].numpy())


@pytest.mark.heavy
def test_training_resumes_from_the_newest_intact_checkpoint(tmp_path, caplog):
    """A damaged newest checkpoint is skipped (and said so); training goes on from the one before."""
    import logging

    config = _tiny("stl")
    trainer.train_stage(config, str(tmp_path), tasks.get_task(config, "stl"), InMemoryData(config, "stl"))
    step2 = tmp_path / "stl" / "checkpoints" / "2"
    data = max((p for p in step2.rglob("*") if p.is_file() and "d" in p.parent.name), key=lambda p: p.stat().st_size)
    with open(data, "r+b") as f:  # overwrite part of an array file in place (size unchanged)
        f.seek(0)
        f.write(os.urandom(64))
    config.stl.num_steps = 3
    with caplog.at_level(logging.WARNING):
        state = trainer.train_stage(config, str(tmp_path), tasks.get_task(config, "stl"), InMemoryData(config, "stl"))
    assert int(state.step) == 3
    assert any("skipped checkpoint step 2" in r.getMessage() for r in caplog.records), caplog.text
