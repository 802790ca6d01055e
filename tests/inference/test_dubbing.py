"""Dubbing (`--video`): a source video keeps its frames and gets a mouth driven by new speech.

The source is the astronaut photo moving by a few pixels per frame, with its frame number stamped in
binary into the top-right corner (far from the face), so the output's frames say which source frame
they came from. Geometry, ordering and reading back are unit tests; the tests that generate with the
trained tiny model run generate.py (marked `cli`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data
import soundfile as sf

from tests.helpers import ROOT
SENTENCE = "Set blue at A nine again please."
NUM_SOURCE = 25
BITS = 5  # frame numbers 0..31 stamped into the corner


def _stamp(frame: np.ndarray, number: int) -> np.ndarray:
    for k in range(BITS):
        frame[0:12, 268 + 10 * k:278 + 10 * k] = 255 if (number >> k) & 1 else 0
    return frame


def _number(frame: np.ndarray) -> int:
    return sum(1 << k for k in range(BITS) if frame[2:10, 270 + 10 * k:276 + 10 * k].mean() > 128)


def _shift(i: int) -> tuple[float, float]:
    return 8.0 * np.sin(2 * np.pi * i / NUM_SOURCE), 4.0 * np.cos(2 * np.pi * i / NUM_SOURCE)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    """1 s at 25 fps of a 320x320 talking-head-sized photo moving around, and its decoded frames."""
    from thflax.io import video

    d = tmp_path_factory.mktemp("dub_inputs")
    still = skimage.data.astronaut()[0:320, 60:380]
    frames = []
    for i in range(NUM_SOURCE):
        dx, dy = _shift(i)
        moved = cv2.warpAffine(still, np.float32([[1, 0, dx], [0, 1, dy]]), (320, 320), borderMode=cv2.BORDER_REPLICATE)
        frames.append(_stamp(moved, i))
    path = str(d / "source.mp4")
    video.write_video(path, frames, fps=25)
    decoded, fps = video.read_video(path)
    assert len(decoded) == NUM_SOURCE and fps == 25
    assert [_number(f) for f in decoded] == list(range(NUM_SOURCE))
    return {"path": path, "frames": decoded, "dir": d}


@pytest.fixture(scope="module")
def speech_wav(source) -> str:
    from thflax.inference import text_to_speech

    path = str(source["dir"] / "speech.wav")
    seconds = text_to_speech.speak_to_wav(SENTENCE, path)
    assert seconds > 1.5  # longer than the 1 s video: ping-pong
    return path


def _generate(*args, timeout=900):
    return subprocess.run([sys.executable, "generate.py", "--quiet", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _errors(r) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


def _has_audio_stream(path: str) -> bool:
    import imageio_ffmpeg

    p = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True)
    return "Audio:" in p.stderr


def _region(points: np.ndarray, pad: int = 4) -> tuple[slice, slice]:
    lo, hi = np.floor(points.min(0)).astype(int) - pad, np.ceil(points.max(0)).astype(int) + pad
    return slice(max(lo[1], 0), hi[1]), slice(max(lo[0], 0), hi[0])


# --- indices and geometry ---------------------------------------------------------------------------


def test_pingpong_indices_play_forward_and_backward_without_jumps():
    from thflax.inference.dubbing import pingpong_indices

    assert pingpong_indices(10, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert pingpong_indices(3, 25).tolist() == [0, 1, 2]  # shorter audio: cut
    assert pingpong_indices(4, 1).tolist() == [0, 0, 0, 0]
    idx = pingpong_indices(500, 7)
    assert idx.min() == 0 and idx.max() == 6 and np.all(np.abs(np.diff(idx)) == 1)


def _similarity(points: np.ndarray, scale: float, angle: float, shift) -> np.ndarray:
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rot.T * scale + np.asarray(shift)


def test_replace_mouth_maps_the_speech_displacement_through_the_frame_similarity():
    from thflax.inference import dubbing

    rng = np.random.default_rng(0)
    template = rng.uniform(0.25, 0.75, (68, 2))
    scale, angle, shift = 180.0, 0.2, (40.0, 70.0)
    frames = np.repeat(_similarity(template, scale, angle, shift)[None], 3, 0).astype(np.float32)
    # The source's own mouth and jaw (say, open) and off-stable points differ from the template's.
    frames[:, 48:68] += rng.normal(0, 6, (3, 20, 2))
    frames[:, 5:12, 1] += 9.0
    frames[:, 17:27] += rng.normal(0, 3, (3, 10, 2))
    predicted = np.repeat(template[None], 3, 0)
    shown = rng.normal(0, 0.02, (3, 20, 2))
    predicted[:, 48:68] += shown
    out = dubbing.replace_mouth(frames, template, predicted)
    # The mouth: the template's mouth plus the predicted displacement, carried by the similarity.
    want = _similarity(template[48:68] + shown, scale, angle, shift)
    np.testing.assert_allclose(out[:, 48:68], want, atol=1e-2)
    # The jaw 5..11 follows the lower lip's vertical displacement, weighted.
    drop = shown[:, [7, 8, 9, 10, 11], 1].mean(-1)  # points 55..59
    jaw = np.repeat(template[None, 5:12], 3, 0)
    jaw[..., 1] += drop[:, None] * np.array(dubbing.JAW_WEIGHTS)
    np.testing.assert_allclose(out[:, 5:12], _similarity(jaw, scale, angle, shift), atol=1e-2)
    # Every other point is the frame's own, exactly.
    others = [i for i in range(68) if not (48 <= i < 68 or 5 <= i < 12)]
    np.testing.assert_array_equal(out[:, others], frames[:, others])
    kept_jaw = dubbing.replace_mouth(frames, template, predicted, move_jaw=False)
    np.testing.assert_array_equal(kept_jaw[:, 5:12], frames[:, 5:12])


def test_frame_boxes_put_the_face_where_the_reference_crop_has_it():
    from thflax.face import crop
    from thflax.inference import dubbing

    rng = np.random.default_rng(1)
    template = rng.uniform(0.25, 0.75, (68, 2))
    frames = np.stack([_similarity(template, s, 0.0, t) for s, t in ((100, (5, 7)), (240, (-30, 12)))])
    boxes = dubbing.frame_boxes(template, frames)
    np.testing.assert_allclose(boxes[:, 2], [100, 240], rtol=1e-5)
    for box, lm in zip(boxes, frames):
        np.testing.assert_allclose(crop.CropBox(*box).to_crop(lm), template, atol=1e-4)


def test_missing_faces_are_filled_and_the_reference_is_the_most_closed_mouth():
    from thflax.face import points
    from thflax.inference import dubbing

    base = np.random.default_rng(2).uniform(0, 100, (68, 2)).astype(np.float32)
    lm = np.repeat(base[None], 20, 0) + np.arange(20, dtype=np.float32)[:, None, None]
    lm[[0, 3, 4, 8, 9, 10, 11, 12, 13]] = np.nan  # an end, a short gap and a long one
    filled, detected, face = dubbing.fill_missing(lm, max_gap=2)
    assert np.isfinite(filled).all()
    np.testing.assert_allclose(filled[3:5], lm[2] + np.array([1.0, 2.0])[:, None, None], atol=1e-4)
    np.testing.assert_allclose(filled[0], lm[1])  # held at the start
    assert face[3:5].all() and not face[8:14].any() and face[0]
    assert detected.sum() == 11
    with pytest.raises(ValueError):
        dubbing.fill_missing(np.full((4, 68, 2), np.nan), 2)

    opening = np.linspace(0.4, 0.1, 20)  # closing over time
    mouths = np.repeat(base[None], 20, 0)
    mouths[:, 48], mouths[:, 54] = (0, 0), (10, 0)
    for up, down in ((61, 67), (62, 66), (63, 65)):
        mouths[:, up] = (5, 0)
        mouths[:, down] = np.stack([np.full(20, 5.0), 10 * opening], -1)
    np.testing.assert_allclose(points.mouth_opening(mouths, min_width=1e-6), opening, atol=1e-6)
    valid = np.ones(20, bool)
    valid[9] = False
    # The first 0.4 s at 25 fps are frames 0..9; frame 9 is not a detection, so 8.
    assert dubbing.choose_reference(mouths, valid, fps=25, seconds=0.4) == 8
    assert dubbing.choose_reference(mouths, valid, fps=25, seconds=10) == 19


# --- the source video ---------------------------------------------------------------------------------


def test_frames_stream_pingpong_by_seeking_and_survive_a_bad_seek(source, monkeypatch, caplog):
    from thflax.inference import dubbing

    decoded = source["frames"]
    thumbs = np.stack([dubbing._thumb(f) for f in decoded])
    empty = np.zeros((NUM_SOURCE, 68, 2), np.float32)
    src = dubbing.SourceVideo(source["path"], 25.0, 1.0, empty, np.ones(NUM_SOURCE, bool),
                              np.ones(NUM_SOURCE, bool), thumbs, (320, 320))
    monkeypatch.setattr(dubbing, "CHUNK_BYTES", 320 * 320 * 3 * 8)  # backward runs in chunks of 8
    idx = dubbing.pingpong_indices(70, NUM_SOURCE)
    got = [_number(f) for f in src.frames(idx)]
    assert got == idx.tolist()
    # A decoder whose seeks land one frame late: the thumbnails catch it and the frames are still right.
    decode = dubbing.SourceVideo._decode

    def late(self, start, count, seek=False):
        return decode(self, start + 1 if seek and start else start, count, seek)

    monkeypatch.setattr(dubbing.SourceVideo, "_decode", late)
    with caplog.at_level("INFO", logger="thflax.inference.dubbing"):
        frames = list(src.frames(idx[20:40]))
    assert [_number(f) for f in frames] == idx[20:40].tolist()
    for f, j in zip(frames, idx[20:40]):
        np.testing.assert_array_equal(f, decoded[j])
    assert "not exact" in caplog.text


def test_tracking_follows_the_head_and_the_composite_changes_only_the_lower_face(source):
    from thflax.face import crop
    from thflax.inference import dubbing

    src = dubbing.SourceVideo.track(source["path"])
    assert src.num_frames == NUM_SOURCE and src.detected.all() and src.face.all()
    moved = src.landmarks[:, dubbing.STABLE_POINTS].mean(1) - src.landmarks[0, dubbing.STABLE_POINTS].mean(0)
    truth = np.array([_shift(i) for i in range(NUM_SOURCE)]) - np.array(_shift(0))
    assert np.abs(moved - truth).mean() < 1.0, np.abs(moved - truth).mean()

    frame, lm = source["frames"][5], src.landmarks[5]
    target = lm.copy()
    target[list(range(56, 60)) + [65, 66, 67], 1] += 12.0  # the lower lip drops
    target[5:12, 1] += 8.0
    box = crop.clip_box(lm)
    generated = np.full((64, 64, 3), (0, 255, 0), np.uint8)  # green: where it lands is obvious
    far = [(slice(0, 40), slice(0, 320)), _region(lm[36:48])]  # top rows, eyes
    mouth = _region(lm[48:68], pad=0)
    for warp in (False, True):
        mask = np.ones((64, 64), np.float32)
        out = dubbing._compose(frame, generated, mask, box, lm, target, warp)
        for rows, cols in far:
            np.testing.assert_array_equal(out[rows, cols], frame[rows, cols])
        diff = np.abs(out[mouth].astype(int) - frame[mouth].astype(int)).mean()
        assert diff > 40, (warp, diff)


# --- bad inputs (before any model is loaded) ----------------------------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(source) -> dict:
    from thflax.io import video

    d = source["dir"]
    photo = str(d / "photo.png")
    cv2.imwrite(photo, cv2.cvtColor(source["frames"][0], cv2.COLOR_RGB2BGR))
    text = str(d / "notes.mp4")
    with open(text, "w") as f:
        f.write("not a video at all\n")
    noise = str(d / "noise.mp4")
    rng = np.random.default_rng(0)
    video.write_video(noise, (rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(6)), fps=25)
    return {"photo": photo, "text": text, "noise": noise}


@pytest.mark.parametrize("case,message", [
    ("both", "not both"),
    ("neither", "give an image (a photo) or a video"),
    ("missing", "video file not found"),
    ("text", "cannot open video"),
    ("photo", "still image"),
    ("noise", "no face found in any frame"),
    ("same_as_out", "is the input"),
    ("fps", "differs from the frame rate"),
    ("face_index", "face_index"),
])
def test_bad_video_inputs_raise_one_line_and_write_nothing(source, bad_inputs, speech_wav, tmp_path, case, message):
    from thflax.inference import generation
    from thflax.errors import InputError

    out = str(tmp_path / "out.mp4")
    kwargs = dict(video=source["path"], audio=speech_wav, out=out, progress=False)
    if case == "both":
        kwargs["image"] = bad_inputs["photo"]
    elif case == "neither":
        del kwargs["video"]
    elif case == "missing":
        kwargs["video"] = str(tmp_path / "nope.mp4")
    elif case in ("text", "photo", "noise"):
        kwargs["video"] = bad_inputs[case]
    elif case == "same_as_out":
        kwargs["out"] = source["path"]
    elif case == "fps":
        kwargs["fps"] = 30.0
    elif case == "face_index":
        kwargs["face_index"] = 0
    with pytest.raises(InputError, match=re.escape(message)) as e:
        generation.generate("no-checkpoint", **kwargs)
    assert "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []
    assert os.path.getsize(source["path"]) > 0


@pytest.mark.parametrize("case,message", [("both", "give --image or --video, not both"),
                                          ("noise", "no face found in any frame")])
def test_cli_bad_video_is_one_line_exit_2_and_no_file(source, bad_inputs, speech_wav, tmp_path, case, message):
    out = tmp_path / "out.mp4"
    args = ["--checkpoint", "no-checkpoint", "--audio", speech_wav, "--out", str(out)]
    if case == "both":
        args += ["--video", source["path"], "--image", bad_inputs["photo"]]
    else:
        args += ["--video", bad_inputs["noise"]]
    r = _generate(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = _errors(r)
    assert len(errors) == 1 and message in errors[0], r.stderr[-1500:]
    assert os.listdir(tmp_path) == []


# --- with the trained tiny model ------------------------------------------------------------------------


@pytest.mark.cli
def test_cli_dubs_the_video_pingpong_keeping_its_pixels(tiny_workdir, source, speech_wav, tmp_path):
    from thflax.io import audio, video
    from thflax.inference import dubbing

    out = str(tmp_path / "dubbed.mp4")
    r = _generate("--checkpoint", tiny_workdir, "--video", source["path"], "--audio", speech_wav, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    frames, fps = video.read_video(out)
    info = sf.info(speech_wav)
    assert fps == 25 and len(frames) == audio.num_video_frames(info.frames, 25, info.samplerate)
    assert len(frames) > NUM_SOURCE and frames.shape[1:] == (320, 320, 3)
    assert _has_audio_stream(out)
    # Forward, backward and forward again: the stamped source frame numbers say which frame each is.
    idx = dubbing.pingpong_indices(len(frames), NUM_SOURCE)
    assert [_number(f) for f in frames] == idx.tolist()
    src = source["frames"][idx].astype(np.float32)
    lm = dubbing.SourceVideo.track(source["path"]).landmarks[idx]
    err = np.abs(frames.astype(np.float32) - src)
    # Far from the mouth (top rows, eyes) the source's pixels up to the codec; the mouth is new.
    assert err[:, 12:60].mean() < 2.5, err[:, 12:60].mean()
    eyes = np.mean([err[t][_region(lm[t, 36:48])].mean() for t in range(len(frames))])
    mouth = np.mean([err[t][_region(lm[t, 48:68], pad=0)].mean() for t in range(len(frames))])
    assert eyes < 3.0 and mouth > 6.0, (eyes, mouth)


@pytest.mark.cli
def test_cli_jobs_take_a_video_column_and_cut_the_video(tiny_workdir, source, bad_inputs, tmp_path):
    from thflax.io import audio, video

    t = np.arange(int(0.6 * 16000)) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(tmp_path / "short.wav", tone, 16000)  # 0.6 s: shorter than the 1 s video
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("image,video,audio,out\n"
                    f",{source['path']},short.wav,cut.mp4\n"
                    f"{bad_inputs['photo']},{source['path']},short.wav,both.mp4\n")
    r = _generate("--checkpoint", tiny_workdir, "--jobs", str(jobs))
    assert r.returncode == 2, r.stderr[-2000:]
    errors = _errors(r)
    assert len(errors) == 1 and "row 2" in errors[0] and "not both" in errors[0], r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "1 of 2 videos written"
    assert sorted(os.listdir(tmp_path)) == ["cut.mp4", "jobs.csv", "short.wav"]
    frames, fps = video.read_video(str(tmp_path / "cut.mp4"))
    n = audio.num_video_frames(len(tone), 25)
    assert fps == 25 and len(frames) == n < NUM_SOURCE
    assert [_number(f) for f in frames] == list(range(n))
    assert _has_audio_stream(str(tmp_path / "cut.mp4"))
