"""Apache Beam preparation writes the same dataset and build reports as the local process pool.

The tiny corpus plus one unreadable video (skipped) and one utterance whose speech stops early
(trimmed), so the report's reasons travel through the Beam path too. Beam runs on the FnApiRunner (the
engine behind Beam's DirectRunner; naming it skips the DirectRunner's attempt to download the Prism
runner) with 2 worker processes.
"""

import json
import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("apache_beam", reason="needs the `beam` extra")

from input_pipeline import build  # noqa: E402

BEAM_OPTIONS = "runner=FnApiRunner,direct_num_workers=2,direct_running_mode=multi_processing"
DATASET = "synthetic_talking_heads/tiny"


@pytest.fixture(scope="module")
def corpus(tiny_corpus, tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("beam_corpus") / "corpus")
    shutil.copytree(tiny_corpus, root)
    with open(os.path.join(root, "s1", "broken.mp4"), "wb") as f:
        f.write(b"\x00not a video" * 100)
    shutil.copy(os.path.join(root, "s2", "lwbf8p.mp4"), os.path.join(root, "s2", "short.mp4"))
    speech, sr = sf.read(os.path.join(root, "audio", "s2", "lwbf8p.wav"), dtype="int16")
    sf.write(os.path.join(root, "audio", "s2", "short.wav"), speech[: int(0.6 * len(speech))], sr)
    return root


@pytest.fixture(scope="module")
def builders(corpus, tmp_path_factory):
    seconds = {}
    t = time.perf_counter()
    local = build.build(DATASET, str(tmp_path_factory.mktemp("tfds_local")), corpus, num_workers=1)
    seconds["local"] = time.perf_counter() - t
    t = time.perf_counter()
    beam = build.build(DATASET, str(tmp_path_factory.mktemp("tfds_beam")), corpus, BEAM_OPTIONS)
    seconds["beam"] = time.perf_counter() - t
    print(f"build seconds: {seconds}")
    return local, beam


def _examples(builder, split):
    import tensorflow_datasets as tfds

    return [(ex["speaker"].decode() + "/" + ex["utterance"].decode(), ex)
            for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))]


def _report(builder, split):
    with open(os.path.join(str(builder.data_path), f"build_report_{split}.json")) as f:
        return json.load(f)


def test_beam_and_local_write_identical_examples(builders):
    local, beam = builders
    assert {k: v.num_examples for k, v in local.info.splits.items()} == \
        {k: v.num_examples for k, v in beam.info.splits.items()}
    assert set(local.info.splits) == {"train", "validation", "test"}
    for split in local.info.splits:
        a, b = _examples(local, split), _examples(beam, split)
        assert [k for k, _ in a] == [k for k, _ in b]  # same keys, so the same order on disk
        assert len(a) == local.info.splits[split].num_examples
        for (key, x), (_, y) in zip(a, b):
            assert x.keys() == y.keys()
            for feature in x:
                np.testing.assert_array_equal(x[feature], y[feature], err_msg=f"{split} {key} {feature}")


def test_beam_writes_the_same_build_reports(builders):
    local, beam = builders
    reports = {s: _report(local, s) for s in ("train", "validation", "test")}
    assert reports == {s: _report(beam, s) for s in ("train", "validation", "test")}
    counts = {s: r["counts"] for s, r in reports.items()}
    total = sum(sum(c.values()) for c in counts.values())
    assert total == 14 and sum(c.get("ok", 0) for c in counts.values()) == 12
    reasons = {k: v for r in reports.values() for k, v in r["reasons"].items()}
    assert reasons["s1/broken"].startswith("skipped: unreadable video")
    assert reasons["s2/short"].startswith("trimmed: audio covers")
    # The Beam metrics counted the same outcomes on the worker processes.
    assert beam.beam_counters == {f"{s}_{status}": n for s, c in counts.items() for status, n in c.items()}
    assert local.beam_counters == {}
