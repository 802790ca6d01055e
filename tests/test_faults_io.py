"""Faults in inputs and outputs: the right face, one clear line, no lost or half-written files."""

import errno
import json
import logging
import os
import re
import stat
import subprocess
import tempfile
import warnings

import cv2
import numpy as np
import pytest
import skimage.data
import soundfile as sf

from thflax.io import audio, files, video
from thflax.face import landmarks
from thflax.errors import AudioError, ImageError, InputError, NoFaceError, OutputError, VideoError

# Real faces in the two-face photo below: the astronaut at full size, and a 0.8-scaled copy.
LEFT = (175, 76, 266, 170)
RIGHT = (512 + 140, 102 + 61, 512 + 213, 102 + 136)


def _collage(scale: float) -> np.ndarray:
    """The astronaut photo and a scaled copy side by side on a grey canvas (two real faces)."""
    img = skimage.data.astronaut()
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512 + small.shape[1], 3), 128, np.uint8)
    canvas[:, :512] = img
    canvas[512 - small.shape[0]:, 512:] = small
    return canvas


def _inside(point, box, margin=0) -> bool:
    return box[0] - margin <= point[0] <= box[2] + margin and box[1] - margin <= point[1] <= box[3] + margin


def _center(box):
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


@pytest.fixture(scope="module")
def landmarker():
    return landmarks.FaceLandmarker()


@pytest.fixture(scope="module")
def two_faces():
    return _collage(0.8)


def _tone(seconds=1.0, sr=16000):
    return (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


@pytest.fixture()
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture()
def wav(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, _tone(), 16000)
    return str(path)


def _frames(n=10, size=32):
    return np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def _temps(folder) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(".thflax")]


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


# --- face choice ------------------------------------------------------------------------------
def test_astronaut_face_kept_and_false_box_dropped(landmarker):
    img = skimage.data.astronaut()
    faces = landmarker.faces(img)
    assert len(faces) == 1
    box, score = faces[0]
    assert score > 1.0 and _inside(_center(box), (175, 76, 265, 166))
    # dlib's weak box on the suit (lower in the image) exists, but scores below the minimum.
    weak = landmarker.detect(img, upsample=0, min_score=-0.5)
    low = [(b, s) for b, s in weak if b[1] > 300]
    assert low and all(s < landmarks.MIN_FACE_SCORE for _, s in low)


def test_two_faces_listed_by_score_and_false_box_loses(landmarker, two_faces):
    faces = landmarker.faces(two_faces)
    assert len(faces) == 2
    assert faces[0][1] >= faces[1][1] >= landmarks.MIN_FACE_SCORE
    centres = [_center(b) for b, _ in faces]
    assert {_inside(c, LEFT) for c in centres} == {True, False}
    assert {_inside(c, RIGHT) for c in centres} == {True, False}
    # The bug this guards against: dlib's default threshold also returns a false box on the clothes
    # that is larger than either face, so choosing by size picked it.
    all_boxes = landmarker.detect(two_faces)
    largest = max(all_boxes, key=lambda b: (b[0][2] - b[0][0]) * (b[0][3] - b[0][1]))
    assert not _inside(_center(largest[0]), LEFT) and not _inside(_center(largest[0]), RIGHT)
    assert largest[1] < landmarks.MIN_FACE_SCORE


def test_default_choice_is_best_face_and_warns_once(landmarker, two_faces, caplog):
    caplog.set_level(logging.INFO, logger="thflax.face.landmarks")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choice = landmarker.choose_face(two_faces, name="group.jpg")
    assert not caught  # reported through logging only, so callers do not print it twice
    best_box, best_score = landmarker.faces(two_faces)[0]
    assert choice.index == 0 and choice.num_faces == 2
    assert choice.box == best_box and choice.score == pytest.approx(best_score)
    assert _inside(choice.landmarks[30], best_box)  # nose tip in the chosen face
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    msg = warned[0].getMessage()
    assert "2 faces found in group.jpg" in msg and "face_index" in msg and "face_box" in msg
    assert f"({best_box[0]},{best_box[1]})-({best_box[2]},{best_box[3]})" in msg
    lm = landmarker.image_landmarks(two_faces)
    np.testing.assert_array_equal(lm, choice.landmarks)


def test_face_index_and_face_box_choose_another(landmarker, two_faces, caplog):
    faces = landmarker.faces(two_faces)
    other = landmarker.choose_face(two_faces, face_index=1)
    assert other.index == 1 and other.box == faces[1][0]
    assert _inside(other.landmarks[30], faces[1][0])
    assert not _inside(other.landmarks[30], faces[0][0])
    caplog.set_level(logging.INFO, logger="thflax.face.landmarks")
    for region, face in ((LEFT, LEFT), (RIGHT, RIGHT), ((0, 0, 512, 300), LEFT), ((520, 100, 900, 300), RIGHT)):
        caplog.clear()
        lm = landmarker.image_landmarks(two_faces, face_box=region)
        assert _inside(lm[30], face), (region, lm[30])
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # explicit choice: no warning
        assert any("using face_index" in r.getMessage() for r in caplog.records)


def test_face_box_searches_small_face_missed_by_full_search(landmarker):
    img = _collage(0.6)  # the small copy's face scores below the minimum at full-image resolution
    faces = landmarker.faces(img)
    assert len(faces) == 1 and _inside(_center(faces[0][0]), LEFT)
    small = (512 + 105, 205 + 46, 512 + 159, 205 + 100)
    choice = landmarker.choose_face(img, face_box=(600, 230, 700, 330))
    assert choice.index is None and choice.score >= landmarks.MIN_FACE_SCORE
    assert _inside(choice.landmarks[30], small, margin=5)


@pytest.mark.parametrize("kwargs, match", [
    ({"face_index": 2}, "out of range: 2 faces"),
    ({"face_index": -1}, "out of range"),
    ({"face_index": 1.5}, "out of range"),
    ({"face_box": (0, 300, 100, 400)}, "no face inside face_box"),
    ({"face_box": (2000, 0, 2100, 50)}, "outside"),
    ({"face_box": (50, 50, 10, 10)}, "empty"),
    ({"face_box": (1, 2, 3)}, "four pixel numbers"),
    ({"face_box": LEFT, "face_index": 0}, "not both"),
])
def test_bad_face_choice_is_one_line(landmarker, two_faces, kwargs, match):
    with pytest.raises(NoFaceError, match=match) as err:
        landmarker.image_landmarks(two_faces, name="group.jpg", **kwargs)
    _one_line(err)


_BOX = re.compile(r"\((-?\d+),(-?\d+)\)-\((-?\d+),(-?\d+)\)")


def test_printed_face_boxes_are_photo_pixels_and_select_that_face(tmp_path, caplog):
    """A photo larger than options.MAX_SIDE is worked on downscaled; the boxes the user reads and
    the face_box they paste back are both the file's pixels, so a printed box selects its face."""
    from thflax.inference import photo as photo_lib

    factor = 2  # 1024 x 1842: worked on at about 0.56, so working-image boxes would be far off
    big = cv2.resize(_collage(0.8), None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    photo = str(tmp_path / "group.png")
    cv2.imwrite(photo, cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    faces_in_file = [tuple(factor * v for v in LEFT), tuple(factor * v for v in RIGHT)]
    caplog.set_level(logging.INFO, logger="thflax.face.landmarks")
    img, _ = photo_lib.detect_face(photo)
    assert img.shape[1] < big.shape[1]  # the working copy is downscaled (the case that broke)
    sx, sy = img.shape[1] / big.shape[1], img.shape[0] / big.shape[0]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "2 faces found" in warned[0], warned
    printed = [tuple(int(v) for v in m) for m in _BOX.findall(warned[0])]
    assert len(printed) == 2, warned[0]  # the face used, and the other one to choose instead
    # Each printed box lies on one of the two real faces, in the file's pixels.
    owner = [[_inside(_center(b), f) for f in faces_in_file].index(True) for b in printed]
    assert sorted(owner) == [0, 1], (printed, faces_in_file)
    for box, face in zip(printed, owner):
        caplog.clear()
        _, lm = photo_lib.detect_face(photo, face_box=box)
        nose_in_file = (lm[30][0] / sx, lm[30][1] / sy)
        assert _inside(nose_in_file, faces_in_file[face]), (box, nose_in_file)
        used = " ".join(r.getMessage() for r in caplog.records)
        assert f"at ({box[0]},{box[1]})-({box[2]},{box[3]})" in used  # described with the box pasted
    # A reversed box (x0 > x1) is refused, echoed as given, with the file's own size.
    x0, y0, x1, y1 = printed[1]
    with pytest.raises(NoFaceError) as err:
        photo_lib.detect_face(photo, face_box=(x1, y1, x0, y0))
    msg = _one_line(err)
    assert f"face_box ({x1},{y1})-({x0},{y0}) is empty" in msg and f"{big.shape[1]}x{big.shape[0]} image" in msg
    # A box without a face lists the faces found in the file's pixels, ready to paste.
    with pytest.raises(NoFaceError) as err:
        photo_lib.detect_face(photo, face_box=(0, 0, 100, 100))
    msg = _one_line(err)
    assert "face_box (0,0)-(100,100)" in msg
    assert all(f"({b[0]},{b[1]})-({b[2]},{b[3]})" in msg for b in printed), msg


def test_landmark_video_removed():
    assert not hasattr(landmarks, "landmark_video")


# --- output path checks -----------------------------------------------------------------------
def test_check_output_refuses_inputs_and_bad_paths(tmp_path, wav, monkeypatch):
    photo = tmp_path / "face.mp4"
    photo.write_bytes(b"input data")
    before = photo.read_bytes()
    os.symlink(photo, tmp_path / "link.mp4")
    os.link(photo, tmp_path / "hard.mp4")
    rel = os.path.relpath(photo)
    cases = [
        (str(photo), "is the input"),
        (rel, "is the input"),
        (str(tmp_path / "link.mp4"), "is the input"),
        (str(tmp_path / "hard.mp4"), "is the input"),
        (str(tmp_path / "out.avi"), ".mp4, .mov or .mkv"),
        (str(tmp_path / "missing" / "out.mp4"), "does not exist"),
    ]
    (tmp_path / "dir.mp4").mkdir()
    cases.append((str(tmp_path / "dir.mp4"), "is a directory"))
    for out, match in cases:
        with pytest.raises(OutputError, match=match) as err:
            video.check_output(out, [str(photo), wav])
        _one_line(err)
    video.check_output(str(tmp_path / "new.mkv"), [str(photo), wav])  # fine: nothing raised
    video.check_output(str(tmp_path / "new.mp4"), [str(photo), None])
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if p == str(tmp_path) else real_access(p, mode))
    with pytest.raises(OutputError, match="not writable") as err:
        video.check_output(str(tmp_path / "new.mp4"), [str(photo)])
    _one_line(err)
    assert photo.read_bytes() == before and not _temps(tmp_path)


# --- file modes -------------------------------------------------------------------------------
def test_outputs_honour_umask(tmp_path, wav, umask022):
    plain, muxed, image = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.png"
    video.write_video(str(plain), _frames(), 25)
    video.write_video(str(muxed), _frames(), 25, audio_path=wav)
    video.write_image(str(image), _frames(1)[0])
    for path in (plain, muxed, image):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path
    os.umask(0o077)
    private = tmp_path / "d.mp4"
    video.write_video(str(private), _frames(), 25)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert cv2.imread(str(image)) is not None and not _temps(tmp_path)


# --- write failures (simulated) ---------------------------------------------------------------
@pytest.mark.parametrize("code, cause", [
    (errno.ENOSPC, "no space left on device"),
    (errno.EROFS, "read-only file system"),
    (errno.EACCES, "folder not writable"),
])
def test_failed_final_rename_is_one_line_and_leaves_nothing(tmp_path, wav, monkeypatch, code, cause):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(code, os.strerror(code))))
    for audio_path in (None, wav):
        with pytest.raises(OutputError) as err:
            video.write_video(str(out), _frames(), 25, audio_path=audio_path)
        assert _one_line(err) == f"cannot write {out}: {cause}"
        assert not _temps(tmp_path)
    with pytest.raises(OutputError, match=cause):
        video.write_image(str(tmp_path / "x.png"), _frames(1)[0])
    assert out.read_bytes() == b"previous result"  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["out.mp4", "speech.wav"]


@pytest.mark.parametrize("code, cause", [(errno.EROFS, "read-only file system"),
                                         (errno.EACCES, "folder not writable")])
def test_unwritable_folder_fails_before_encoding(tmp_path, monkeypatch, code, cause):
    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError) as err:
        video.VideoWriter(str(tmp_path / "out.mp4"))
    assert _one_line(err) == f"cannot write {tmp_path / 'out.mp4'}: {cause}"
    with pytest.raises(OutputError, match=cause):
        video.write_image(str(tmp_path / "x.png"), _frames(1)[0])
    assert os.listdir(tmp_path) == []


def _failing_open(code: int, marker: str, keep: float):
    """An `open` whose files written under a path containing `marker` take the first `keep` fraction of
    each write and then raise OSError(code): a disk filling up (or a quota reached) part-way through."""
    import builtins

    real_open = builtins.open

    class Failing:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            if keep:
                self.f.write(data[: int(len(data) * keep)])
                self.f.flush()
            raise OSError(code, os.strerror(code))

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Failing(f) if "w" in mode and marker in str(file) else f

    return fake_open


def test_image_write_enospc_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("builtins.open", _failing_open(errno.ENOSPC, ".thflax-", keep=0.0))
    with pytest.raises(OutputError) as err:
        video.write_image(str(tmp_path / "x.png"), _frames(1)[0])
    assert _one_line(err).endswith("x.png: no space left on device")
    assert os.listdir(tmp_path) == []


def test_bad_image_extension_is_one_line(tmp_path):
    with pytest.raises(ImageError, match="not an image format") as err:
        video.write_image(str(tmp_path / "x.notanimage"), _frames(1)[0])
    _one_line(err)
    assert os.listdir(tmp_path) == []


def _fake_ffmpeg(tmp_path, monkeypatch, stderr: str) -> None:
    """Makes every ffmpeg call print `stderr` and fail (after consuming its input)."""
    import imageio_ffmpeg

    script = tmp_path / "fake-ffmpeg"
    script.write_text(f"#!/bin/sh\ncat > /dev/null\nprintf '%s\\n' '{stderr}' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(script))


def test_encoder_out_of_space_is_blamed_on_the_disk(tmp_path, monkeypatch):
    outdir = tmp_path / "out"
    outdir.mkdir()
    _fake_ffmpeg(tmp_path, monkeypatch, "[out#0/mp4] Error writing trailer: No space left on device")
    with pytest.raises(OutputError) as err:
        video.write_video(str(outdir / "o.mp4"), _frames(), 25)
    assert _one_line(err) == f"cannot write {outdir / 'o.mp4'}: no space left on device"
    assert os.listdir(outdir) == []


def test_other_encoder_failure_names_ffmpegs_reason(tmp_path, monkeypatch):
    outdir = tmp_path / "out"
    outdir.mkdir()
    _fake_ffmpeg(tmp_path, monkeypatch, "Unknown encoder libx264")
    with pytest.raises(VideoError) as err:
        video.write_video(str(outdir / "o.mp4"), _frames(), 25)
    assert _one_line(err).endswith("Unknown encoder libx264") and not isinstance(err.value, OutputError)
    assert os.listdir(outdir) == []


def test_mux_out_of_space_does_not_blame_the_audio(tmp_path, wav, monkeypatch):
    clip = tmp_path / "clip.mp4"
    video.write_video(str(clip), _frames(), 25)
    outdir = tmp_path / "out"
    outdir.mkdir()
    _fake_ffmpeg(tmp_path, monkeypatch,
                 "[aost#0:1/aac] Error submitting a packet to the muxer: No space left on device")
    with pytest.raises(OutputError) as err:
        video.mux_audio(str(clip), wav, str(outdir / "o.mp4"))
    assert _one_line(err) == f"cannot write {outdir / 'o.mp4'}: no space left on device"
    assert "speech.wav" not in str(err.value) and os.listdir(outdir) == []


def test_mux_blames_audio_only_when_ffmpeg_cannot_read_it(tmp_path, wav, monkeypatch):
    clip = tmp_path / "clip.mp4"
    video.write_video(str(clip), _frames(), 25)
    outdir = tmp_path / "out"
    outdir.mkdir()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio" * 50)
    with pytest.raises(AudioError, match="cannot read audio from .*junk.wav: Invalid data") as err:
        video.mux_audio(str(clip), str(junk), str(outdir / "o.mp4"))
    _one_line(err)
    with pytest.raises(AudioError, match="not found"):
        video.mux_audio(str(clip), str(tmp_path / "nope.wav"), str(outdir / "o.mp4"))
    # A failure that says nothing about the audio input is not blamed on it.
    _fake_ffmpeg(tmp_path, monkeypatch, "Error while filtering: Cannot allocate memory")
    with pytest.raises(VideoError) as err:
        video.mux_audio(str(clip), wav, str(outdir / "o.mp4"))
    assert not isinstance(err.value, AudioError) and "Cannot allocate memory" in _one_line(err)
    assert os.listdir(outdir) == []


def test_video_without_audio_track_as_audio(tmp_path):
    silent = tmp_path / "x.mp4"
    video.write_video(str(silent), _frames(25), 25)
    with pytest.raises(AudioError) as err:
        audio.load_audio(str(silent))
    assert _one_line(err) == f"{silent} has no audio track"
    out = tmp_path / "o.mp4"
    with pytest.raises(AudioError) as err:
        video.write_video(str(out), _frames(), 25, audio_path=str(silent))
    assert _one_line(err) == f"{silent} has no audio track"
    assert not out.exists() and not _temps(tmp_path)
    assert not audio.audio_track_missing(str(tmp_path / "nope.mp4"))


def test_load_audio_directory(tmp_path):
    with pytest.raises(AudioError) as err:
        audio.load_audio(str(tmp_path))
    assert _one_line(err) == f"{tmp_path} is a directory, not an audio file"


def test_caller_exception_and_mux_failure_leave_no_temp_files(tmp_path, wav):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(KeyboardInterrupt):
        with video.VideoWriter(str(out), 25, audio_path=wav) as w:
            for f in _frames():
                w.write(f)
            raise KeyboardInterrupt
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio" * 50)
    with pytest.raises(AudioError):
        video.write_video(str(out), _frames(), 25, audio_path=str(junk))
    with pytest.raises(VideoError, match="no frames"):
        video.write_video(str(out), [], 25)
    with pytest.raises(ValueError, match="frame size changed"):
        video.write_video(str(out), [_frames(1)[0], _frames(1, 48)[0]], 25)
    assert out.read_bytes() == b"previous result"
    assert sorted(os.listdir(tmp_path)) == ["junk.wav", "out.mp4", "speech.wav"]


def test_writing_over_a_directory_is_one_line(tmp_path):
    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        video.write_video(str(tmp_path / "d.mp4"), _frames(), 25)
    (tmp_path / "d.png").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        video.write_image(str(tmp_path / "d.png"), _frames(1)[0])
    assert sorted(os.listdir(tmp_path)) == ["d.mp4", "d.png"]


# --- real full and read-only file systems (need mount permission) ----------------------------
@pytest.fixture()
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs, unmounted afterwards; skipped where mounting is not permitted."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                              capture_output=True, check=False)
    except FileNotFoundError:
        pytest.skip("no mount command")
    if proc.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_full_disk(tiny_fs, wav):
    frames = _frames(25, 128)  # noise: far more than 64 KiB of H.264
    for audio_path in (None, wav):
        with pytest.raises(OutputError) as err:
            video.write_video(str(tiny_fs / "o.mp4"), frames, 25, audio_path=audio_path)
        assert _one_line(err) == f"cannot write {tiny_fs / 'o.mp4'}: no space left on device"
        assert os.listdir(tiny_fs) == []
    with pytest.raises(OutputError, match="no space left on device"):
        video.write_image(str(tiny_fs / "big.png"), np.tile(frames[0], (4, 4, 1)))
    assert os.listdir(tiny_fs) == []


def test_real_read_only_file_system(tiny_fs, wav):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    out = str(tiny_fs / "o.mp4")
    with pytest.raises(OutputError, match="read-only file system"):
        video.check_output(out, [wav])
    with pytest.raises(OutputError) as err:
        video.write_video(out, _frames(), 25, audio_path=wav)
    assert _one_line(err) == f"cannot write {out}: read-only file system"


def test_atomic_write_whole_or_nothing(tmp_path):
    """files.atomic_write (perceptual network, generation's caches): a complete file with the umask's
    mode, or an OutputError line and no temporary file."""
    out = tmp_path / "net.msgpack"
    files.atomic_write(str(out), b"first")
    files.atomic_write(str(out), b"second")
    assert out.read_bytes() == b"second"
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~files.umask()  # not mkstemp's 0600
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError) as err:
        files.atomic_write(str(tmp_path / "d"), b"x")
    assert _one_line(err) == f"cannot write {tmp_path / 'd'}: it is a directory"
    with pytest.raises(OutputError, match="folder does not exist"):
        files.atomic_write(str(tmp_path / "missing" / "f"), b"x")
    assert sorted(os.listdir(tmp_path)) == ["d", "net.msgpack"]


def test_atomic_write_on_a_full_disk(tiny_fs):
    with pytest.raises(OutputError) as err:
        files.atomic_write(str(tiny_fs / "big"), os.urandom(1 << 20))
    assert _one_line(err) == f"cannot write {tiny_fs / 'big'}: no space left on device"
    assert os.listdir(tiny_fs) == []


@pytest.mark.cli
def test_perceptual_cli_refuses_a_bad_output_before_training(tmp_path):
    import sys

    for out, cause in ((tmp_path / "missing" / "net.msgpack", "does not exist"), (tmp_path, "is a directory")):
        r = subprocess.run([sys.executable, "-m", "thflax.training.face_features", "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr[-2000:]
        assert cause in r.stderr and "Traceback" not in r.stderr
        assert "frames of" not in r.stdout  # refused before reading the corpus
    assert os.listdir(tmp_path) == []


def test_errors_are_input_errors():
    assert issubclass(OutputError, InputError)


# --- export.py's output folder ----------------------------------------------------------------
def _export(*args: str) -> subprocess.CompletedProcess:
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "export.py", *args], cwd=root, capture_output=True, text=True,
                          timeout=600)


def _error_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


def _contents(folder) -> dict[str, bytes]:
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


@pytest.mark.cli
def test_export_cli_missing_folder_is_one_line_before_loading(tiny_workdir, tmp_path):
    out = tmp_path / "missing" / "bundle"
    r = _export("--workdir", tiny_workdir, "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert _error_lines(r) == [f"error: cannot write {out}: folder {tmp_path / 'missing'} does not exist"], r.stderr
    # Checked before the workdir is read: a workdir that does not exist is not what is reported.
    r = _export("--workdir", str(tmp_path / "no_workdir"), "--out", str(out))
    assert r.returncode == 2 and _error_lines(r) == [f"error: cannot write {out}: folder {tmp_path / 'missing'} "
                                                     "does not exist"], r.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.cli
def test_export_head_gain_is_stored_and_a_bad_one_is_one_line(tiny_workdir, tmp_path):
    from thflax.inference import params

    out = tmp_path / "bundle"
    r = _export("--workdir", tiny_workdir, "--out", str(out), "--head_gain", "1.5")
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((out / params.EXPORT_FILE).read_text())
    assert json.loads(info["config"])["stl"]["head_gain"] == 1.5
    assert params.load_config(str(out)).stl.head_gain == 1.5
    assert params.load_config(tiny_workdir).stl.head_gain == 1.0  # the workdir is left as it was
    for bad in ("0", "nan", "4", "-1"):
        r = _export("--workdir", tiny_workdir, "--out", str(tmp_path / "b2"), "--head_gain", bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert len(_error_lines(r)) == 1 and "head_gain must be a number in (0, 3]" in r.stderr, r.stderr
    r = _export("--workdir", tiny_workdir, "--out", str(tmp_path / "b3"), "--format", "onnx", "--head_gain", "1.2")
    assert r.returncode == 2 and _error_lines(r) == ["error: --head_gain is for a parameters bundle: export one "
                                                     "with it, then --format onnx from that bundle"], r.stderr
    assert sorted(os.listdir(tmp_path)) == ["bundle"]


@pytest.mark.parametrize("where, code, cause", [
    ("write", errno.ENOSPC, "no space left on device"),
    ("write", errno.EDQUOT, "disk quota exceeded"),
    ("mkdtemp", errno.EROFS, "read-only file system"),
    ("mkdtemp", errno.EACCES, "folder not writable"),
    ("rename", errno.ENOSPC, "no space left on device"),
])
def test_export_write_fault_is_one_line_leaves_nothing_and_keeps_the_old_bundle(tiny_workdir, tmp_path,
                                                                                monkeypatch, where, code, cause):
    from thflax.inference import params

    old = tmp_path / "bundle"
    params.export(tiny_workdir, str(old))
    before = _contents(old)
    if where == "write":
        monkeypatch.setattr("builtins.open", _failing_open(code, ".thflax-export-", keep=0.5))
    elif where == "mkdtemp":
        monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: (_ for _ in ()).throw(OSError(code, "refused")))
    else:  # the new bundle complete, then the rename into place fails (the old one was moved aside)
        real_replace = os.replace

        def replace(src, dst):
            if os.path.basename(str(src)).startswith(".thflax-export-") and not str(src).endswith("-old"):
                raise OSError(code, os.strerror(code))
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
    for out, overwrite in ((old, True), (tmp_path / "new", False)):
        with pytest.raises(OutputError) as err:
            params.export(tiny_workdir, str(out), overwrite=overwrite)
        assert _one_line(err) == f"cannot write {out}: {cause}"
        assert sorted(os.listdir(tmp_path)) == ["bundle"]  # no temporary folder, no half bundle
        assert _contents(old) == before  # the existing bundle untouched


def test_export_real_full_disk_and_read_only_file_system(tiny_fs, tiny_workdir):
    from thflax.inference import params

    out = tiny_fs / "bundle"  # the tiny model's parameters are ~0.4 MiB; the file system holds 64 KiB
    with pytest.raises(OutputError) as err:
        params.export(tiny_workdir, str(out))
    assert _one_line(err) == f"cannot write {out}: no space left on device"
    assert os.listdir(tiny_fs) == []
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    with pytest.raises(OutputError) as err:
        params.export(tiny_workdir, str(out))
    assert _one_line(err) == f"cannot write {out}: read-only file system"
