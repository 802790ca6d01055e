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
    """An utterance whose frame f is a flat grey of 4·f and whose MFCC window of frame f holds f."""
    import tensorflow as tf

    jpeg = [tf.io.encode_jpeg(np.full((size, size, 3), 4 * f, np.uint8)).numpy() for f in range(frames)]
    mfcc = np.repeat(np.arange(frames, dtype=np.float32)[:, None, None], 20, 1).repeat(20, 2)
    return {"frames": tf.constant(jpeg), "mfcc": tf.constant(mfcc)}


def test_windows_pair_frames_with_their_audio_and_a_shifted_one():
    import tensorflow as tf

    config = tiny.get_config()
    task = tasks.get_task(config, "syncnet")
    assert task.elements_per_example(True) == config.syncnet.windows_per_example
    ex = _example(60)
    out = {k: v.numpy() for k, v in task.elements(ex, tf.constant([3, 4], tf.int64), True).items()}
    again = {k: v.numpy() for k, v in task.elements(ex, tf.constant([3, 4], tf.int64), True).items()}
    other = {k: v.numpy() for k, v in task.elements(ex, tf.constant([3, 5], tf.int64), True).items()}
    p = config.syncnet.windows_per_example
    assert out["frames"].shape == (p, 5, 64, 64, 3) and out["audio"].shape == (p, config.syncnet.n_mfcc, 20)
    for k in out:
        np.testing.assert_array_equal(out[k], again[k])
    assert not np.array_equal(out["shift"], other["shift"])
    first = np.round(out["frames"][:, :, 0, 0, 0] / 4.0).astype(int)  # the frame indices, read back
    np.testing.assert_array_equal(first, first[:, :1] + np.arange(5))  # 5 consecutive frames
    np.testing.assert_array_equal(out["audio"][:, 0, 0], first[:, 2])  # in sync: the middle frame's window
    np.testing.assert_array_equal(out["audio_shifted"][:, 0, 0], first[:, 2] + out["shift"])
    shifts = np.abs(out["shift"])
    assert (shifts >= config.syncnet.min_shift).all() and (shifts <= config.syncnet.max_shift).all()
    centres = out["audio_shifted"][:, 0, 0]
    assert (centres >= 2).all() and (centres <= 60 - 3).all()  # the shifted window lies inside the utterance
    assert out["mask"].all()


def test_an_utterance_too_short_to_shift_is_masked_out():
    import tensorflow as tf

    task = tasks.get_task(tiny.get_config(), "syncnet")
    out = task.elements(_example(8), tf.constant([1, 2], tf.int64), True)
    assert not out["mask"].numpy().any()


def test_contrastive_loss_pulls_in_sync_and_pushes_shifted_pairs_to_the_margin():
    import jax.numpy as jnp

    d_sync, d_shifted = jnp.array([0.0, 1.0, 0.0]), jnp.array([3.0, 3.0, 0.5])
    np.testing.assert_allclose(syncnet_stage.contrastive_terms(d_sync, d_shifted, 2.0), [0.0, 0.5, 0.5 * 1.5 ** 2])


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
    c.syncnet.lip_channels = c.syncnet.audio_channels = (4, 8, 8, 8, 8, 8)
    c.syncnet.fc_features, c.syncnet.embed_features = 8, 8
    c.syncnet.num_steps = steps
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
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["rank_accuracy"] <= 1 and metrics["windows"] == 2
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
    frames, mfcc = batch["frames"][0].repeat(4, 0), np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32)
    assert from_workdir.measure(frames, mfcc=mfcc) == from_bundle.measure(frames, mfcc=mfcc)
    with pytest.raises(CheckpointError, match="has no stl parameters"):
        networks.load_models(str(bundle))
    with pytest.raises(InputError, match="holds no lip-sync expert"):
        lip_sync_expert.load_expert(str(tmp_path / "syncnet"))


def test_expert_is_a_stage_of_its_own_not_part_of_all():
    assert tasks.stage_names("syncnet") == ["syncnet"]
    assert "syncnet" not in tasks.stage_names("all")
    assert tasks.get_task(tiny.get_config(), "syncnet").signature()["stage"] == "syncnet"
