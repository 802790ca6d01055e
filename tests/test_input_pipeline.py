import json
import os
import shutil

import ml_collections
import numpy as np
import pytest
import soundfile as sf

from input_pipeline import pipeline, preprocess
from input_pipeline.grid import find_grid_items, read_align
from tests.helpers import data_config
from thflax.testing import AllFeatures
from thflax.errors import InputError


def _builder(config):
    return pipeline.get_builder(config.data)


def test_builder_splits_features_and_report(tiny_config):
    b = _builder(tiny_config)
    # 6 utterances per speaker: 1 test, 1 validation, 4 train each.
    assert {k: v.num_examples for k, v in b.info.splits.items()} == {"train": 8, "validation": 2, "test": 2}
    report = json.load(open(os.path.join(str(b.data_path), "build_report_train.json")))
    assert report["counts"] == {"ok": 8}
    ex = next(pipeline.utterances(tiny_config, "test", builder=b))
    t = ex["landmarks"].shape[0]
    assert ex["landmarks_raw"].shape == (t, 68, 2)
    assert ex["mfcc"].shape == (t, 20, 20) and ex["frames"].shape == (t, 64, 64, 3)
    assert ex["audio"].shape == (t * 640,) and ex["audio"].dtype == np.int16
    assert 0.05 < ex["landmarks"].min() and ex["landmarks"].max() < 0.95  # face inside the crop
    assert ex["fps"] == 25


def test_split_is_by_utterance_within_speaker():
    items = [preprocess.Item(f"s{s}", f"u{u}", "x") for s in range(3) for u in range(20)]
    parts = preprocess.split_items(items)
    train, val, test = parts["train"], parts["validation"], parts["test"]
    assert len(test) == 6 and {i.speaker for i in test} == {"s0", "s1", "s2"}
    assert len(val) == 6 and {i.speaker for i in val} == {"s0", "s1", "s2"} and len(train) == 48
    keys = [{i.key for i in part} for part in (train, val, test)]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    again = preprocess.split_items(items[::-1])
    assert all([i.key for i in parts[k]] == [i.key for i in again[k]] for k in parts)  # order-independent
    by_speaker = preprocess.split_items(items, by="speaker", test_speakers=("s1",))
    assert {i.speaker for i in by_speaker["test"]} == {"s1"}
    assert {i.speaker for i in by_speaker["validation"]} == {"s0", "s2"} == {i.speaker for i in by_speaker["train"]}


def test_corpus_is_in_grid_layout(tiny_corpus):
    items = find_grid_items(tiny_corpus)
    assert len(items) == 12 and all(i.audio_path for i in items)
    align = read_align(os.path.join(tiny_corpus, "alignments", items[0].speaker, items[0].utterance + ".align"))
    assert align[0][2] == "sil" and align[-1][2] == "sil"


def _task(config, stage):
    from thflax.training import tasks

    return tasks.get_task(config, stage)


def _take(ds, n):
    it = pipeline.as_numpy(ds)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("stage", ["stl", "ltv"])
def test_batches_shapes_and_deterministic_resume(tiny_config, stage):
    cfg, task = tiny_config, _task(tiny_config, stage)
    b = _builder(cfg)
    batches = _take(pipeline.train_dataset(cfg, task, b, num_devices=1), 5)
    again = _take(pipeline.train_dataset(cfg, task, b, num_devices=1), 5)
    resumed = _take(pipeline.train_dataset(cfg, task, b, num_devices=1, start_step=3), 2)
    for x, y in zip(batches, again):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    for x, y in zip(batches[3:], resumed):  # step 3 onwards, across an epoch boundary
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    x = batches[0]
    if stage == "stl":
        assert x["mfcc"].shape == (8, 16, 20, 20) and x["landmarks"].shape == (8, 16, 68, 2)
        assert x["template"].shape == (8, 68, 2) and x["mask"].shape == (8, 16)
    else:
        assert x["reference"].shape == (8, 64, 64, 3) and x["target"].dtype == np.uint8
        assert x["landmarks"].shape == (8, 68, 2) and x["ref_landmarks"].shape == (8, 68, 2)
        # different pairs in one batch
        assert np.abs(x["target"][0].astype(int) - x["target"][1].astype(int)).mean() > 0


@pytest.mark.parametrize("stage", ["stl", "ltv", "syncnet"])
def test_parsing_only_a_stages_features_leaves_its_stream_unchanged(tiny_config, stage):
    cfg, task = tiny_config, _task(tiny_config, stage)
    b = _builder(cfg)
    for train in (True, False):
        if train:
            ours = _take(pipeline.train_dataset(cfg, task, b, num_devices=1, start_step=2), 3)
            everything = _take(pipeline.train_dataset(cfg, AllFeatures(task), b, num_devices=1, start_step=2), 3)
        else:
            ours = _take(pipeline.eval_dataset(cfg, task, b, num_batches=1), 1)
            everything = _take(pipeline.eval_dataset(cfg, AllFeatures(task), b, num_batches=1), 1)
        for x, y in zip(ours, everything):
            assert x.keys() == y.keys()
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])
    # The STL stage does not parse the frames at all.
    parsed = pipeline._read(b, "train", pipeline._features(task, True, False)).element_spec
    assert ("frames" in parsed) == (stage != "stl") and "audio" not in parsed


def test_per_host_sharding_is_disjoint(tiny_config):
    cfg, task = tiny_config, _task(tiny_config, "stl")
    cfg.data.keep_ids = True
    cfg.stl.batch_size = 2
    b = _builder(cfg)
    seen = []
    for host in range(2):
        ds = pipeline.train_dataset(cfg, task, b, process_index=host, process_count=2, num_devices=1)
        ids = set()
        for batch in _take(ds, 8):  # 8 batches of 1 per host = two epochs of its 4 examples
            ids |= {u.decode() for u in batch["utterance"]}
        seen.append(ids)
    assert len(seen[0]) == 4 and len(seen[1]) == 4 and not seen[0] & seen[1]


def test_batch_divisibility_errors(tiny_config):
    cfg, task = tiny_config, _task(tiny_config, "stl")
    cfg.stl.batch_size = 6
    with pytest.raises(InputError, match="not divisible by 4 local devices"):
        pipeline.train_dataset(cfg, task, _builder(cfg), num_devices=4)
    cfg.stl.batch_size = 0
    with pytest.raises(InputError, match="must be a positive multiple"):
        pipeline.train_dataset(cfg, task, _builder(cfg), num_devices=1)


@pytest.fixture(scope="module")
def messy_grid(tiny_corpus, tmp_path_factory):
    """A GRID folder with good, corrupt, faceless, short-audio, empty-audio and gappy utterances."""
    from thflax.io import video

    root = tmp_path_factory.mktemp("messy_grid")
    # 4 good: with them the hash split puts usable utterances in test (good3) and validation (gappy).
    good = find_grid_items(tiny_corpus)[:4]
    for i, it in enumerate(good):
        os.makedirs(root / "s1", exist_ok=True)
        os.makedirs(root / "audio_25k" / "s1", exist_ok=True)
        shutil.copy(it.video_path, root / "s1" / f"good{i}.mp4")
        shutil.copy(it.audio_path, root / "audio_25k" / "s1" / f"good{i}.wav")
    frames, _ = video.read_video(good[0].video_path)
    speech, sr = sf.read(good[0].audio_path)
    # corrupt video file
    (root / "s1" / "corrupt.mpg").write_bytes(b"\x00\x00\x01\xba garbage" * 200)
    sf.write(root / "audio_25k" / "s1" / "corrupt.wav", speech, sr)
    # no face at all
    noise = np.random.default_rng(0).integers(0, 255, frames.shape, dtype=np.uint8)
    video.write_video(str(root / "s1" / "noface.mp4"), noise, 25)
    sf.write(root / "audio_25k" / "s1" / "noface.wav", speech, sr)
    # audio shorter than the video: 1.2 s of speech
    shutil.copy(good[0].video_path, root / "s1" / "shortaudio.mp4")
    sf.write(root / "audio_25k" / "s1" / "shortaudio.wav", speech[: int(1.2 * sr)], sr)
    # empty audio
    shutil.copy(good[0].video_path, root / "s1" / "emptyaudio.mp4")
    sf.write(root / "audio_25k" / "s1" / "emptyaudio.wav", np.zeros(0), sr)
    # a face-less stretch in the middle: frames 40.. replaced by noise -> keep the first run
    gappy = frames.copy()
    gappy[40:] = noise[40:]
    video.write_video(str(root / "s1" / "gappy.mp4"), gappy, 25)
    sf.write(root / "audio_25k" / "s1" / "gappy.wav", speech, sr)
    return str(root)


def test_bad_inputs_are_skipped_or_trimmed_with_reasons(messy_grid, tmp_path):
    cfg = data_config(name="grid/crop64", data_dir=str(tmp_path), manual_dir=messy_grid, num_workers=1)
    b = pipeline.get_builder(cfg)
    reports = [json.load(open(os.path.join(str(b.data_path), f"build_report_{s}.json"))) for s in preprocess.SPLITS]
    reasons = {k: v for r in reports for k, v in r["reasons"].items()}
    counts = {}
    for r in reports:
        for k, v in r["counts"].items():
            counts[k] = counts.get(k, 0) + v
    assert reasons["s1/corrupt"].startswith("skipped: unreadable video")
    assert reasons["s1/noface"].startswith("skipped") and "no face" in reasons["s1/noface"]
    assert reasons["s1/emptyaudio"].startswith("skipped: bad audio")
    assert reasons["s1/shortaudio"].startswith("trimmed") and "audio covers 30" in reasons["s1/shortaudio"]
    assert reasons["s1/gappy"].startswith("trimmed") and "no face" in reasons["s1/gappy"]
    assert counts == {"ok": 4, "skipped": 3, "trimmed": 2}
    exs = {e["utterance"]: e for split in preprocess.SPLITS
           for e in pipeline.utterances(ml_collections.ConfigDict(dict(data=cfg)), split, builder=b)}
    assert set(exs) == {"good0", "good1", "good2", "good3", "shortaudio", "gappy"}
    short = exs["shortaudio"]
    assert short["landmarks"].shape[0] == 30 and short["mfcc"].shape[0] == 30 and short["audio"].size == 30 * 640
    gap = exs["gappy"]
    assert gap["start_frame"] == 0 and 38 <= gap["landmarks"].shape[0] <= 41
    # Trimming kept alignment: the trimmed clip's speech is exactly the first 30 frames' worth.
    np.testing.assert_array_equal(short["audio"], exs["good0"]["audio"][: 30 * 640])
