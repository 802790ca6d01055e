"""The lip-sync expert's stage (thflax/training/syncnet_stage.py): its tf.data windows (alignment, shifts),
its loss, a tiny training run through the shared loop (checkpoints, resume, another config refused)."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from configs import tiny
from thflax.errors import InputError
from thflax.testing import random_syncnet_batch
from thflax.training import syncnet_stage, tasks, trainer


def _example(frames: int, size: int = 64):
    """An utterance whose frame f is a flat grey of 4·f (f < 64) and whose MFCC window of frame f holds f."""
    import tensorflow as tf

    jpeg = [tf.io.encode_jpeg(np.full((size, size, 3), 4 * f, np.uint8)).numpy() for f in range(frames)]
    mfcc = np.repeat(np.arange(frames, dtype=np.float32)[:, None, None], 20, 1).repeat(20, 2)
    return {"frames": tf.constant(jpeg), "mfcc": tf.constant(mfcc)}


def test_clips_pair_each_frame_with_its_audio_window():
    import tensorflow as tf

    config = tiny.get_config()
    task = tasks.get_task(config, "syncnet")
    assert task.elements_per_example(True) == 1
    length = config.syncnet.clip_frames
    ex = _example(60)
    out = {k: v.numpy() for k, v in task.elements(ex, tf.constant([3, 4], tf.int64), True).items()}
    again = {k: v.numpy() for k, v in task.elements(ex, tf.constant([3, 4], tf.int64), True).items()}
    other = {k: v.numpy() for k, v in task.elements(ex, tf.constant([3, 5], tf.int64), True).items()}
    assert out["frames"].shape == (1, length, 64, 64, 3) and out["audio"].shape == (1, length, config.syncnet.n_mfcc, 20)
    for k in out:
        np.testing.assert_array_equal(out[k], again[k])
    index = np.round(out["frames"][0, :, 0, 0, 0] / 4.0).astype(int)  # the frame numbers, read back
    assert not np.array_equal(index, np.round(other["frames"][0, :, 0, 0, 0] / 4.0).astype(int))
    np.testing.assert_array_equal(index, index[0] + np.arange(length))  # consecutive frames
    np.testing.assert_array_equal(out["audio"][0, :, 0, 0], index)  # each with its own MFCC window
    assert out["valid"].all()


def test_a_clip_longer_than_its_utterance_marks_the_repeated_frames():
    import tensorflow as tf

    task = tasks.get_task(tiny.get_config(), "syncnet")
    out = task.elements(_example(30), tf.constant([1, 2], tf.int64), True)
    valid = out["valid"].numpy()[0]
    assert valid[:30].all() and not valid[30:].any()


def test_candidates_are_the_in_sync_audio_and_shifts_of_at_least_min_shift():
    allowed, target = syncnet_stage.candidates(40, 8, 3, 15)
    np.testing.assert_array_equal(target, [2, 7, 12, 17, 22, 27, 32, 37])  # each window's middle frame
    shifts = np.arange(40)[None, :] - target[:, None]
    assert (np.abs(shifts[allowed]) <= 15).all()
    assert set(np.abs(shifts[allowed]).tolist()) == {0} | set(range(3, 16))
    assert allowed[np.arange(8), target].all()
    assert allowed[4].sum() == 1 + 2 * 13  # a window in the middle: all 26 shifts and the in-sync audio


def test_multiway_loss_is_low_when_the_in_sync_audio_is_nearest():
    import jax.numpy as jnp

    allowed, target = syncnet_stage.candidates(12, 2, 2, 15)
    rng = np.random.default_rng(0)
    audio = jnp.asarray(rng.normal(size=(1, 12, 8)))
    synced = audio[:, target]  # [1, W, E]: each window's embedding is its in-sync audio's
    ce, d = syncnet_stage.multiway_terms(synced, audio, jnp.asarray(allowed)[None], target)
    assert d.shape == (1, 2, 12)
    np.testing.assert_allclose(np.asarray(d)[0, np.arange(2), target], 0.0, atol=1e-5)
    wrong = audio[:, target + 4]
    ce_wrong, _ = syncnet_stage.multiway_terms(wrong, audio, jnp.asarray(allowed)[None], target)
    assert float(ce.mean()) < float(ce_wrong.mean())
    # Candidates left out (closer than min_shift) do not enter the softmax, however near they are.
    near = audio[:, target + 1]
    ce_near, _ = syncnet_stage.multiway_terms(near, audio, jnp.asarray(allowed)[None], target)
    assert np.isfinite(np.asarray(ce_near)).all()


def test_refuses_data_it_cannot_align_and_bad_shifts():
    task = tasks.get_task(tiny.get_config(), "syncnet")
    task.check_data({"fps": 25.0, "hop_seconds": 0.01, "mfcc_window": 20, "n_mfcc": 20})
    with pytest.raises(InputError, match="30 fps"):
        task.check_data({"fps": 30.0, "hop_seconds": 0.01, "mfcc_window": 20, "n_mfcc": 20})
    with pytest.raises(InputError, match="n_mfcc=13 but the dataset has 12"):
        task.check_data({"fps": 25.0, "hop_seconds": 0.01, "mfcc_window": 20, "n_mfcc": 12})
    config = tiny.get_config()
    config.syncnet.min_shift = 20
    with pytest.raises(InputError, match="min_shift <= max_shift"):
        tasks.get_task(config, "syncnet")
    config = tiny.get_config()
    config.syncnet.clip_frames = 6
    with pytest.raises(InputError, match="clip_frames=6 leaves no shifted audio"):
        tasks.get_task(config, "syncnet")


class InMemoryData:
    """Random expert batches (a pure function of the step, as the real pipeline)."""

    metadata = {"name": "in_memory", "crop_size": 64, "fps": 25.0}

    def __init__(self, config):
        self.config = config

    def train(self, start_step: int = 0, num_devices=None):
        i = start_step
        while True:
            yield random_syncnet_batch(self.config, int(self.config.syncnet.batch_size), i)
            i += 1

    def eval(self):
        return [random_syncnet_batch(self.config, int(self.config.syncnet.eval_batch_size), 10_000)]


def _tiny(steps: int = 2):
    c = tiny.get_config()
    c.syncnet.lip_channels = c.syncnet.audio_channels = (8, 8, 8, 8, 8, 8)  # GroupNorm: groups of 8
    c.syncnet.fc_features, c.syncnet.embed_features = 8, 8
    c.syncnet.num_steps = steps
    c.syncnet.clip_frames, c.syncnet.windows_per_clip = 12, 2
    c.syncnet.batch_size = c.syncnet.eval_batch_size = 2
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 1
    c.train.async_checkpoint = False
    return c


@pytest.mark.heavy  # compiles the expert's gradient
def test_expert_trains_evaluates_checkpoints_resumes_and_refuses_another_config(tmp_path):
    config = _tiny()
    task = tasks.get_task(config, "syncnet")
    before = jax.device_get(task.init_state(jax.random.PRNGKey(int(config.seed))).params)
    state = trainer.train_stage(config, str(tmp_path), task, InMemoryData(config))
    assert int(state.step) == 2
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params))))
    assert moved > 0
    assert sorted(int(p) for p in os.listdir(tmp_path / "syncnet" / "checkpoints") if p.isdigit()) == [1, 2]
    metrics = syncnet_stage.validation_metrics(task, state, InMemoryData(config))
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["rank_accuracy"] <= 1 and metrics["windows"] == 4
    config.syncnet.num_steps = 3
    assert int(trainer.train_stage(config, str(tmp_path), tasks.get_task(config, "syncnet"),
                                   InMemoryData(config)).step) == 3
    other = _tiny()
    other.syncnet.embed_features = 4
    with pytest.raises(InputError, match="different syncnet config"):
        trainer.train_stage(other, str(tmp_path), tasks.get_task(other, "syncnet"), InMemoryData(other))

    # Exported like the other stages: a workdir of the expert alone gives a bundle of the expert alone, which
    # measures as the workdir does and which generation refuses in one line.
    from thflax.errors import CheckpointError
    from thflax.inference import networks, params
    from thflax.measures import lip_sync_expert

    bundle = tmp_path / "bundle"
    info = params.export(str(tmp_path), str(bundle))
    assert list(info["signatures"]) == ["syncnet"]
    from_workdir, from_bundle = lip_sync_expert.load_expert(str(tmp_path)), lip_sync_expert.load_expert(str(bundle))
    assert "trained here" in from_workdir.name and not from_bundle.public and from_bundle.crop_size == 64
    batch = random_syncnet_batch(config, 1, 7)
    frames, mfcc = batch["frames"][0], np.random.default_rng(0).normal(size=(12, 20, 20)).astype(np.float32)
    assert from_workdir.measure(frames, mfcc=mfcc) == from_bundle.measure(frames, mfcc=mfcc)
    with pytest.raises(CheckpointError, match="has no stl parameters"):
        networks.load_models(str(bundle))
    with pytest.raises(InputError, match="holds no lip-sync expert"):
        lip_sync_expert.load_expert(str(tmp_path / "syncnet"))


def test_expert_is_a_stage_of_its_own_not_part_of_all():
    assert tasks.stage_names("syncnet") == ["syncnet"]
    assert "syncnet" not in tasks.stage_names("all")
    assert tasks.get_task(tiny.get_config(), "syncnet").signature()["stage"] == "syncnet"
