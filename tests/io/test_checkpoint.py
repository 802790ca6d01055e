"""Checkpoints: integrity records, verified restore, fallback to the newest intact step, async failures."""

import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from thflax.io import checkpoint
from thflax.errors import CheckpointError
from thflax.training.train_state import TrainState

STEPS = (1, 2, 3)


def _state(v: int) -> TrainState:
    rng = np.random.default_rng(v)
    params = {"net": {"w": jnp.asarray(rng.standard_normal((48, 48)), jnp.float32),
                      "b": jnp.full((8,), float(v), jnp.float32)}}
    return TrainState(step=jnp.asarray(v, jnp.int32), params=params, batch_stats={"net": {"mean": jnp.ones(4)}},
                      opt_state={"net": optax.adam(1e-3).init(params["net"])},
                      ema_params=jax.tree.map(lambda x: 0.5 * x, params), rng=jnp.asarray([v, 0], jnp.uint32))


def _save_steps(directory, async_save: bool, steps=STEPS) -> str:
    ck = checkpoint.Checkpointer(str(directory), max_to_keep=5, async_save=async_save)
    for s in steps:
        ck.save(s, _state(s), {"step": s, "config": "tiny"})
        ck.check()
    ck.close()
    return str(directory)


@pytest.fixture(params=[True, False], ids=["async", "sync"])
def saved(tmp_path, request) -> str:
    return _save_steps(tmp_path / "ckpt", request.param)


def _data_file(directory: str, step: int) -> str:
    """The largest array-data file of a step (not metadata, not the integrity record)."""
    root = os.path.join(directory, str(step), "state")
    files = [os.path.join(r, f) for r, _, fs in os.walk(root) for f in fs
             if f not in {"_METADATA", "_sharding", "manifest.ocdbt", "commit_success.txt"}
             and "array_metadatas" not in r]
    return max(files, key=os.path.getsize)


def _one_line(err) -> str:
    msg = str(err.value if hasattr(err, "value") else err)
    assert msg.count("\n") == 0, msg
    assert "Traceback" not in msg
    return msg


def _assert_state_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_writes_integrity_records_and_restores(saved):
    ck = checkpoint.Checkpointer(saved, read_only=True)
    assert ck.all_steps() == list(STEPS)
    for s in STEPS:
        record = json.load(open(os.path.join(saved, str(s), checkpoint.INTEGRITY_FILE)))
        assert record["step"] == s and any(f.startswith("state/") for f in record["files"])
        assert ck.verify(s) is None
    assert ck.latest_intact_step() == 3
    state, meta = ck.restore(_state(0))
    _assert_state_equal(state, _state(3))
    assert meta == {"step": 3, "config": "tiny"}
    assert ck.restore_meta(2) == {"step": 2, "config": "tiny"}
    ck.close()


def test_truncated_data_file_is_named_and_restore_falls_back(saved):
    path = _data_file(saved, 3)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    rel = os.path.relpath(path, saved)
    ck = checkpoint.Checkpointer(saved, read_only=True)
    assert rel in ck.verify(3) and "truncated" in ck.verify(3)
    with pytest.raises(CheckpointError) as err:
        ck.restore(_state(0), step=3)
    msg = _one_line(err)
    assert rel in msg and "step 3" in msg and saved in msg
    with pytest.raises(CheckpointError) as err:  # the default step is the latest one, also verified
        ck.restore(_state(0))
    assert rel in _one_line(err)
    state, meta, step, skipped = ck.restore_latest_intact(_state(0))
    assert step == 2 and meta["step"] == 2
    _assert_state_equal(state, _state(2))
    assert [s for s, _ in skipped] == [3] and rel in skipped[0][1] and "truncated" in skipped[0][1]
    assert ck.latest_intact_step() == 2
    ck.close()


def test_random_bytes_in_data_file_keep_size_but_fail_checksum(saved):
    path = _data_file(saved, 3)
    size = os.path.getsize(path)
    n = min(4096, size)
    with open(path, "r+b") as f:
        f.seek((size - n) // 2)
        f.write(np.random.default_rng(0).bytes(n))
    assert os.path.getsize(path) == size
    ck = checkpoint.Checkpointer(saved, read_only=True)
    reason = ck.verify(3)
    assert os.path.relpath(path, saved) in reason and "sha256" in reason
    with pytest.raises(CheckpointError) as err:
        ck.restore(_state(0), step=3)
    assert "overwritten" in _one_line(err)
    with pytest.raises(CheckpointError):
        ck.restore_arrays(step=3)
    assert ck.latest_intact_step() == 2
    _, _, step, skipped = ck.restore_latest_intact(_state(0))
    assert step == 2 and skipped[0][0] == 3
    ck.close()


@pytest.mark.parametrize("with_record", [True, False])
def test_truncated_metadata_json_is_reported_as_unreadable(tmp_path, with_record):
    d = _save_steps(tmp_path / "ckpt", async_save=True, steps=(1, 2))
    if not with_record:
        os.remove(os.path.join(d, "2", checkpoint.INTEGRITY_FILE))
    meta = os.path.join(d, "2", "meta", "metadata")
    with open(meta, "r+b") as f:
        f.truncate(os.path.getsize(meta) // 2)
    ck = checkpoint.Checkpointer(d, read_only=True)
    for call in (lambda: ck.restore(_state(0)), ck.restore_meta, ck.restore_arrays):
        with pytest.raises(CheckpointError) as err:
            call()
        msg = _one_line(err)
        assert msg.startswith(f"metadata of step 2 in {d} is unreadable"), msg
        assert "different" not in msg
        if with_record:
            assert "2/meta/metadata" in msg
    _, meta_1, step, skipped = ck.restore_latest_intact(_state(0))
    assert step == 1 and meta_1["step"] == 1 and [s for s, _ in skipped] == [2]
    ck.close()


def test_truncated_orbax_tree_metadata_without_record_gives_one_line(tmp_path):
    d = _save_steps(tmp_path / "ckpt", async_save=False, steps=(1, 2))
    os.remove(os.path.join(d, "2", checkpoint.INTEGRITY_FILE))
    path = os.path.join(d, "2", "state", "_METADATA")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 3)
    ck = checkpoint.Checkpointer(d, read_only=True)
    with pytest.raises(CheckpointError) as err:
        ck.restore(_state(0))
    msg = _one_line(err)
    assert "step 2" in msg and d in msg and "does not match" not in msg
    assert ck.restore_latest_intact(_state(0))[2] == 1
    ck.close()


def test_missing_integrity_record_warns_restores_but_is_not_last_good(saved, caplog):
    os.remove(os.path.join(saved, "3", checkpoint.INTEGRITY_FILE))
    ck = checkpoint.Checkpointer(saved, read_only=True)
    assert "no integrity record" in ck.verify(3)
    with caplog.at_level(logging.WARNING):
        state, meta = ck.restore(_state(0))
    _assert_state_equal(state, _state(3))
    assert any("step 3" in r.getMessage() and "no integrity record" in r.getMessage() for r in caplog.records)
    assert ck.latest_intact_step() == 2
    _, _, step, skipped = ck.restore_latest_intact(_state(0))
    assert step == 3 and skipped == []
    ck.close()


def test_corrupt_integrity_record_is_a_broken_step(saved):
    with open(os.path.join(saved, "3", checkpoint.INTEGRITY_FILE), "w") as f:
        f.write('{"files": {"sta')
    ck = checkpoint.Checkpointer(saved, read_only=True)
    assert checkpoint.INTEGRITY_FILE in ck.verify(3)
    with pytest.raises(CheckpointError) as err:
        ck.restore(_state(0))
    assert "integrity record" in _one_line(err)
    assert ck.latest_intact_step() == 2
    ck.close()


def test_missing_file_and_no_intact_step(saved):
    ck = checkpoint.Checkpointer(saved, read_only=True)
    for s in STEPS:
        os.remove(_data_file(saved, s))
    assert "is missing" in ck.verify(1)
    assert ck.latest_intact_step() is None
    with pytest.raises(CheckpointError) as err:
        ck.restore_latest_intact(_state(0))
    msg = _one_line(err)
    assert msg.startswith(f"no intact checkpoint in {saved}") and "step 3" in msg
    ck.close()


def test_different_structure_is_a_mismatch_not_a_fallback(saved):
    other = _state(0).replace(params={"net": {"w": jnp.zeros((5, 5)), "b": jnp.zeros(8)}})
    ck = checkpoint.Checkpointer(saved, read_only=True)
    with pytest.raises(CheckpointError) as err:
        ck.restore_latest_intact(other)
    assert not isinstance(err.value, checkpoint.CorruptCheckpointError)
    assert "does not match" in _one_line(err) and "step 3" in str(err.value)
    ck.close()


def test_restore_arrays_gives_numpy_without_optimiser_state(saved):
    ck = checkpoint.Checkpointer(saved, read_only=True)
    arrays, meta = ck.restore_arrays()
    assert meta["step"] == 3
    assert "opt_state" not in arrays
    want = _state(3)
    for name in ("params", "ema_params", "batch_stats"):
        got = arrays[name]
        jax.tree.map(lambda x: isinstance(x, np.ndarray) or pytest.fail(f"{name}: {type(x)}"), got)
        _assert_state_equal(got, getattr(want, name))
        assert jax.tree.structure(got) == jax.tree.structure(getattr(want, name))
    assert int(arrays["step"]) == 3 and isinstance(arrays["rng"], np.ndarray)
    arrays, _ = ck.restore_arrays(step=1, skip=())
    assert "opt_state" in arrays and int(arrays["step"]) == 1
    ck.close()


def test_no_checkpoint_is_a_one_line_error(tmp_path):
    ck = checkpoint.Checkpointer(str(tmp_path / "empty"))
    for call in (lambda: ck.restore(_state(0)), lambda: ck.restore_latest_intact(_state(0)),
                 ck.restore_meta, ck.restore_arrays):
        with pytest.raises(CheckpointError) as err:
            call()
        assert _one_line(err).startswith("no checkpoint in")
    assert ck.latest_intact_step() is None
    assert "does not exist" in ck.verify(7)
    ck.close()


def test_max_to_keep_deletes_old_steps_with_their_records(tmp_path):
    d = str(tmp_path / "ckpt")
    ck = checkpoint.Checkpointer(d, max_to_keep=2, async_save=True)
    for s in (1, 2, 3, 4):
        ck.save(s, _state(s), {"step": s})
    ck.wait()
    assert ck.all_steps() == [3, 4] and sorted(p for p in os.listdir(d) if p.isdigit()) == ["3", "4"]
    assert ck.verify(3) is None and ck.verify(4) is None and ck.latest_intact_step() == 4
    ck.close()


def test_failed_async_save_is_reported_by_check_at_once(tmp_path, monkeypatch):
    from orbax.checkpoint._src.checkpointers import async_checkpointer

    d = str(tmp_path / "ckpt")
    ck = checkpoint.Checkpointer(d, async_save=True)
    ck.save(1, _state(1), {"step": 1})
    ck.wait()

    def failing_commit(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(async_checkpointer, "_on_commit_callback", failing_commit)
    ck.save(2, _state(2), {"step": 2})
    deadline = time.time() + 60
    with pytest.raises(CheckpointError) as err:
        while time.time() < deadline:
            ck.check()
            time.sleep(0.01)
    msg = _one_line(err)
    assert "step 2" in msg and d in msg and "No space left on device" in msg
    ck.check()  # reported once
    monkeypatch.undo()
    ck.save(3, _state(3), {"step": 3})  # training can go on after a reported failure
    ck.wait()
    assert ck.all_steps() == [1, 3] and ck.latest_intact_step() == 3
    ck.close()


def test_failed_async_save_is_raised_by_wait_and_close(tmp_path, monkeypatch):
    from orbax.checkpoint._src.checkpointers import async_checkpointer

    def failing_commit(*args, **kwargs):
        raise OSError("Input/output error")

    monkeypatch.setattr(async_checkpointer, "_on_commit_callback", failing_commit)
    ck = checkpoint.Checkpointer(str(tmp_path / "a"), async_save=True)
    ck.save(1, _state(1), {})
    with pytest.raises(CheckpointError) as err:
        ck.wait()
    assert "asynchronous save of step 1" in _one_line(err)
    ck.close()  # already reported: close does not raise it again

    ck = checkpoint.Checkpointer(str(tmp_path / "b"), async_save=True)
    ck.save(1, _state(1), {})
    with pytest.raises(CheckpointError) as err:
        ck.close()
    assert "Input/output error" in _one_line(err)

    ck = checkpoint.Checkpointer(str(tmp_path / "c"), async_save=True)
    ck.save(1, _state(1), {})
    with pytest.raises(CheckpointError) as err:
        ck.save(2, _state(2), {})  # the next save reports the previous failure instead of starting
    assert "step 1" in _one_line(err)
    ck.close()


@pytest.mark.parametrize("async_save", [True, False])
def test_failed_integrity_record_is_reported(tmp_path, monkeypatch, async_save):
    def unreadable(path):
        raise PermissionError(13, "Permission denied", path)

    ck = checkpoint.Checkpointer(str(tmp_path / "ckpt"), async_save=async_save)
    monkeypatch.setattr(checkpoint, "_sha256", unreadable)
    with pytest.raises(CheckpointError) as err:
        ck.save(1, _state(1), {})
        ck.wait()
    msg = _one_line(err)
    assert "integrity record" in msg and "step 1" in msg and "Permission denied" in msg
    monkeypatch.undo()
    assert "no integrity record" in ck.verify(1)
    ck.close()
