"""The evaluation protocol has no leak from the scored frames, and training never reads `test` (issue #14).

* The reference of an evaluated utterance (crop box, reference crop, template) is a function of frame 0
  alone, computed as generation computes it from a photo; the template is dlib's unsmoothed landmarks.
* train / validation / test are disjoint; for the identity config no held-out identity is in train or
  validation.
* Training (StageData, the configs) reads train and validation only.
* Each row's lip-sync figures: tests/measures/test_evaluation.py.

All but the last test run on arrays and item lists (no corpus); that one uses the session's tiny
dataset that the input-pipeline tests build anyway.
"""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest

from input_pipeline import builder_base, preprocess
from thflax import testing
from thflax.errors import InputError

H, W, T, S = 120, 160, 12, 64


def _clip(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A moving "head": frames [T, H, W, 3] uint8 (noise) and landmarks [T, 68, 2] in frame pixels that
    drift right and grow, with dlib-like jitter."""
    r = np.random.default_rng(seed)
    frames = r.integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    face = testing.face_landmarks(scale=0.2).astype(np.float64)  # [68, 2] normalised
    lm = np.stack([(face * (1 + 0.02 * t) + [0.45 + 0.01 * t, 0.5]) * [W, H] for t in range(T)])
    lm += r.normal(0, 0.4, lm.shape)
    return frames, lm.astype(np.float32)


def _prep(box: str) -> preprocess.PrepConfig:
    return preprocess.PrepConfig(crop_size=S, box=box)


def _reference(out: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What evaluation takes from an example: crop box, reference crop, template."""
    return out["crop_box"], out["frames"][0], out["landmarks_raw"][0]


def _later_frames_changed(frames: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames 1… with other pixels and the head moved and turned: frame 0 untouched."""
    frames2, lm2 = frames.copy(), lm.copy()
    frames2[1:] = 255 - frames2[1:]
    lm2[1:] = (lm2[1:] - lm2[1:].mean(axis=1, keepdims=True)) * 1.3 + lm2[1:].mean(axis=1, keepdims=True) + [15, -8]
    return frames2, lm2


def test_eval_reference_comes_from_frame_0_alone():
    frames, lm = _clip()
    cfg = _prep(preprocess.BOX_REFERENCE)
    base = preprocess.crop_clip(frames, lm, cfg)
    assert base["frames"].shape == (T, S, S, 3) and base["landmarks_raw"].shape == (T, 68, 2)
    changed = preprocess.crop_clip(*_later_frames_changed(frames, lm), cfg)
    for a, b in zip(_reference(base), _reference(changed)):
        np.testing.assert_array_equal(a, b)
    # The later frames themselves did change (so the test could fail), and so did the smoothed
    # frame 0: the old template mixed in frames 1-4.
    assert not np.array_equal(base["frames"][1:], changed["frames"][1:])
    assert not np.allclose(base["landmarks"][0], changed["landmarks"][0], atol=1e-4)
    # Changing frame 0 changes all three.
    frames0, lm0 = frames.copy(), lm.copy()
    frames0[0] = 255 - frames0[0]
    lm0[0] += np.random.default_rng(5).normal(0, 2.0, (68, 2))  # moved and reshaped (a shift alone keeps the template)
    moved = preprocess.crop_clip(frames0, lm0, cfg)
    for a, b in zip(_reference(base), _reference(moved)):
        assert not np.array_equal(a, b)


def test_train_crop_box_uses_the_whole_clip():
    """The per-clip box kept for training does depend on later frames (what evaluation must avoid)."""
    frames, lm = _clip()
    cfg = _prep(preprocess.BOX_CLIP)
    base = preprocess.crop_clip(frames, lm, cfg)
    changed = preprocess.crop_clip(*_later_frames_changed(frames, lm), cfg)
    assert not np.allclose(base["crop_box"], changed["crop_box"])


def test_eval_reference_is_what_generation_makes_of_frame_0_as_a_photo():
    from thflax.measures import evaluation
    from thflax.inference import photo

    frames, lm = _clip(1)
    out = preprocess.crop_clip(frames, lm, _prep(preprocess.BOX_REFERENCE))
    ref = photo.prepare_reference("frame0.png", S, face=(frames[0], lm[0]))
    np.testing.assert_array_equal(out["crop_box"], np.array([ref.box.x0, ref.box.y0, ref.box.side], np.float32))
    np.testing.assert_array_equal(out["frames"][0], ref.crop)
    np.testing.assert_array_equal(out["landmarks_raw"][0], ref.template)
    # Evaluation accepts such an example and refuses one framed over the clip, or without raw landmarks.
    evaluation.check_reference_framing(out)
    with pytest.raises(InputError, match="not framed from its first frame alone"):
        evaluation.check_reference_framing(preprocess.crop_clip(frames, lm, _prep(preprocess.BOX_CLIP)))
    with pytest.raises(InputError, match="prepared by an older version"):
        evaluation.check_reference_framing({k: v for k, v in out.items() if k != "landmarks_raw"})


def _keys(part) -> set[str]:
    return {it.key for it in part}


def _assert_disjoint(parts) -> None:
    assert set(parts) == set(preprocess.SPLITS)
    for i, a in enumerate(preprocess.SPLITS):
        for b in preprocess.SPLITS[i + 1:]:
            assert not _keys(parts[a]) & _keys(parts[b]), (a, b)


def test_utterance_and_speaker_splits_are_disjoint_and_validation_is_not_empty():
    # The tiny config's corpus: 2 speakers x 6 utterances -> 4 / 1 / 1 each.
    tiny = [preprocess.Item(f"s{s}", f"u{u}", "x") for s in (1, 2) for u in range(6)]
    parts = preprocess.split_items(tiny)
    _assert_disjoint(parts)
    assert {k: len(v) for k, v in parts.items()} == {"train": 8, "validation": 2, "test": 2}
    # GRID-like by speaker: the test speaker is in no other split; validation from the others.
    items = [preprocess.Item(f"s{s}", f"u{u}", "x") for s in range(1, 6) for u in range(30)]
    parts = preprocess.split_items(items, by="speaker", test_speakers=("s3",))
    _assert_disjoint(parts)
    assert {it.speaker for it in parts["test"]} == {"s3"}
    assert {it.speaker for it in parts["validation"]} == {it.speaker for it in parts["train"]} == {"s1", "s2", "s4", "s5"}
    assert len(parts["validation"]) == 4 * 3
    # Few utterances: a speaker keeps one to train on before giving any to validation.
    few = preprocess.split_items([preprocess.Item("a", f"u{u}", "x") for u in range(2)])
    assert [len(few[k]) for k in preprocess.SPLITS] == [1, 0, 1]


def test_identity_split_keeps_held_out_identities_in_test_only():
    from input_pipeline import synthetic
    from thflax.synthetic import corpus

    ids = {"astronaut": ["astronaut"], "obama": ["obama", "obama2"], "biden": ["biden"], "carol": ["carol/1"]}
    for seed in range(4):
        plans = corpus.plan_people(seed, 12, ids, ("biden",))
        manifest = {"speakers": {f"s{k}": {"identities": list(p["identities"])} for k, p in enumerate(plans, 1)}}
        # A speaker morphing a held-out and a training identity (a corpus made without --holdout).
        manifest["speakers"]["s13"] = {"identities": ["biden", "obama"]}
        items = [preprocess.Item(spk, f"u{u}", "x") for spk in manifest["speakers"] for u in range(30)]
        parts = synthetic.identity_splits(items, manifest, ("biden",))
        _assert_disjoint(parts)
        ident = {spk: set(d["identities"]) for spk, d in manifest["speakers"].items()}
        for split in ("train", "validation"):
            assert parts[split] and not any("biden" in ident[it.speaker] for it in parts[split]), split
        assert parts["test"] and all(ident[it.speaker] == {"biden"} for it in parts["test"])
        assert "s13" not in {it.speaker for p in parts.values() for it in p}
        # validation: utterances of training speakers, each of them holding out 3 of 30
        assert {it.speaker for it in parts["validation"]} == {it.speaker for it in parts["train"]}
        assert len(parts["validation"]) == 3 * len({it.speaker for it in parts["train"]})


def test_checked_splits_requires_train_and_test_and_drops_an_empty_validation(caplog):
    item = preprocess.Item("a", "u", "x")
    msg = lambda split: f"no {split}"  # noqa: E731
    with caplog.at_level(logging.WARNING):
        out = builder_base.checked_splits({"train": [item], "validation": [], "test": [item]}, "d/c", msg)
    assert list(out) == ["train", "test"] and "no validation" in caplog.text
    for empty in ("train", "test"):
        parts = {"train": [item], "validation": [item], "test": [item], empty: []}
        with pytest.raises(InputError, match=f"no {empty}"):
            builder_base.checked_splits(parts, "d/c", msg)


def _stub_builder(*splits: str):
    info = types.SimpleNamespace(full_name="stub/c/2.0.0", metadata={}, splits={s: None for s in splits})
    return types.SimpleNamespace(info=info)


def test_training_reads_train_and_validation_only(caplog):
    import importlib
    import pkgutil

    import configs
    from input_pipeline import pipeline

    for m in pkgutil.iter_modules(configs.__path__):
        c = importlib.import_module(f"configs.{m.name}").get_config()
        assert (c.data.train_split, c.data.eval_split) == ("train", "validation"), m.name
    from configs import tiny

    config = tiny.get_config()
    data = pipeline.StageData(config, None, _stub_builder("train", "validation", "test"))
    assert data.splits == {"train": "train", "eval": "validation"}
    for key, spec in (("eval_split", "test"), ("eval_split", "validation+test"), ("train_split", "train+test[:50%]")):
        bad = tiny.get_config()
        bad.data[key] = spec
        with pytest.raises(InputError, match="must not read the 'test' split"):
            pipeline.StageData(bad, None, _stub_builder("train", "validation", "test"))
    bad = tiny.get_config()
    bad.data.train_split = "training"
    with pytest.raises(InputError, match="has no split 'training'"):
        pipeline.StageData(bad, None, _stub_builder("train", "validation", "test"))
    # A corpus too small for a validation split trains without held-out batches, and says so.
    with caplog.at_level(logging.WARNING):
        data = pipeline.StageData(config, None, _stub_builder("train", "test"))
    assert data.eval() == [] and "no 'validation' split" in caplog.text


def test_tiny_dataset_splits_and_framing(tiny_config):
    from input_pipeline import pipeline
    from thflax.measures import evaluation
    from thflax.training import tasks

    data = pipeline.StageData(tiny_config, tasks.get_task(tiny_config, "stl"))
    b = data.builder
    assert data.splits == {"train": "train", "eval": "validation"}
    assert b.info.metadata["crop_box"] == {"train": "clip", "validation": "reference", "test": "reference"}
    exs = {s: list(pipeline.utterances(tiny_config, s, builder=b, decode_frames=False)) for s in preprocess.SPLITS}
    keys = {s: {f"{e['speaker']}/{e['utterance']}" for e in v} for s, v in exs.items()}
    assert len(keys["validation"]) == 2 and len(keys["test"]) == 2 and len(keys["train"]) == 8
    assert not keys["train"] & keys["validation"] and not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    for e in exs["validation"] + exs["test"]:
        evaluation.check_reference_framing(e)
        assert not np.array_equal(e["landmarks_raw"][0], e["landmarks"][0])  # unsmoothed template
    # Training crops are framed over the clip: evaluation refuses them.
    with pytest.raises(InputError, match="not framed from its first frame alone"):
        for e in exs["train"]:
            evaluation.check_reference_framing(e)
    assert len(data.eval()) == int(tiny_config.stl.eval_batches)
    # Outside training, a held-out measure on test names the split; an unknown one is one clear error.
    task = data.task
    assert len(list(pipeline.as_numpy(pipeline.eval_dataset(tiny_config, task, b, num_batches=1, split="test")))) == 1
    with pytest.raises(InputError, match="has no split 'valid'"):
        next(pipeline.utterances(tiny_config, "valid", builder=b))
