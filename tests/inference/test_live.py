"""Live generation (thflax/inference/live.py): audio pushed in chunks of any size gives the frames the
offline path makes from the same audio with the causal features and blinks, each frame as soon as its
look-ahead has arrived; bad input is one line.

Randomly initialised networks of configs/tiny.py (the STL net's parameters perturbed so that the audio
and the carried GRU state matter); a photo made of noise with a face's landmarks placed on it (no dlib,
except where a photo without a face is refused).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from configs import tiny
from thflax import testing
from thflax.errors import AudioError, InputError, NoFaceError
from thflax.face import eyes
from thflax.inference import blinks, head_sway, live, networks
from thflax.inference.generation import compose_frame
from thflax.inference.photo import Reference
from thflax.io import audio, audio_stream
from thflax.models import build

from tests.io.test_audio_stream import _speechlike

FPS = 25.0


def _models(preset: str) -> networks.Models:
    c = tiny.get_config()
    c.ltv.generator = preset
    models = networks.Models(c, build.build_stl(c), build.init_stl(c, jax.random.PRNGKey(0)),
                             build.build_generator(c), build.init_generator(c, jax.random.PRNGKey(1)))
    leaves, tree = jax.tree.flatten(models.stl_variables["params"])
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    noisy = [leaf + 0.2 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
    models.stl_variables = {**models.stl_variables, "params": jax.tree.unflatten(tree, noisy)}
    return models


def _reference(size: int) -> Reference:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (180, 150, 3), dtype=np.uint8)
    landmarks = testing.face_landmarks(centre=(0.5, 0.5), scale=0.3) * np.array([150, 180], np.float32)
    return Reference.from_face(image, landmarks, size)


@pytest.fixture(scope="module")
def models() -> networks.Models:
    """The demo's kind of generator (warp), tiny: frames are pasted into the photo by the full-resolution
    warp, as the demo's are."""
    return _models("warp_tiny")


def _offline(models, reference, x, blink_rate, seed, **frame_options):
    """Offline generation's pieces on the causal features and blinks of the whole utterance."""
    windows = audio_stream.causal_windows(x, FPS, models.mfcc_config)
    lms = np.concatenate(list(networks.predict_landmarks(models, windows, reference.template)))
    lms = head_sway.apply_sway(lms, head_sway.sway_poses(np.arange(len(lms)), FPS, seed))
    if blink_rate > 0:
        lms = blinks.apply_blinks(lms, blinks.causal_blink_closure(x, len(lms), FPS, blink_rate, seed))
    frames = networks.render_frames(models, reference.crop, reference.template, [lms], batch=4, with_mask=True)
    return lms, [compose_frame(models, reference, img, lm, mask, **frame_options) for img, lm, mask in frames]


def _live(session: live.LiveSession, x: np.ndarray, rng: np.random.Generator, max_chunk: int):
    """Pushes x in random chunks: (frames, samples pushed when each came out, chunk ends)."""
    frames, arrived, bounds, i = [], [], [], 0
    while i < len(x):
        n = int(rng.integers(1, max_chunk))
        got = session.push(x[i:i + n])
        i = min(i + n, len(x))
        bounds.append(i)
        frames += got
        arrived += [i] * len(got)
    got = session.flush()
    return frames + got, arrived + [len(x)] * len(got), bounds


@pytest.mark.heavy  # builds and compiles the STL net and generator in-process (in CI, not in test-fast)
@pytest.mark.parametrize("frame_options", [dict(crop_only=False, landmarks_video=False, size=None),
                                           dict(crop_only=True, landmarks_video=True, size=96)])
def test_live_frames_equal_the_offline_path_and_come_out_on_time(models, frame_options):
    x = _speechlike(3.0, seed=4)
    reference = _reference(models.image_size)
    lms, expected = _offline(models, reference, x, 30.0, 3, **frame_options)
    assert len(expected) == audio.num_video_frames(len(x), FPS) == 75
    session = live.LiveSession(models, reference, fps=FPS, blink_rate=30.0, blink_seed=3, **frame_options)
    session.warmup()
    frames, arrived, bounds = _live(session, x, np.random.default_rng(1), 1500)
    assert [f.index for f in frames] == list(range(len(expected)))
    np.testing.assert_allclose(np.stack([f.landmarks for f in frames]), lms, atol=1e-5)
    for f, e in zip(frames, expected):
        assert f.image.shape == e.shape and f.image.dtype == np.uint8
        diff = np.abs(f.image.astype(int) - e.astype(int))
        # The generator decodes 1, 2 or 4 frames per call here, 4 offline: float rounding may move a
        # few pixels by a level.
        assert diff.max() <= 2 and diff.mean() < 0.01, (f.index, diff.max(), diff.mean())
    # Frame k comes out of the push that brought sample samples_needed(k), not a later one.
    for f, got in zip(frames, arrived):
        need = audio_stream.samples_needed(f.index, FPS, models.mfcc_config)
        assert f.samples_needed == need
        assert got == next((b for b in bounds if b >= need), len(x)), (f.index, got, need)
    assert session.lookahead_seconds == pytest.approx(0.126)
    # The eyes blinked (closure applied to the predicted lids).
    ear = eyes.eye_aspect_ratio(np.stack([f.landmarks for f in frames]))
    assert ear.min() < 0.7 * np.median(ear)


@pytest.mark.heavy  # builds and compiles the STL net and generator in-process (in CI, not in test-fast)
def test_blinks_and_head_motion_go_on_in_silence_and_the_state_is_carried(models):
    reference = _reference(models.image_size)
    session = live.LiveSession(models, reference, blink_rate=30.0, blink_seed=0, crop_only=True)
    frames = []
    for _ in range(200):  # 8 s of digital silence in 40 ms chunks
        frames += session.push(np.zeros(640, np.float32))
    assert len(frames) == 200 - 3  # the last 3 wait for the look-ahead (126 ms)
    lms = np.stack([f.landmarks for f in frames])
    ear = eyes.eye_aspect_ratio(lms)
    assert len(eyes.closure_runs(ear < 0.8 * np.median(ear))) >= 2
    # The STL net's head settles on constant input; the sway keeps it moving (~1 % of the crop).
    centre = lms[-100:, 27:36].mean(1)
    assert np.ptp(centre, axis=0).max() > 0.004 and np.abs(np.diff(centre, axis=0)).max() < 0.002
    still = live.LiveSession(models, reference, blink_rate=0, sway=0.0, crop_only=True)
    settled = np.stack([f.landmarks for f in still.push(np.zeros(200 * 640, np.float32))])[-100:, 27:36].mean(1)
    assert np.ptp(settled, axis=0).max() < 2e-4
    # Fresh sessions on chunks of other sizes make the same landmarks (the GRU state carried).
    other = live.LiveSession(models, reference, blink_rate=30.0, blink_seed=0, crop_only=True)
    again = other.push(np.zeros(200 * 640, np.float32))
    np.testing.assert_allclose(np.stack([f.landmarks for f in again]), np.stack([f.landmarks for f in frames]),
                               atol=1e-5)


@pytest.mark.heavy  # builds and compiles the STL net and generator in-process (in CI, not in test-fast)
def test_live_heads_move_by_the_models_head_gain_as_offline(models):
    import copy
    import dataclasses

    config = copy.deepcopy(models.config)
    config.stl.head_gain = 1.5
    gained = dataclasses.replace(models, config=config)  # the same networks; programs are named by their scale
    x = _speechlike(1.2, seed=5)
    reference = _reference(models.image_size)
    options = dict(crop_only=True, landmarks_video=False, size=None)
    lms, _ = _offline(gained, reference, x, 0.0, 0, **options)
    session = live.LiveSession(gained, reference, fps=FPS, blink_rate=0.0, blink_seed=0, **options)
    got = np.stack([f.landmarks for f in session.push(x) + session.flush()])
    np.testing.assert_allclose(got, lms, atol=1e-5)
    plain, _ = _offline(models, reference, x, 0.0, 0, **options)
    assert np.abs(got - plain)[:, :48].max() > 1e-3  # the gain moved the head: not a comparison of equals


@pytest.mark.heavy  # builds and compiles the STL net and generator in-process (in CI, not in test-fast)
def test_bad_live_input_is_one_clear_error(models, tmp_path):
    session = live.LiveSession(models, _reference(models.image_size), crop_only=True)
    with pytest.raises(AudioError, match="NaN or infinite"):
        session.push(np.array([0.0, np.nan], np.float32))
    first = session.push(np.zeros(4000, np.float32))  # the NaN chunk was refused whole: not counted
    assert len(first) + len(session.flush()) == audio.num_video_frames(4000, FPS) == 6
    assert session.flush() == []
    with pytest.raises(InputError, match="has ended"):
        session.push(np.zeros(10, np.float32))
    with pytest.raises(InputError, match="out of range"):
        live.LiveSession(models, _reference(models.image_size), fps=500.0)


@pytest.mark.heavy  # builds and compiles the STL net and generator in-process (in CI, not in test-fast)
def test_a_photo_without_a_face_is_refused_in_one_line(models, tmp_path):
    import cv2

    noise = str(tmp_path / "noise.png")
    cv2.imwrite(noise, np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    with pytest.raises(NoFaceError) as e:
        live.LiveSession.from_photo(models, noise)
    assert "no face" in str(e.value) and "\n" not in str(e.value)


def test_mjpeg_server_sends_each_new_frame_to_a_client():
    import urllib.request

    from thflax.inference import live_io

    server = live_io.MjpegServer("127.0.0.1", 0)
    try:
        frames = [np.full((32, 48, 3), v, np.uint8) for v in (10, 120, 250)]
        import threading

        got = []

        def client():
            with urllib.request.urlopen(server.url, timeout=30) as r:
                assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
                for _ in frames:
                    while not r.readline().startswith(b"--"):
                        pass
                    headers = dict(r.readline().decode().strip().split(": ", 1) for _ in range(2))
                    r.readline()
                    got.append(r.read(int(headers["Content-Length"])))

        t = threading.Thread(target=client)
        t.start()
        import time

        for f in frames:
            time.sleep(0.3)  # the client is connected and waiting: it gets every frame
            server.write(live_io.encode_jpeg(f))
        t.join(30)
    finally:
        server.close()
    import cv2

    decoded = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in got]
    assert [int(np.median(d)) for d in decoded] == [10, 120, 250] and decoded[0].shape == (32, 48, 3)


# --- generate.py --live in a subprocess -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(models, tmp_path_factory):
    """An export bundle of the random networks (no training): what generate.py --checkpoint reads."""
    from thflax.inference import params

    out = str(tmp_path_factory.mktemp("live") / "bundle")
    params.export_variables(models.config, {"stl": models.stl_variables, "ltv": models.generator_variables}, out,
                            source="random initialisation (tests)")
    return out


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    import cv2
    import skimage.data

    path = str(tmp_path_factory.mktemp("live_photo") / "astronaut.png")
    cv2.imwrite(path, cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def _pcm(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def _generate_live(*args, stdin: bytes | None = b"", timeout: float = 600):
    import subprocess
    import sys

    from tests.helpers import ROOT

    return subprocess.run([sys.executable, "generate.py", "--live", *args], cwd=ROOT, input=stdin,
                          capture_output=True, timeout=timeout)


def _error_lines(r) -> list[str]:
    return [line for line in r.stderr.decode(errors="replace").splitlines() if line.startswith("error:")]


@pytest.mark.cli
def test_cli_live_from_stdin_streams_mjpeg_and_records_an_mp4_with_the_audio(bundle, photo, tmp_path):
    from thflax.io import video

    x = _speechlike(3.0, seed=6)
    out = tmp_path / "live.mp4"
    r = _generate_live("--checkpoint", bundle, "--image", photo, "--live_in", "-", "--live_mjpeg", "-",
                       "--live_out", str(out), "--size", "256", stdin=_pcm(x))
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    n = audio.num_video_frames(len(x), FPS)
    # stdout holds the frames only: one JPEG per frame, nothing else (the log went to stderr).
    assert r.stdout.startswith(b"\xff\xd8") and r.stdout.count(b"\xff\xd8\xff") == n
    frames, fps = video.read_video(str(out))
    assert fps == 25 and len(frames) == n and frames.shape[1] == 256
    assert "Audio:" in _ffmpeg_info(str(out))
    assert not list(tmp_path.glob(".thflax-*"))
    assert f"live: {n} frames from 3.00 s of audio" in r.stderr.decode()


def _ffmpeg_info(path: str) -> str:
    import subprocess

    import imageio_ffmpeg

    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True,
                          text=True).stderr


@pytest.mark.cli
def test_cli_live_stopped_by_ctrl_c_keeps_what_was_heard(bundle, photo, tmp_path):
    """A microphone is stopped with Ctrl-C: the stream ends there and the recording is written."""
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT, sigint_delivered
    from thflax.io import video

    out = tmp_path / "live.mp4"
    with sigint_delivered():  # Ctrl-C must reach the child even when the suite runs as a background job
        proc = subprocess.Popen([sys.executable, "generate.py", "--live", "--checkpoint", bundle, "--image", photo,
                                 "--live_in", "-", "--live_out", str(out), "--crop_only"], cwd=ROOT,
                                stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        proc.stdin.write(_pcm(_speechlike(2.0, seed=7)))
        proc.stdin.flush()
        # Wait until it is listening (models loaded), then give it time to read the 2 s.
        deadline = time.time() + 300
        err = b""
        while b"listening" not in err and time.time() < deadline and proc.poll() is None:
            err += proc.stderr.read1(4096)
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (err + rest).decode(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    assert "stopped (SIGINT)" in text and "Traceback" not in text
    assert len(video.read_video(str(out))[0]) == audio.num_video_frames(32000, FPS)


@pytest.mark.cli
@pytest.mark.parametrize("case,message", [
    ("no_face", "no face found"),
    ("empty_stdin", "no audio arrived on stdin"),
    ("one_sample", "no frames were written"),
    ("no_microphone", "no microphone"),
    ("no_output", "needs somewhere to send the frames"),
    ("with_audio", "--live takes its speech from --live_in"),
    ("without_live", "need --live"),
])
def test_cli_live_bad_input_is_one_line_and_leaves_nothing(bundle, photo, tmp_path, case, message):
    import importlib.util

    import cv2

    if case == "no_microphone" and importlib.util.find_spec("sounddevice") is not None:
        pytest.skip("sounddevice is installed: this machine may have a microphone")
    out = tmp_path / "live.mp4"
    image, stdin = photo, _pcm(_speechlike(1.0))
    args = ["--live_in", "-", "--live_out", str(out)]
    if case == "no_face":
        image = str(tmp_path / "noise.png")
        cv2.imwrite(image, np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    elif case == "empty_stdin":
        stdin = b""
    elif case == "one_sample":
        stdin = b"\x00\x10"
    elif case == "no_microphone":
        args = ["--live_in", "default", "--live_out", str(out)]
    elif case == "no_output":
        args = ["--live_in", "-"]
    elif case == "with_audio":
        args += ["--audio", "x.wav"]
    if case != "without_live":
        r = _generate_live("--checkpoint", bundle, "--image", image, *args, stdin=stdin)
    else:
        import subprocess
        import sys

        from tests.helpers import ROOT

        r = subprocess.run([sys.executable, "generate.py", "--checkpoint", bundle, "--image", image, "--audio", "a.wav",
                            "--out", str(out), "--live_out", str(out)], cwd=ROOT, capture_output=True, timeout=300)
    lines = _error_lines(r)
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr.decode()[-1500:]
    assert b"Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".thflax-*"))
