"""Preparing a dataset from bad folders fails with one line, and keeps the reasons.

No synthetic corpus: the bad videos are random noise (no face) written with `thflax.io.video`, a file of
garbage bytes (unreadable), and videos without an audio track, each 30 frames of 64x64.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.corpus  # renders faces / builds datasets: minutes
import soundfile as sf

from input_pipeline import builder_base, pipeline, preprocess
from input_pipeline.grid import find_grid_items
from input_pipeline.talking_videos import find_video_items
from tests.helpers import data_config
from thflax.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000


def _noise_video(path, seed: int) -> None:
    from thflax.io import video

    frames = np.random.default_rng(seed).integers(0, 255, (30, 64, 64, 3), dtype=np.uint8)
    video.write_video(str(path), frames, 25)


def _speech(path) -> None:
    t = np.arange(int(1.2 * SR)) / SR
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)


@pytest.fixture(scope="module")
def bad_grid(tmp_path_factory) -> str:
    """A GRID folder whose every video is unusable: three face-less (noise) and one corrupt (the
    hash split puts noise3 and corrupt in train, noise2 in validation, noise1 in test)."""
    root = tmp_path_factory.mktemp("bad_grid")
    (root / "s1").mkdir()
    (root / "audio_25k" / "s1").mkdir(parents=True)
    for i, name in enumerate(("noise1", "noise2", "noise3")):
        _noise_video(root / "s1" / f"{name}.mp4", i)
        _speech(root / "audio_25k" / "s1" / f"{name}.wav")
    (root / "s1" / "corrupt.mpg").write_bytes(b"\x00\x00\x01\xba garbage" * 200)
    _speech(root / "audio_25k" / "s1" / "corrupt.wav")
    return str(root)


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and text.strip() == text, repr(text)
    return text


def _build(name: str, manual_dir: str, data_dir: str):
    return pipeline.get_builder(data_config(name=name, data_dir=data_dir, manual_dir=manual_dir, num_workers=1))


def _check_failed_report(err: builder_base.UnusableSplitError, data_dir: str, name: str, items, split="train"):
    """The error names the surviving report; the report lists every utterance of the split, each skipped."""
    path = os.path.join(data_dir, name, f"build_report_{split}.failed.json")
    keys = sorted(it.key for it in preprocess.split_items(items)[split])
    assert _one_line(err) == (f"no usable utterance in split {split!r} of {name}: {len(keys)} skipped "
                              f"(reasons in {path})")
    assert err.report_path == path and os.path.isfile(path)
    with open(path) as f:
        report = json.load(f)
    assert report["split"] == split and report["counts"] == {"skipped": len(keys)}
    assert sorted(report["reasons"]) == keys
    assert all(r.startswith("skipped: ") and len(r) > len("skipped: ") for r in report["reasons"].values())
    # Nothing half-built is left as a dataset.
    assert not any(d[0].isdigit() for d in os.listdir(os.path.join(data_dir, name)))
    return report


def test_empty_manual_folder_is_one_line_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as e:
        _build("grid/crop64", str(empty), str(tmp_path / "tfds"))
    msg = _one_line(e.value)
    assert str(empty) in msg and "is empty" in msg and "s<N>" in msg, msg


def test_folder_without_videos_is_one_line_error(tmp_path):
    folder = tmp_path / "notgrid"
    (folder / "clips").mkdir(parents=True)
    _noise_video(folder / "clips" / "a.mp4", 0)  # not under a folder named s<N>
    with pytest.raises(InputError) as e:
        _build("grid/crop64", str(folder), str(tmp_path / "tfds"))
    msg = _one_line(e.value)
    assert msg.startswith(f"no utterances found for grid/crop64 in {folder}: expected GRID videos"), msg


def test_missing_manual_folder_is_one_line_error(tmp_path):
    with pytest.raises(InputError) as e:
        _build("talking_videos/crop64", str(tmp_path / "nope"), str(tmp_path / "tfds"))
    msg = _one_line(e.value)
    assert str(tmp_path / "nope") in msg and "does not exist" in msg, msg


def test_split_without_any_utterance_is_one_line_error(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    _noise_video(folder / "clip.mp4", 0)
    with pytest.raises(InputError) as e:
        _build("talking_videos/crop64", str(folder), str(tmp_path / "tfds"))
    msg = _one_line(e.value)
    assert msg.startswith("split 'test' of talking_videos/crop64 would be empty") and "single utterance" in msg, msg


def test_all_bad_videos_keep_their_report(bad_grid, tmp_path, capfd):
    data_dir = str(tmp_path / "tfds")
    stale = os.path.join(data_dir, "grid", "crop64", "build_report_test.failed.json")
    os.makedirs(os.path.dirname(stale))
    with open(stale, "w") as f:
        f.write("{}")
    with pytest.raises(builder_base.UnusableSplitError) as e:
        _build("grid/crop64", bad_grid, data_dir)
    report = _check_failed_report(e.value, data_dir, "grid/crop64", find_grid_items(bad_grid))
    reasons = report["reasons"]
    assert any("no face" in r for r in reasons.values()), reasons
    if "s1/corrupt" in reasons:
        assert reasons["s1/corrupt"].startswith("skipped: unreadable video")
    # A report left by an earlier failed build is removed when a build starts.
    assert not os.path.exists(stale)
    # Nothing is downloaded, so TFDS's "Downloading and preparing dataset Unknown size" is not printed.
    out = capfd.readouterr().out
    assert "Downloading" not in out and "Unknown size" not in out, out


def test_video_without_audio_track_is_reported_as_such(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(2):
        _noise_video(folder / f"mute{i}.mp4", i)  # no sidecar .wav and no audio track
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(builder_base.UnusableSplitError) as e:
        _build("talking_videos/crop64", str(folder), data_dir)
    items = find_video_items(str(folder))
    report = _check_failed_report(e.value, data_dir, "talking_videos/crop64", items)
    for key, reason in report["reasons"].items():
        video = os.path.join(str(folder), key.split("/")[1] + ".mp4")
        assert reason == f"skipped: bad audio: {video} has no audio track", reason


def test_beam_build_of_bad_videos_is_one_line_error(bad_grid, tmp_path):
    pytest.importorskip("apache_beam", reason="needs the `beam` extra")
    from input_pipeline import build

    data_dir = str(tmp_path / "tfds")
    with pytest.raises(builder_base.UnusableSplitError) as e:
        build.build("grid/crop64", data_dir, bad_grid, "runner=FnApiRunner", num_workers=1)
    msg = _one_line(e.value)
    assert msg.startswith("no usable utterance in split "), msg
    if e.value.report_path is not None:  # written unless TFDS's empty-split check stopped Beam first
        split = next(s for s in preprocess.SPLITS if f"split {s!r}" in msg)
        _check_failed_report(e.value, data_dir, "grid/crop64", find_grid_items(bad_grid), split)


def _cli(args, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def _assert_one_error_line(proc, *parts):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for part in parts:
        assert part in errors[0], errors[0]


@pytest.mark.cli
def test_train_cli_on_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _cli(["train.py", "--config", "configs/tiny.py", "--workdir", str(tmp_path / "w"),
                 "--config.data.name=grid/crop64", f"--config.data.manual_dir={empty}",
                 f"--config.data.data_dir={tmp_path / 'tfds'}"], tmp_path)
    _assert_one_error_line(proc, "no utterances found for grid/crop64", str(empty))


@pytest.mark.cli
def test_build_cli_on_bad_videos(bad_grid, tmp_path):
    data_dir = tmp_path / "tfds"
    proc = _cli(["-m", "input_pipeline.build", "--dataset", "grid/crop64", "--data_dir", str(data_dir),
                 "--manual_dir", bad_grid, "--num_workers", "1"], tmp_path)
    report = data_dir / "grid" / "crop64" / "build_report_train.failed.json"
    _assert_one_error_line(proc, "no usable utterance in split 'train' of grid/crop64", str(report))
    assert report.is_file()
