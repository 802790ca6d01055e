"""Tests of video files (thflax/io/video.py): round trip, atomic writes, muxing, errors."""

import numpy as np
import pytest

from thflax.io import video
from thflax.errors import ImageError, VideoError


def test_video_round_trip_and_atomic_writes(tmp_path, moving_clip):
    path = tmp_path / "v.mp4"
    n = video.write_video(str(path), moving_clip[:30], fps=25)
    frames, fps = video.read_video(str(path))
    assert n == 30 and frames.shape == (30, 256, 256, 3) and fps == 25
    assert np.abs(frames.astype(int) - moving_clip[:30]).mean() < 6  # H.264, good quality
    bad = tmp_path / "bad.mp4"
    with pytest.raises(RuntimeError):
        with video.VideoWriter(str(bad), 25) as w:
            w.write(moving_clip[0])
            raise RuntimeError("generator crashed")
    assert not bad.exists() and not list(tmp_path.glob(".thflax-*"))  # no half-written file left


@pytest.mark.parametrize("audio_seconds", [0.6, 1.19, 1.5])
def test_muxed_video_keeps_every_frame_and_lasts_as_long_as_the_frames(tmp_path, moving_clip, audio_seconds):
    import soundfile as sf

    wav = str(tmp_path / "a.wav")
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(int(16000 * audio_seconds))).astype(np.float32),
             16000)
    path = str(tmp_path / "v.mp4")
    # Audio shorter than, about as long as, and longer than the 29 frames (1.16 s): all frames are kept
    # (ffmpeg's -shortest sometimes dropped the last one) and the audio never outlasts the frames.
    assert video.write_video(path, moving_clip[:29], fps=25, audio_path=wav) == 29
    assert len(video.read_video(path)[0]) == 29
    import imageio_ffmpeg
    import subprocess

    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True,
                           text=True).stderr
    hh, mm, ss = probe.split("Duration: ")[1].split(",")[0].split(":")
    assert "Audio:" in probe and float(ss) <= 29 / 25 + 0.03, probe


def test_video_and_image_errors(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        video.read_video(str(tmp_path / "nope.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(VideoError):
        video.read_video(str(junk))
    with pytest.raises(ImageError, match="not a readable image"):
        video.read_image(str(junk))


_SIGNAL_INSIDE_POPEN = r'''
import os, signal, subprocess, sys
import numpy as np
import soundfile as sf
from thflax import cli
from thflax.io import video

stage, out = sys.argv[1], sys.argv[2]
work = os.path.dirname(out)
if stage == "mux":  # its inputs, made before the signal is armed
    video.write_video(os.path.join(work, "clip.mp4"), [np.zeros((64, 64, 3), np.uint8)] * 5, 25)
    sf.write(os.path.join(work, "a.wav"), np.zeros(3200, np.float32), 16000)
real = subprocess.Popen._execute_child


def exec_then_signal(self, args, *rest, **kwargs):
    """ffmpeg has been exec'd; SIGTERM arrives while Popen.__init__ is still running (the window a
    50-ms poll for a running ffmpeg can hit), so Popen raises without killing its child."""
    real(self, args, *rest, **kwargs)
    if os.path.basename(str(args[0])).startswith("ffmpeg") and "-version" not in args:
        signal.raise_signal(signal.SIGTERM)


cli.catch_signals()
subprocess.Popen._execute_child = exec_then_signal
try:
    if stage == "encode":
        with video.VideoWriter(os.path.join(out, "o.mp4"), fps=25) as w:
            w.write(np.zeros((64, 64, 3), np.uint8))
    else:
        video.mux_audio(os.path.join(work, "clip.mp4"), os.path.join(work, "a.wav"), os.path.join(out, "o.mp4"))
    print("not interrupted")
except cli.Interrupted:
    print("interrupted")
'''


@pytest.mark.parametrize("stage", ["encode", "mux"])
def test_a_signal_as_ffmpeg_starts_stops_it_and_leaves_no_file(tmp_path, stage):
    """SIGTERM while `subprocess.Popen` is still returning: the ffmpeg it started must be stopped with the
    rest, or, its input closed, it writes the temporary file the cleanup has just deleted (a 1-in-4
    failure of generate.py's SIGTERM test, tests/test_generate_inputs.py)."""
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT

    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([sys.executable, "-c", _SIGNAL_INSIDE_POPEN, stage, str(out)], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "interrupted", (r.stdout, r.stderr[-2000:])
    time.sleep(1.5)  # an ffmpeg left running would have written its file by now
    assert list(out.iterdir()) == []
