"""Identity, lip-sync and sharpness measures of generated videos (thflax.measures.face_measures) and the
benchmark that prints them (benchmarks/identity.py).

Tests that need face_recognition's photos (fetched with pip on first use) skip when they cannot be
fetched. The benchmark's run on a trained model is marked `cli` and `slow` (`make test-slow`).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data
import soundfile as sf

from thflax.measures import face_measures as fm
from thflax.errors import InputError

from tests.helpers import ROOT
SR = 16000


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut())


@pytest.fixture(scope="module")
def astronaut_landmarks(astronaut) -> np.ndarray:
    return fm.find_face(astronaut)


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
    from thflax.synthetic import portraits

    found = {p.key: p for p in portraits.builtin_portraits()}
    if "obama" not in found or "biden" not in found:
        pytest.skip("face_recognition's portraits could not be fetched (no network or registry)")
    return {k: portraits.load_image(found[k]) for k in ("obama", "obama2", "biden")}


def _smooth_noise(n: int, seed: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.random.default_rng(seed).standard_normal(n), 2.0)


# --- lip sync -------------------------------------------------------------------------------------


@pytest.mark.parametrize("lag", [3, -2, 0])
def test_lip_sync_recovers_a_known_offset_with_its_sign(lag):
    """opening[t] = energy[t - lag] + noise: a positive lag is a video that lags the audio."""
    t = 200
    energy = _smooth_noise(t + 20, seed=1)
    opening = np.roll(energy, lag)[10:10 + t] + 0.05 * np.random.default_rng(2).standard_normal(t)
    energy = energy[10:10 + t]
    offset, best, at0 = fm.lip_sync(opening, energy, max_offset=5)
    assert offset == lag
    assert best > 0.9
    if lag:
        assert at0 < best - 0.1
    else:
        assert at0 == best
    # The sign convention, spelled out: a mouth that moves `lag` frames after the sound.
    assert fm.shifted_correlation(opening, energy, lag) == pytest.approx(best)


def test_lip_sync_of_a_still_mouth_is_undefined():
    energy = _smooth_noise(100, seed=3)
    offset, best, at0 = fm.lip_sync(np.full(100, 0.1), energy)
    assert offset == 0 and math.isnan(best) and math.isnan(at0)
    with pytest.raises(InputError):
        fm.lip_sync(energy, energy, max_offset=-1)


def test_speech_energy_of_silence_and_a_tone_lines_up_with_the_frames():
    """0.4 s of silence then 0.6 s of a tone at 25 fps: frames 0-9 silent, 10-24 loud."""
    tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(int(0.6 * SR)) / SR)
    audio = np.concatenate([np.zeros(int(0.4 * SR)), tone]).astype(np.float32)
    for n in (25, 31):  # num_frames decides the length, also past the audio's end
        e = fm.speech_energy(audio, SR, 25.0, n)
        assert e.shape == (n,) and np.all(np.isfinite(e))
    db = fm.speech_energy(audio, SR, 25.0, 25)
    assert db[:9].max() < -40 and db[10:].min() > -3  # dB re the loudest frame, floored at -60
    assert db[9] < db[10]
    linear = fm.speech_energy(audio, SR, 25.0, 25, log=False)
    assert linear[:9].max() < 1e-3 < 0.3 < linear[10:].min()  # RMS of a 0.5 sine is 0.35


# --- identity -------------------------------------------------------------------------------------


def test_descriptor_keeps_a_person_under_blur_and_resizing(astronaut, astronaut_landmarks):
    d = fm.face_descriptor(astronaut, astronaut_landmarks)
    assert d.shape == (128,) and np.all(np.isfinite(d))
    assert np.allclose(fm.face_descriptor(astronaut), d, atol=1e-5)  # landmarks found the same way
    copy = cv2.resize(cv2.GaussianBlur(astronaut, (0, 0), 1.2), (300, 300), interpolation=cv2.INTER_AREA)
    assert np.linalg.norm(fm.face_descriptor(copy) - d) < fm.SAME_PERSON
    assert fm.identity_distance(astronaut, [copy, copy], every=1) < fm.SAME_PERSON


def test_descriptor_tells_different_people_apart(astronaut, faces):
    d = {k: fm.face_descriptor(v) for k, v in faces.items()}
    d["astronaut"] = fm.face_descriptor(astronaut)
    assert np.linalg.norm(d["obama"] - d["biden"]) > fm.SAME_PERSON
    assert np.linalg.norm(d["astronaut"] - d["biden"]) > fm.SAME_PERSON
    assert np.linalg.norm(d["obama"] - d["obama2"]) < fm.SAME_PERSON  # two photos of one person


def test_identity_distance_without_a_face_is_nan_and_a_photo_without_one_fails(astronaut):
    grey = np.full((200, 200, 3), 128, np.uint8)
    assert math.isnan(fm.identity_distance(astronaut, [grey, grey], every=1))
    with pytest.raises(InputError):
        fm.face_descriptor(grey)


# --- mouth opening --------------------------------------------------------------------------------


def test_mouth_opening_series_on_rendered_open_and_closed_mouths():
    """The renderer draws mouths with a known opening: dlib's normalised opening follows it."""
    from thflax.synthetic import renderer, speakers, visemes

    speaker = speakers.make_speaker(1234)
    r = renderer.get_renderer(speaker)
    openings = [0.0, 0.0, 0.8, 1.0, 0.9, 0.0, 0.0, 1.0, 1.0, 0.0, 0.5, 0.0]
    frames, truth = [], []
    for i, o in enumerate(openings):
        shape = visemes.deform_mouth(r.neutral, o, 0.0, speaker.open_gain)
        f, lm = r.render_frame(shape, np.array([2.0 * np.sin(i), 0, 0, i % 3, 0, 1.0]))
        frames.append(f)
        truth.append(lm)
    series = fm.mouth_opening_series(frames)
    assert series.shape == (len(openings),) and np.all(np.isfinite(series))
    is_open = np.array(openings) >= 0.8
    closed = np.array(openings) == 0
    assert series[is_open].min() > series[closed].max() + 0.1
    assert series[closed].max() < 0.08
    want = fm.mouth_openings(np.array(truth))  # the same ratio on the renderer's true landmarks
    assert np.abs(series - want).max() < 0.06
    assert fm.opening_std(series) > 0.1
    assert fm.opening_std(np.full(10, 0.2)) == 0.0


def test_frames_without_a_face_are_interpolated():
    lm = np.tile(np.arange(136, dtype=np.float32).reshape(1, 68, 2), (5, 1, 1))
    lm[:, [66, 67, 65], 1] += np.array([0.0, 2.0, 4.0, 6.0, 8.0])[:, None]  # lower lip drops
    lm[2] = np.nan
    raw = fm.mouth_opening_series(landmarks=lm, fill=False)
    assert np.isnan(raw[2]) and np.isfinite(raw[[0, 1, 3, 4]]).all()
    filled = fm.mouth_opening_series(landmarks=lm)
    assert filled[2] == pytest.approx((raw[1] + raw[3]) / 2)
    assert np.isnan(fm.fill_missing(np.full(3, np.nan))).all()


# --- sharpness ------------------------------------------------------------------------------------


def test_cpbd_of_a_photo_itself_and_blurred(astronaut, astronaut_landmarks):
    """CPBD (the `cpbd` package) of the face: the photo against itself is 1; a 2-px blur takes most of it;
    frames without a face are skipped, and none at all is undefined."""
    sharp = fm.face_cpbd(astronaut, astronaut_landmarks)
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 2.0)
    assert sharp > 0.2 and fm.face_cpbd(blurred, astronaut_landmarks) < 0.3 * sharp
    lms = np.stack([astronaut_landmarks, np.full((68, 2), np.nan), astronaut_landmarks])
    value, ratio = fm.cpbd_ratio(astronaut, [astronaut, blurred, astronaut], astronaut_landmarks, lms)
    assert value == pytest.approx(sharp) and ratio == pytest.approx(1.0)
    value, ratio = fm.cpbd_ratio(astronaut, [blurred], astronaut_landmarks, astronaut_landmarks[None])
    assert ratio < 0.3
    assert all(np.isnan(fm.cpbd_ratio(astronaut, [astronaut], astronaut_landmarks, lms[1:2])))


def test_sharpness_ratio_of_a_photo_itself_and_blurred(astronaut, astronaut_landmarks):
    lm = astronaut_landmarks[None]
    assert fm.sharpness_ratio(astronaut, [astronaut], astronaut_landmarks, lm, every=1) == pytest.approx(1.0)
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 2.0)
    assert fm.sharpness_ratio(astronaut, [blurred], astronaut_landmarks, lm, every=1) < 0.35
    # A larger copy holds the same detail: resampling to one face size keeps it near 1.
    big = cv2.resize(astronaut, (768, 768), interpolation=cv2.INTER_CUBIC)
    assert fm.sharpness_ratio(astronaut, [big], astronaut_landmarks, lm * 1.5, every=1) > 0.8


# --- head motion ----------------------------------------------------------------------------------


def test_head_motion_percent_of_a_known_motion_is_scale_free_and_skips_lost_frames(astronaut_landmarks):
    """The astronaut's face moved by a known nose-tip path: its RMS distance from the mean, over the
    outer-eye-corner distance, in percent; the same for the face twice as large; lost frames left out."""
    face = np.asarray(astronaut_landmarks, np.float64)
    iod = np.linalg.norm(face[45] - face[36])
    t = np.arange(100)
    # A circle of radius r about the photo's position: the nose tip's RMS distance from its mean is r.
    r = 0.03 * iod
    path = np.stack([r * np.cos(2 * np.pi * t / 25), r * np.sin(2 * np.pi * t / 25)], -1)
    track = face[None] + path[:, None]
    assert fm.head_motion_percent(track) == pytest.approx(3.0, rel=1e-6)
    assert fm.head_motion_percent(track * 2.0) == pytest.approx(3.0, rel=1e-6)
    lost = track.copy()
    lost[::7] = np.nan  # dlib found no face there
    assert fm.head_motion_percent(lost) == pytest.approx(100 * np.sqrt((path[t % 7 > 0] ** 2).sum(1).mean()
                                                                        - (path[t % 7 > 0].mean(0) ** 2).sum()) / iod)
    # A still head is 0, a single face or none undefined, a wrong shape refused.
    assert fm.head_motion_percent(np.repeat(face[None], 10, 0)) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(fm.head_motion_percent(face[None]))
    assert math.isnan(fm.head_motion_percent(np.full((5, 68, 2), np.nan)))
    with pytest.raises(InputError, match="68, 2"):
        fm.head_motion_percent(face)


# --- one video ------------------------------------------------------------------------------------


def test_measure_video_of_a_rendered_talking_astronaut(tmp_path, astronaut):
    """A video rendered from the astronaut photo with eSpeak speech (mouth driven by its phonemes):
    every measure is defined and the goals a real talking head reaches are met."""
    from thflax.face import eyes
    from thflax.io import speech, video
    from thflax.synthetic import renderer, speakers

    utt = speech.synthesize("Bin blue at F two now, please.", "en-us", 160, 50,
                            leading_silence=0.3, trailing_silence=0.3)
    clip = renderer.render_clip(speakers.make_speaker(1234), utt, rng=np.random.default_rng(0))
    wav, mp4, photo = tmp_path / "speech.wav", tmp_path / "talking.mp4", tmp_path / "astronaut.png"
    sf.write(wav, clip.audio, clip.sample_rate)
    video.write_video(str(mp4), clip.frames, fps=clip.fps, audio_path=str(wav))
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    m = fm.measure_video(str(photo), str(mp4), every=3)  # the audio: the video's own track
    print("rendered talking astronaut:", {k: v if v is None or isinstance(v, str) else round(float(v), 3) for k, v in m.items()})
    mouth = {"mouth_contrast", "teeth_brightness", "mouth_open_frames", "mouth_reason",  # tests/test_mouth_measures.py
             "photo_mouth_contrast", "photo_teeth_brightness", "photo_mouth_reason"}
    assert set(m) == {"frames", "frames_with_face", "fps", "identity_distance", "lip_sync_corr",
                      "lip_sync_offset", "lip_sync_corr_at_0", "opening_std", "sharpness_ratio",
                      "head_motion_percent", "cpbd", "cpbd_ratio", "blinks_per_minute",
                      "blink_frames"} | mouth  # LSE-D/C only with a lip-sync expert
    # The blinks the renderer drew (a run of closure each) are the blinks dlib finds, of their length or less.
    drawn = eyes.closure_runs(clip.eye_closure)
    assert m["blinks_per_minute"] == pytest.approx(len(drawn) * 60.0 * clip.fps / len(clip.frames))
    if drawn:
        assert 1 <= m["blink_frames"] <= max(n for _, n in drawn)
    else:
        assert math.isnan(m["blink_frames"])
    m = {k: v for k, v in m.items() if k not in mouth | {"blink_frames"}}
    assert all(np.isfinite(v) for v in m.values()), m
    assert m["frames"] == len(clip.frames) and m["frames_with_face"] == m["frames"]
    for key in fm.GOALS:
        assert fm.meets_goal(key, m[key]), (key, m)
    assert abs(m["lip_sync_offset"]) <= 2
    json.dumps(m, allow_nan=False)
    with pytest.raises(InputError):
        fm.measure_video(str(tmp_path / "missing.png"), str(mp4))


# --- benchmarks/identity.py -----------------------------------------------------------------------


def _bench(*args, timeout=900):
    return subprocess.run([sys.executable, "benchmarks/identity.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.cli
def test_benchmark_bad_photo_is_one_line_and_exit_2(tmp_path):
    r = _bench("--checkpoint", str(tmp_path), "--photos", str(tmp_path / "nobody.jpg"),
               "--out_dir", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nobody.jpg" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.cli
@pytest.mark.slow  # a generation compile in a subprocess (minutes on 2 cores); the measures are tested above
def test_benchmark_on_a_trained_model(tiny_workdir, tmp_path, astronaut):
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    r = _bench("--checkpoint", tiny_workdir, "--photos", str(photo), "--out_dir", str(out),
               "--text", "Bin blue at F two now.")
    assert r.returncode == 0, r.stderr[-3000:]
    table = [ln for ln in r.stdout.splitlines() if ln.startswith("|")]
    assert len(table) == 4, r.stdout  # header, rule, generated, copied photo
    for column in ("identity distance", "lip-sync r", "offset", "opening std", "sharpness ratio"):
        assert column in table[0]
    assert table[2].startswith("| astronaut.png | generated |")
    assert table[3].startswith("| astronaut.png | copied photo |")
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.json", "astronaut.mp4", "identity.md"]
    result = json.loads((out / "astronaut.json").read_text())  # strict JSON: undefined values are null
    assert result["generated"]["frames"] > 10
    floor = result["copied_photo"]
    assert floor["identity_distance"] < 0.2 and floor["opening_std"] < 0.02
    assert floor["sharpness_ratio"] > 0.7
    assert floor["head_motion_percent"] < 0.5  # dlib's jitter on a still photo
    assert "head motion (% IOD)" in table[0]
