"""generate.py's inputs for the people who use it: --text instead of audio, --jobs CSV files, and the
start-up caches (a second run compiles nothing).

Tests that run generate.py on a trained workdir are marked `cli` (and, through the corpus fixtures,
`corpus`); the others check arguments that fail before any model is needed.
"""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.helpers import sigint_delivered
import skimage.data
import soundfile as sf


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCE = "Bin blue at F two now."


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("photo") / "astronaut.png")
    cv2.imwrite(path, cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def gen_workdir(tiny_workdir) -> str:
    return tiny_workdir


def _generate(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "generate.py", "--quiet", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _errors(r) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


def _timings(r) -> dict[str, float]:
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("timings:")][-1]
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def _envelope(x: np.ndarray, hop: int = 320) -> np.ndarray:
    n = len(x) // hop
    return np.sqrt((x[:n * hop].reshape(n, hop) ** 2).mean(1))


# --- without a trained model --------------------------------------------------------------------


def test_numpy_mfcc_matches_the_training_features():
    from thflax.io import audio
    from thflax.io import speech

    utt = speech.synthesize(SENTENCE, leading_silence=0.2, trailing_silence=0.3)
    noise = np.random.default_rng(0).normal(0, 0.1, 12345).astype(np.float32)
    for signal in (utt.audio, noise):
        for cfg in (audio.MfccConfig(), audio.MfccConfig(n_mfcc=13, n_mels=26, win_seconds=0.04)):
            want, got = audio.mfcc(signal, cfg), audio.mfcc_numpy(signal, cfg)
            assert got.shape == want.shape and got.dtype == np.float32
            np.testing.assert_allclose(got, want, atol=2e-3)


def test_speak_to_wav_and_its_errors(tmp_path):
    from thflax.inference import text_to_speech
    from thflax.errors import InputError

    wav = tmp_path / "speech.wav"
    seconds = text_to_speech.speak_to_wav(SENTENCE, str(wav), voice="en-us+f3", rate=160, pitch=60)
    info = sf.info(str(wav))
    assert info.samplerate == 16000 and abs(info.frames / 16000 - seconds) < 1e-3 and seconds > 1.0
    bad = [(dict(text="   "), "empty"), (dict(text=SENTENCE, voice="xx-nope"), "unknown voice 'xx-nope'"),
           (dict(text=SENTENCE, rate=20), "rate 20"), (dict(text=SENTENCE, pitch=101), "pitch 101")]
    for kwargs, message in bad:
        out = tmp_path / "bad.wav"
        with pytest.raises(InputError, match=message) as e:
            text_to_speech.speak_to_wav(path=str(out), **kwargs)
        assert "\n" not in str(e.value) and not out.exists()


def test_signal_during_synthesis_is_raised_once_espeak_returns(monkeypatch):
    """eSpeak calls back into Python while it speaks; a SIGTERM handled there (the CLIs raise
    cli.Interrupted) would be printed as "Exception ignored" and lost, synthesis going on. It is held
    until eSpeak returns, then raised."""
    from thflax import cli
    from thflax.io import speech

    sent = []

    base = speech._SynthCallback

    class CallbackThatSignals(base):  # the same C function type, for eSpeak's binding
        _flags_, _restype_, _argtypes_ = base._flags_, base._restype_, base._argtypes_

        def __new__(cls, fn):
            def on_synth(*args):
                if not sent:  # SIGTERM arrives while eSpeak is inside its callbacks
                    sent.append(True)
                    os.kill(os.getpid(), signal.SIGTERM)
                return fn(*args)
            return super().__new__(cls, on_synth)

    monkeypatch.setattr(speech, "_SynthCallback", CallbackThatSignals)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    hook, swallowed = sys.unraisablehook, []
    try:
        cli.catch_signals()
        sys.unraisablehook = swallowed.append  # records what Python had to drop (not re-sent here)
        with pytest.raises(cli.Interrupted) as err:
            speech.synthesize(SENTENCE)
    finally:
        sys.unraisablehook = hook
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert sent and err.value.signum == signal.SIGTERM and not swallowed


def test_generate_takes_audio_or_text(photo, tmp_path):
    from thflax.inference import generation
    from thflax.errors import InputError

    out = str(tmp_path / "o.mp4")
    with pytest.raises(InputError, match="not both"):
        generation.generate("no-checkpoint", photo, "speech.wav", out, text="hello")
    with pytest.raises(InputError, match="give audio or text"):
        generation.generate("no-checkpoint", photo, out=out)
    assert os.listdir(tmp_path) == []


def test_cli_text_with_audio_is_one_line(photo, tmp_path):
    out = tmp_path / "o.mp4"
    r = _generate("--checkpoint", "no-checkpoint", "--image", photo, "--audio", photo, "--text", "hi",
                  "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert _errors(r) == ["error: give --audio or --text, not both"], r.stderr[-1000:]
    r = _generate("--checkpoint", "no-checkpoint", "--image", photo, "--out", str(out))
    assert r.returncode == 2 and len(_errors(r)) == 1 and "--audio or --text" in _errors(r)[0]
    assert not out.exists()


def test_cli_unknown_voice_is_one_line_and_leaves_no_files(photo, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "o.mp4"
    # The voice is tried (after the photo is read) before any model is loaded.
    r = _generate("--checkpoint", "no-checkpoint", "--image", photo, "--text", SENTENCE, "--voice", "xx-nope",
                  "--out", str(out), env={"TMPDIR": str(temp)})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = _errors(r)
    assert len(errors) == 1 and "unknown voice 'xx-nope'" in errors[0], r.stderr[-1000:]
    assert not out.exists() and list(temp.iterdir()) == [] and sorted(os.listdir(tmp_path)) == ["tmp"]


@pytest.mark.parametrize("case,message", [
    ("truncated_png", "not a readable image"),  # libpng wrote "libpng error: Read Error" beside it
    ("truncated_mp4", "cannot open video"),  # ffmpeg inside OpenCV wrote "[mov,mp4,...] moov atom not found"
    ("output_in_proc", "cannot write /proc/x.mp4: folder /proc cannot take new files"),  # was "does not exist"
])
def test_cli_bad_file_is_exactly_one_line(photo, tmp_path, case, message):
    """Bad files give one `error:` line naming the cause and nothing else on stderr (no library
    chatter), exit status 2, and leave the inputs as they were and no files behind."""
    from thflax.io import video

    inputs, temp = tmp_path / "inputs", tmp_path / "tmp"
    inputs.mkdir()
    temp.mkdir()
    speech = inputs / "speech.wav"
    sf.write(speech, 0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220).astype(np.float32), 16000)
    source = ["--image", photo]
    if case == "truncated_png":
        data = pathlib.Path(photo).read_bytes()
        (inputs / "cut.png").write_bytes(data[:len(data) // 2])
        source = ["--image", str(inputs / "cut.png")]
    elif case == "truncated_mp4":
        whole = tmp_path / "whole.mp4"
        frames = np.random.default_rng(0).integers(0, 255, (50, 64, 64, 3), dtype=np.uint8)
        video.write_video(str(whole), frames, 25)
        data = whole.read_bytes()
        whole.unlink()
        (inputs / "cut.mp4").write_bytes(data[:len(data) // 2])  # the index (moov) is at the end: cut off
        source = ["--video", str(inputs / "cut.mp4")]
    out = "/proc/x.mp4" if case == "output_in_proc" else str(tmp_path / "o.mp4")
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    # The inputs and the output are checked before any model is needed.
    r = _generate("--checkpoint", "no-checkpoint", *source, "--audio", str(speech), "--out", out,
                  env={"TMPDIR": str(temp)})
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr[-2000:]
    if case == "truncated_mp4":
        assert "moov atom not found" in lines[0]  # ffmpeg's reason, as the cause on the one line
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["inputs", "tmp"] and list(temp.iterdir()) == []
    assert not os.path.exists("/proc/x.mp4")


@pytest.mark.parametrize("csv_text,message", [
    ("", "is empty"),
    ("image,out\nface.png,o.mp4\n", "no audio or text column"),
    ("audio,out\na.wav,o.mp4\n", "no image or video column"),
    ("image,audio,out,colour\nface.png,a.wav,o.mp4,red\n", "unknown column 'colour'"),
    ("image,audio,out\n", "no jobs"),
])
def test_cli_bad_jobs_file_is_one_line(tmp_path, csv_text, message):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(csv_text)
    r = _generate("--checkpoint", "no-checkpoint", "--jobs", str(jobs))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = _errors(r)
    assert len(errors) == 1 and message in errors[0], r.stderr[-1000:]
    r = _generate("--checkpoint", "no-checkpoint", "--jobs", str(jobs), "--out", "x.mp4")
    assert r.returncode == 2 and "drop --out" in r.stderr


@pytest.mark.parametrize("flag,value,message", [
    ("--fps", "nan", "--fps nan is out of range (1..120 frames per second)"),
    ("--fps", "1e9", "--fps 1e+09 is out of range (1..120 frames per second)"),
    ("--fps", "inf", "--fps inf is out of range"),
    ("--fps", "0", "--fps 0 is out of range"),
    ("--size", "100000", "--size 100000 is out of range (16..4096 pixels)"),
    ("--size", "8", "--size 8 is out of range"),
    ("--batch", "0", "--batch 0 is out of range (1..256 frames)"),
    ("--batch", "1000000", "--batch 1000000 is out of range"),
    ("--rate", "5000", "--rate 5000 is out of range (80..450 words per minute)"),
    ("--pitch", "-1", "--pitch -1 is out of range (0..100)"),
    ("--face_index", "-1", "--face_index -1 is out of range (0 or more)"),
    ("--head_motion", "3.5", "--head_motion 3.5 is out of range (0..3)"),
    ("--head_motion", "-1", "--head_motion -1 is out of range (0..3)"),
    ("--face_box", "50,50,10,10", "--face_box must be four pixel numbers x0,y0,x1,y1 with x0 < x1 and y0 < y1"),
])
def test_cli_numeric_flag_out_of_range_is_one_line_before_any_work(photo, tmp_path, flag, value, message):
    """Each numeric flag has a range, checked before the photo, the speech or the models are touched: the
    checkpoint does not exist, so a check made any later would report that instead."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    speech = tmp_path / "speech.wav"
    sf.write(speech, np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32), 16000)
    out = tmp_path / "o.mp4"
    r = _generate("--checkpoint", "no-checkpoint", "--image", photo, "--audio", str(speech), "--out", str(out),
                  f"{flag}={value}", env={"TMPDIR": str(temp)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    errors = _errors(r)
    assert r.stderr.strip().splitlines() == errors and len(errors) == 1 and message in errors[0], r.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["speech.wav", "tmp"] and list(temp.iterdir()) == []


def test_generate_refuses_numbers_out_of_range_before_reading_anything(tmp_path):
    """The library's one check (options.check_options): InputError with one line, raised before the
    inputs are read (they do not exist here) or anything is written."""
    from thflax.inference import generation
    from thflax.errors import InputError

    out = tmp_path / "o.mp4"
    bad = [(dict(fps=float("nan")), "fps nan is out of range"), (dict(fps=1e9), "fps 1e+09 is out of range"),
           (dict(fps="25"), "fps must be a number"), (dict(size=100000), "size 100000 is out of range"),
           (dict(size=512.0), "size must be a whole number"), (dict(batch=True), "batch must be a whole number"),
           (dict(batch=10**9), "batch 1000000000 is out of range"), (dict(face_index=-3), "face_index -3"),
           (dict(face_box=(1, 2, 3)), "face_box must be four"),
           (dict(face_box=(0, 0, float("inf"), 9)), "face_box must be four"),
           (dict(text="hi", rate=float("nan")), "speech rate must be a whole number"),
           (dict(text="hi", pitch=10**6), "speech pitch 1000000 is out of range"),
           (dict(head_motion=float("nan")), "head_motion nan is out of range (0..3)"),
           (dict(head_motion=-0.1), "head_motion -0.1 is out of range")]
    for kwargs, message in bad:
        audio = None if "text" in kwargs else "missing.wav"
        with pytest.raises(InputError, match=re.escape(message)) as e:
            generation.generate("no-checkpoint", "missing.png", audio, str(out), **kwargs)
        assert "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []
    # In range, the same call gets as far as the missing photo: the check refuses nothing it should take.
    with pytest.raises(InputError, match="image file not found"):
        generation.generate("no-checkpoint", "missing.png", "missing.wav", str(out), fps=120.0, size=4096, batch=256,
                            face_index=0)


def test_size_that_would_make_huge_frames_is_refused(photo, tmp_path):
    """--size sets the height; a wide photo at a large size would make frames of hundreds of millions of
    pixels (width follows the aspect ratio), so the frame's area is bounded too."""
    from thflax.inference import generation
    from thflax.errors import InputError

    wide = np.full((512, 2560, 3), 255, np.uint8)
    wide[:, :512] = cv2.imread(photo)
    path = str(tmp_path / "wide.png")
    cv2.imwrite(path, wide)
    with pytest.raises(InputError, match=r"size 4096 makes 20480x4096 frames .* more than 33,554,432 pixels"):
        generation.generate("no-checkpoint", path, "missing.wav", str(tmp_path / "o.mp4"), size=4096)
    assert os.listdir(tmp_path) == ["wide.png"]


def test_jobs_rows_with_numbers_out_of_range_are_named_before_the_models_load(photo, tmp_path):
    """A jobs row's rate, pitch and face_index get the flags' ranges; with no good row no model is loaded
    (the checkpoint does not exist, and is never reported)."""
    (tmp_path / "jobs.csv").write_text(
        "image,text,out,rate,pitch,face_index\n"
        f"{photo},Hello,a.mp4,5000,,\n"
        f"{photo},Hello,b.mp4,,101,\n"
        f"{photo},Hello,c.mp4,,,-2\n")
    r = _generate("--checkpoint", "no-checkpoint", "--jobs", str(tmp_path / "jobs.csv"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert _errors(r) == [
        "error: jobs.csv row 1 (line 2): rate 5000 is out of range (80..450 words per minute)",
        "error: jobs.csv row 2 (line 3): pitch 101 is out of range (0..100)",
        "error: jobs.csv row 3 (line 4): face_index -2 is out of range (0 or more)"], r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "0 of 3 videos written"
    assert os.listdir(tmp_path) == ["jobs.csv"]


def _jobs_folder(tmp_path: pathlib.Path, photo: str) -> pathlib.Path:
    """A folder with a photo, a speech file and a video the user cares about (victim.mp4)."""
    folder = tmp_path / "batch"
    (folder / "sub").mkdir(parents=True)
    (folder / "face.png").write_bytes(pathlib.Path(photo).read_bytes())
    sf.write(folder / "speech.wav", np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32), 16000)
    (folder / "victim.mp4").write_bytes(b"the user's own video" * 100)
    return folder


@pytest.mark.parametrize("rows,message", [
    # The issue's case: row 1 would overwrite victim.mp4, then row 2 would dub row 1's output.
    ("face.png,,speech.wav,victim.mp4\n,victim.mp4,speech.wav,r2.mp4\n",
     "row 1 (line 2)'s out victim.mp4 is row 2 (line 3)'s video input; writing it would destroy that input"),
    # The same file spelled differently, through a symlink and through a hard link.
    ("face.png,,speech.wav,./victim.mp4\n,sub/../victim.mp4,speech.wav,r2.mp4\n",
     "row 1 (line 2)'s out ./victim.mp4 is row 2 (line 3)'s video input sub/../victim.mp4"),
    ("face.png,,speech.wav,link.mp4\n,victim.mp4,speech.wav,r2.mp4\n",
     "row 1 (line 2)'s out link.mp4 is row 2 (line 3)'s video input victim.mp4"),
    ("face.png,,speech.wav,hard.mp4\n,victim.mp4,speech.wav,r2.mp4\n",
     "row 1 (line 2)'s out hard.mp4 is row 2 (line 3)'s video input victim.mp4"),
    # An out that a later row reads before it exists (row 2 would dub row 1's new video).
    ("face.png,,speech.wav,new.mp4\n,new.mp4,speech.wav,r2.mp4\n",
     "row 1 (line 2)'s out new.mp4 is row 2 (line 3)'s video input"),
    # Its own row's input, an earlier row's input, and an image or audio input.
    ("face.png,,speech.wav,r1.mp4\nface.png,,victim.mp4,victim.mp4\n",
     "row 2 (line 3)'s out victim.mp4 is its own audio input"),
    ("face.png,,victim.mp4,r1.mp4\nface.png,,speech.wav,victim.mp4\n",
     "row 2 (line 3)'s out victim.mp4 is row 1 (line 2)'s audio input"),
    # Two rows writing one file (the second would replace the first's video), and a bad row's input.
    ("face.png,,speech.wav,same.mp4\nface.png,,speech.wav,sub/../same.mp4\n",
     "row 1 (line 2)'s out same.mp4 is also row 2 (line 3)'s out"),
    ("missing.png,victim.mp4,speech.wav,r1.mp4\nface.png,,speech.wav,victim.mp4\n",
     "row 2 (line 3)'s out victim.mp4 is row 1 (line 2)'s video input"),
])
def test_jobs_output_that_is_any_rows_input_is_refused_before_anything_is_written(photo, tmp_path, rows, message):
    """An out that is a file any row reads (or another row's out) refuses the whole jobs file, before the
    models load: one line naming the rows and the path, exit status 2, victim.mp4 unchanged, no new file."""
    folder = _jobs_folder(tmp_path, photo)
    os.symlink("victim.mp4", folder / "link.mp4")
    os.link(folder / "victim.mp4", folder / "hard.mp4")
    (folder / "jobs.csv").write_text("image,video,audio,out\n" + rows)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    temp = tmp_path / "tmp"
    temp.mkdir()
    r = _generate("--checkpoint", "no-checkpoint", "--jobs", str(folder / "jobs.csv"), env={"TMPDIR": str(temp)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: jobs.csv: {message}"), r.stderr[-2000:]
    assert lines[0].endswith("; nothing was written")
    assert r.stdout == ""
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in folder.iterdir()) == sorted([*before, "sub"]) and list(temp.iterdir()) == []


def test_jobs_without_clashes_go_on_to_the_models(photo, tmp_path):
    """The clash check refuses nothing it should take: distinct outs beside the same inputs (and an out in a
    sub-folder named like an input) get as far as loading the (here missing) checkpoint."""
    folder = _jobs_folder(tmp_path, photo)
    (folder / "jobs.csv").write_text("image,video,audio,out\n"
                                     "face.png,,speech.wav,r1.mp4\n"
                                     ",victim.mp4,speech.wav,sub/victim.mp4\n"
                                     "face.png,,speech.wav,./r3.mp4\n")
    r = _generate("--checkpoint", "no-checkpoint", "--jobs", str(folder / "jobs.csv"))
    assert r.returncode == 2 and _errors(r) == ["error: checkpoint folder not found: no-checkpoint"], r.stderr[-2000:]


# --- with a trained model -----------------------------------------------------------------------


@pytest.mark.cli
def test_cli_text_makes_a_video_with_the_synthesised_speech(gen_workdir, photo, tmp_path):
    from thflax.io import audio, video
    from thflax.inference import text_to_speech

    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "hello.mp4"
    r = _generate("--checkpoint", gen_workdir, "--image", photo, "--text", SENTENCE, "--voice", "en-us+m3",
                  "--rate", "150", "--pitch", "40", "--out", str(out), env={"TMPDIR": str(temp)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert list(temp.iterdir()) == []  # the synthesised wav (and eSpeak's library copy) are gone
    spoken = tmp_path / "spoken.wav"
    seconds = text_to_speech.speak_to_wav(SENTENCE, str(spoken), voice="en-us+m3", rate=150, pitch=40)
    frames, fps = video.read_video(str(out))
    assert abs(len(frames) - int(seconds * fps)) <= 1
    track = audio.load_audio(str(out))  # the mp4's audio track
    assert abs(len(track) / audio.SAMPLE_RATE - seconds) < 0.1
    want, got = _envelope(audio.load_audio(str(spoken))), _envelope(track)
    n = min(len(want), len(got))
    assert np.corrcoef(want[:n], got[:n])[0, 1] > 0.95  # the same speech, not just as long


@pytest.mark.cli
def test_cli_jobs_make_the_good_rows_and_name_the_bad_one(gen_workdir, photo, tmp_path):
    from thflax.io import video
    from thflax.io import speech

    folder = tmp_path / "batch"
    (folder / "in").mkdir(parents=True)
    (folder / "in" / "face.png").write_bytes(pathlib.Path(photo).read_bytes())

    utt = speech.synthesize(SENTENCE, leading_silence=0.2, trailing_silence=0.2)
    sf.write(folder / "in" / "speech.wav", utt.audio, utt.sample_rate)
    (folder / "jobs.csv").write_text(
        "image,audio,text,out,voice,still\n"
        "in/face.png,in/speech.wav,,a.mp4,,\n"
        "in/missing.png,in/speech.wav,,b.mp4,,\n"
        'in/face.png,,"Good morning, everyone.",c.mp4,en-us+f3,yes\n')
    temp = tmp_path / "tmp"
    temp.mkdir()
    r = _generate("--checkpoint", gen_workdir, "--jobs", str(folder / "jobs.csv"), env={"TMPDIR": str(temp)})
    assert r.returncode == 2, r.stderr[-2000:]
    errors = _errors(r)
    assert len(errors) == 1 and "row 2" in errors[0] and "image file not found" in errors[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert r.stdout.strip().splitlines()[-1] == "2 of 3 videos written"
    assert sorted(p.name for p in folder.iterdir()) == ["a.mp4", "c.mp4", "in", "jobs.csv"]
    assert list(temp.iterdir()) == []
    for name in ("a.mp4", "c.mp4"):
        frames, _ = video.read_video(str(folder / name))
        assert len(frames) > 10


@pytest.mark.cli
def test_second_run_compiles_nothing(gen_workdir, photo, tmp_path):
    from thflax.io import video
    from thflax.io import speech

    cache = tmp_path / "cache"
    speech_wav = tmp_path / "speech.wav"

    utt = speech.synthesize(SENTENCE, leading_silence=0.2, trailing_silence=0.2)
    sf.write(speech_wav, utt.audio, utt.sample_rate)
    runs = []
    for i in range(2):
        out = tmp_path / f"{i}.mp4"
        r = _generate("--checkpoint", gen_workdir, "--image", photo, "--audio", str(speech_wav), "--out", str(out),
                      "--timings", env={"THFLAX_CACHE_DIR": str(cache)})
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append((_timings(r), video.read_video(str(out))[0]))
        if i == 0:
            for sub in ("jax", "functions", "faces"):
                assert any((cache / sub).iterdir()), f"nothing cached in {sub}/"
    first, second = runs[0][0], runs[1][0]
    assert first["xla_compiles"] > 0 and first["faces_detected"] == 1
    assert second["xla_compiles"] == 0  # every XLA program came from the persistent cache
    assert second["faces_cached"] == 1 and second["faces_detected"] == 0
    np.testing.assert_array_equal(runs[0][1], runs[1][1])  # cached programs make the same video
    # Without the caches nothing is read or written there.
    before = sorted(str(p) for p in cache.rglob("*"))
    r = _generate("--checkpoint", gen_workdir, "--image", photo, "--audio", str(speech_wav),
                  "--out", str(tmp_path / "nocache.mp4"), "--nocompilation_cache", "--timings",
                  env={"THFLAX_CACHE_DIR": str(cache)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert _timings(r)["faces_detected"] == 1 and sorted(str(p) for p in cache.rglob("*")) == before


def _children(pid: int) -> dict[int, str]:
    """The live child processes of `pid`: {pid: command line} (from /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.cli
@pytest.mark.parametrize("signum,moment", [
    (signal.SIGTERM, "encoding"),  # ffmpeg is running and the hidden temporary output growing
    (signal.SIGINT, "speaking"),  # the speech wav exists; eSpeak (its library copy in $TMPDIR) is at work
])
def test_signal_stops_with_one_line_and_leaves_nothing(gen_workdir, photo, tmp_path, signum, moment):
    """SIGTERM (a service manager, `kill`) and Ctrl-C stop generate.py with one line and 128 + the
    signal's number; ffmpeg is stopped, and no temporary output, speech wav or eSpeak library copy is
    left; the inputs are unchanged."""
    inputs, outdir, temp = tmp_path / "in", tmp_path / "out", tmp_path / "tmp"
    for d in (inputs, outdir, temp):
        d.mkdir()
    face = inputs / "face.png"
    face.write_bytes(pathlib.Path(photo).read_bytes())
    before = face.read_bytes()
    text = " ".join([SENTENCE] * 70)[:1500]  # about 90 s of speech: minutes of frames to encode
    with sigint_delivered():  # Ctrl-C must reach the child even when the suite runs as a background job
        proc = subprocess.Popen([sys.executable, "generate.py", "--quiet", "--checkpoint", gen_workdir, "--image",
                                 str(face), "--text", text, "--out", str(outdir / "talk.mp4")], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "TMPDIR": str(temp)})
    try:
        children: dict[int, str] = {}
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            if moment == "speaking" and any(p.name.startswith("thflax-speech-") for p in temp.iterdir()):
                break
            if moment == "encoding":
                children = {p: c for p, c in _children(proc.pid).items() if "ffmpeg" in c}
                if children and any(outdir.iterdir()):
                    break
            time.sleep(0.05)
        assert proc.poll() is None, f"generate.py ended before the signal: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"generate.py never reached {moment}"
        children = _children(proc.pid)  # ffmpeg while encoding
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: interrupted ({signal.Signals(signum).name})"], stderr[-2000:]
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-2000:]
    assert not [p for p in children if _alive(p)], f"children still running: {children}"
    assert list(outdir.iterdir()) == []  # no temporary (or half-written) output
    assert list(temp.iterdir()) == []  # no speech wav, no eSpeak library copy
    assert sorted(p.name for p in inputs.iterdir()) == ["face.png"] and face.read_bytes() == before
