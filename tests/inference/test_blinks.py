"""Blinks: the timing model and eyelid geometry (thflax.face.eyes), generation's blink model
(thflax.inference.blinks), the corpus's rendered blinks (thflax.synthetic) and the blink measure
(thflax.measures.face_measures.blink_stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from thflax.errors import InputError
from thflax.face import eyes
from thflax.inference import blinks
from thflax.synthetic.base_face import base_landmarks

FPS = 25.0
SR = 16000


def _speech_and_silence(seconds: float = 60.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Audio [N] alternating 2 s of loud noise ("speech") and 1.5 s of silence, and the truth [T]:
    1 in the silent stretches (frame times t / fps)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = np.zeros(n, np.float32)
    period, talk = 3.5, 2.0
    t = np.arange(n) / SR
    speaking = (t % period) < talk
    x[speaking] = 0.2 * rng.standard_normal(int(speaking.sum())).astype(np.float32)
    frames = np.arange(int(seconds * FPS)) / FPS
    return x, ((frames % period) >= talk).astype(np.float32)


def _landmarks(t: int) -> np.ndarray:
    """[t, 68, 2] open-eyed landmarks (the astronaut's), a little jitter so frames differ."""
    lm = base_landmarks().astype(np.float32)
    jitter = np.random.default_rng(0).normal(0, 0.05, (t, 68, 2)).astype(np.float32)
    return lm[None] + jitter


def test_rate_zero_gives_no_closure():
    x, _ = _speech_and_silence(20.0)
    c = blinks.blink_closure(x, 500, FPS, rate=0, seed=3)
    assert c.shape == (500,) and c.dtype == np.float32 and not c.any()


def test_rate_durations_determinism_and_pause_preference():
    x, truth = _speech_and_silence(60.0)
    t = len(truth)
    pause = blinks.pause_track(x, t, FPS, SR)
    # The RMS window blurs the edges of a pause by ~0.1 s; elsewhere the pause track is the truth.
    assert np.mean(pause == truth) > 0.9
    in_pause = in_speech = 0
    for seed in range(6):
        c = blinks.blink_closure(x, t, FPS, rate=15, seed=seed)
        np.testing.assert_array_equal(c, blinks.blink_closure(x, t, FPS, rate=15, seed=seed))
        assert 0.0 <= c.min() and c.max() <= 1.0
        runs = eyes.closure_runs(c)
        assert 8 <= len(runs) <= 25, (seed, len(runs))  # a minute of audio: blinks per minute
        assert all(3 <= n <= 8 for _, n in runs), runs  # 100-300 ms at 25 fps
        assert all(c[s:s + n].max() == 1.0 for s, n in runs)  # each blink closes the eye fully once
        starts = np.array([s for s, _ in runs])
        assert np.all(np.diff(starts) >= FPS * eyes.MIN_SPACING_S)
        in_pause += int(pause[starts].sum())
        in_speech += int(len(starts) - pause[starts].sum())
    # Pauses are ~40 % of the frames, yet most blinks start in them.
    assert in_pause > in_speech, (in_pause, in_speech)
    assert not np.array_equal(blinks.blink_closure(x, t, FPS, 15, seed=0), blinks.blink_closure(x, t, FPS, 15, seed=1))


def test_rate_follows_the_request_over_long_audio():
    x, truth = _speech_and_silence(300.0)
    for rate in (10, 30, 60):
        counts = [len(eyes.closure_runs(blinks.blink_closure(x, len(truth), FPS, rate, seed))) / 5.0
                  for seed in range(3)]
        assert 0.75 * rate <= np.mean(counts) <= 1.25 * rate, (rate, counts)


def test_silence_only_still_blinks():
    t = int(60 * FPS)
    c = blinks.blink_closure(np.zeros(60 * SR, np.float32), t, FPS, rate=15, seed=0)
    assert np.all(blinks.pause_track(np.zeros(60 * SR), t) == 1)
    assert 8 <= len(eyes.closure_runs(c)) <= 25


def test_blink_profile():
    for n in range(1, 9):
        p = eyes.blink_profile(n)
        assert p.shape == (n,) and p.max() == 1.0 and p.min() > 0
        peak = int(np.argmax(p))
        assert np.all(np.diff(p[:peak + 1]) > 0) and np.all(np.diff(p[peak:]) < 0)
        assert peak <= (n - 1) / 2  # a fast close, a slower reopening
        held = eyes.blink_profile(n, blinks.HOLD)
        assert held.shape == (n,) and np.all(held >= p) and held.min() > 0  # faster in and out, same length
        assert np.all(np.diff(held[:peak + 1]) >= 0) and np.all(np.diff(held[peak:]) <= 0)
        if n >= 3:
            assert (held == 1.0).sum() >= 3 > (p == 1.0).sum()  # the lid stays shut over frames
    np.testing.assert_array_equal(eyes.blink_profile(5, 0.5), eyes.blink_profile(5))  # hold < 1: as 1


def test_generated_blinks_last_3_to_8_frames_at_a_partial_closure():
    """The generator closes an eye only part way (dlib reads ~0.42 of the open eye at full closure on
    the shipped model's videos): with the held profile each planned blink still reads as 3–8 frames
    under 0.6 of the open eye; with the corpus's profile (one closed frame) most read as 1–2."""
    from thflax.measures.face_measures import blink_stats

    t = int(60 * FPS)
    lm = _landmarks(t)
    durations = {}
    for hold in (1.0, blinks.HOLD):
        planned = eyes.schedule_blinks(np.zeros(t), 15.0, np.random.default_rng(3), FPS)
        c = eyes.closure_track(planned, t, hold)
        partial = eyes.close_eyes(lm, c, upper_closed=0.42 + eyes.LOWER_CLOSED)
        out = blink_stats(partial, FPS)
        assert out["blinks"] == len(planned) >= 8
        durations[hold] = out["durations"]
    assert all(3 <= d <= 8 for d in durations[blinks.HOLD]), durations
    assert np.median(durations[1.0]) <= 2, durations


def test_eye_move_closes_the_lid_and_keeps_other_points():
    lm = _landmarks(3)
    closure = np.array([0.0, 0.5, 1.0], np.float32)
    moved = blinks.apply_blinks(lm, closure)
    assert moved.shape == (3, 68, 2) and moved.dtype == np.float32
    np.testing.assert_array_equal(moved[0], lm[0])
    others = [i for i in range(68) if i not in eyes.UPPER_LID + eyes.LOWER_LID]
    np.testing.assert_array_equal(moved[:, others], lm[:, others])
    ear = eyes.eye_aspect_ratio(moved)
    assert 0.2 < ear[0] < 0.45  # an open eye
    assert ear[2] < 0.6 * ear[0] * 0.6  # closed: well under the blink threshold
    assert ear[2] == pytest.approx((eyes.DLIB_UPPER_CLOSED - eyes.LOWER_CLOSED) * ear[0], rel=0.05)
    assert ear[2] < ear[1] < ear[0]
    # Upper lid points go down (image y grows downwards), lower lid points rise a little.
    assert np.all(moved[2, list(eyes.UPPER_LID), 1] > lm[2, list(eyes.UPPER_LID), 1])
    assert np.all(moved[2, list(eyes.LOWER_LID), 1] < lm[2, list(eyes.LOWER_LID), 1])
    assert np.all(moved[2, list(eyes.UPPER_LID), 1] < moved[2, list(eyes.LOWER_LID), 1])  # never cross
    # Affine-invariant: the move in normalised coordinates is the move in pixels, normalised.
    scale, shift = 1 / 97.0, np.array([-2.0, 0.5], np.float32)
    np.testing.assert_allclose(blinks.apply_blinks(lm * scale + shift, closure), moved * scale + shift, atol=1e-5)
    with pytest.raises(ValueError):
        blinks.apply_blinks(lm, closure[:2])


def test_blink_chunks_matches_the_whole():
    lm = _landmarks(30)
    c = eyes.closure_track([(2, 5), (20, 4)], 30)
    whole = blinks.apply_blinks(lm, c)
    chunked = np.concatenate(list(blinks.blink_chunks(iter([lm[:7], lm[7:25], lm[25:]]), c)))
    np.testing.assert_array_equal(chunked, whole)


def test_blink_stats_on_constructed_landmarks():
    from thflax.measures.face_measures import blink_stats

    t = int(30 * FPS)  # 30 s
    truth = [(40, 3), (200, 6), (420, 8), (700, 5)]
    c = eyes.closure_track(truth, t)
    lm = blinks.apply_blinks(_landmarks(t), c)
    lm[100:103] = np.nan  # frames without a face
    out = blink_stats(lm, FPS)
    # The EAR falls to 1 - k c of the open one (k: how far the lid goes): under 0.6 where c > 0.4 / k.
    level = 0.4 / (1.0 - (eyes.DLIB_UPPER_CLOSED - eyes.LOWER_CLOSED))
    assert out["blinks"] == 4 and out["blinks_per_minute"] == pytest.approx(8.0)
    assert out["starts"] == [s + int(np.argmax(eyes.blink_profile(n) > level)) for s, n in truth]
    assert out["durations"] == [int((eyes.blink_profile(n) > level).sum()) for _, n in truth]
    assert all(1 <= d <= 8 for d in out["durations"])
    assert np.isfinite(out["ear"]).all()
    still = blink_stats(_landmarks(100), FPS)
    assert still["blinks"] == 0 and still["blinks_per_minute"] == 0.0
    assert math.isnan(blink_stats(np.full((5, 68, 2), np.nan), FPS)["blinks_per_minute"])
    with pytest.raises(InputError):
        blink_stats(np.zeros((5, 67, 2)), FPS)


@pytest.mark.parametrize("value", [-1, float("nan"), 1000, "15", True])
def test_options_refuse_bad_blink_rates(value):
    from thflax.inference import options

    with pytest.raises(InputError) as e:
        options.check_options(blink_rate=value)
    assert "\n" not in str(e.value) and "blink_rate" in str(e.value)
    with pytest.raises(InputError) as e:
        options.check_options(blink_rate=value, prefix="--")
    assert "--blink_rate" in str(e.value)


def test_options_accept_the_blink_range():
    from thflax.inference import options

    for value in (0, 0.0, 15, 17.5, 60):
        options.check_options(blink_rate=value)


def test_jobs_rows_take_a_blink_rate(tmp_path):
    from thflax.inference import jobs

    path = tmp_path / "jobs.csv"
    path.write_text("image,audio,out,blink_rate\na.jpg,a.wav,a.mp4,\nb.jpg,b.wav,b.mp4,0\n"
                    "c.jpg,c.wav,c.mp4,abc\nd.jpg,d.wav,d.mp4,nan\ne.jpg,e.wav,e.mp4,61\n")
    rows = jobs.read_jobs(str(path))
    assert rows[0].arguments(blink_rate=20.0)["blink_rate"] == 20.0  # empty: the flag's value
    assert rows[1].arguments()["blink_rate"] == 0.0
    for row, words in zip(rows[2:], ("must be a number", "out of range", "out of range")):
        with pytest.raises(InputError, match=words) as e:
            row.arguments()
        assert "\n" not in str(e.value)


def test_corpus_pause_track_from_phonemes():
    from thflax.synthetic import blinks as corpus_blinks

    ph = [(0.0, 0.4, "_:"), (0.4, 0.6, "b"), (0.6, 0.8, "'I"), (0.8, 1.0, "_"), (1.0, 1.2, "n")]
    p = corpus_blinks.pause_track(ph, 40, FPS)  # 1.6 s: the last 0.4 s after the phonemes
    expect = np.zeros(40, np.float32)
    expect[:10] = 1  # 0.0-0.4 s
    expect[20:25] = 1  # 0.8-1.0 s
    expect[30:] = 1  # after the words
    np.testing.assert_array_equal(p, expect)


def test_corpus_speakers_blink_rates():
    from thflax.synthetic import blinks as corpus_blinks
    from thflax.synthetic.speakers import make_speaker

    rates = [corpus_blinks.blink_rate(make_speaker(s)) for s in range(20)]
    assert all(10 <= r <= 25 for r in rates) and len(set(rates)) == 20
    assert corpus_blinks.blink_rate(make_speaker(3)) == rates[3]


def test_rendered_blink_closes_the_eye_in_landmarks_and_pixels():
    """The corpus renderer: EAR dips at the blink frames, the eye region turns to skin there (its
    luminance variance drops: no more white sclera and dark iris), and every other frame, and every
    pixel away from the eyes, is as without blinks."""
    from thflax.io import speech
    from thflax.synthetic import renderer, speakers

    spk = speakers.make_speaker(3)
    utt = speech.synthesize("bin blue at f two now", spk.voice, spk.rate, spk.pitch,
                            leading_silence=0.3, trailing_silence=0.3)
    clip = renderer.render_clip(spk, utt, size=(180, 144), blink_rate=40, blink_rng=np.random.default_rng(1))
    plain = renderer.render_clip(spk, utt, size=(180, 144), blink_rate=0, blink_rng=np.random.default_rng(1))
    c = clip.eye_closure
    assert c.shape == (len(clip.frames),) and c.max() == 1.0 and not plain.eye_closure.any()
    on = c > 0
    # Outside blink frames: the same bytes, landmarks and poses as a clip without blinks.
    np.testing.assert_array_equal(clip.frames[~on], plain.frames[~on])
    np.testing.assert_array_equal(clip.landmarks[~on], plain.landmarks[~on])
    np.testing.assert_array_equal(clip.poses, plain.poses)
    np.testing.assert_array_equal(clip.articulation, plain.articulation)
    # Landmarks: the eye closes where the closure says, the rest of the face does not move.
    ear = eyes.eye_aspect_ratio(clip.landmarks)
    closed = int(np.argmax(c))
    opened = int(np.flatnonzero(~on)[np.argmin(np.abs(np.flatnonzero(~on) - closed))])
    assert ear[closed] < 0.6 * np.median(ear)
    assert np.all(ear[~on] > 0.6 * np.median(ear))
    others = [i for i in range(68) if i not in eyes.UPPER_LID + eyes.LOWER_LID]
    np.testing.assert_array_equal(clip.landmarks[:, others], plain.landmarks[:, others])

    # Pixels: the eye region of the closed frame is skin (flat), of the open frame white + iris.
    def eye_luma_var(i: int) -> float:
        import cv2

        lm = plain.landmarks[i]  # inside the open eye's outline: the region the lid covers
        var = []
        for eye in (eyes.RIGHT_EYE, eyes.LEFT_EYE):
            inside = np.zeros(clip.frames.shape[1:3], np.uint8)
            cv2.fillPoly(inside, [np.round(lm[list(eye)] * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
            region = clip.frames[i][inside > 0].astype(np.float64)
            var.append((region @ [0.299, 0.587, 0.114]).var())
        return float(np.mean(var))

    assert eye_luma_var(closed) < 0.5 * eye_luma_var(opened), (eye_luma_var(closed), eye_luma_var(opened))
    # The change is local: pixels farther than the eyes' box (plus a margin) from both eyes are unchanged.
    lm = plain.landmarks[closed]
    mask = np.ones(clip.frames.shape[1:3], bool)
    for eye in (eyes.RIGHT_EYE, eyes.LEFT_EYE):
        x0, y0 = np.floor(lm[list(eye)].min(0)).astype(int) - 6
        x1, y1 = np.ceil(lm[list(eye)].max(0)).astype(int) + 6
        mask[max(y0, 0):y1, max(x0, 0):x1] = False
    np.testing.assert_array_equal(clip.frames[closed][mask], plain.frames[closed][mask])


def test_page_request_refuses_a_forged_blink_rate(tmp_path):
    """The page's slider bounds the blink rate; a forged request's number is refused in one line."""
    from thflax.inference import app

    for value, words in ((1000.0, "blink_rate 1000 is out of range"), (float("nan"), "blink_rate nan is out of range")):
        with pytest.raises(InputError, match=words) as e:
            app.make_video(None, "unused", str(tmp_path), "missing.png", None, "Hello", blink_rate=value)
        assert "\n" not in str(e.value)


def test_live_blinks_do_not_depend_on_the_chunking():
    x, truth = _speech_and_silence(30.0, seed=4)
    t = len(truth)
    whole = blinks.causal_blink_closure(x, t, FPS, rate=20, seed=7)
    assert len(eyes.closure_runs(whole)) >= 5
    rng = np.random.default_rng(0)
    stream = blinks.BlinkStream(FPS, rate=20, seed=7)
    got, i = [], 0
    while len(got) < t:
        if i < len(x):
            n = int(rng.integers(1, 4000))
            stream.push(x[i:i + n])
            i += n
        while len(got) < t and (i >= len(x) or stream.samples_needed(stream.frame) <= i):
            got.append(stream.next_closure(ended=i >= len(x)))
    np.testing.assert_array_equal(np.asarray(got, np.float32), whole)
    with pytest.raises(ValueError):  # a frame whose RMS window has not arrived is refused, not guessed
        fresh = blinks.BlinkStream(FPS, rate=20, seed=7)
        fresh.push(x[:100])
        fresh.next_closure()


def test_live_blinks_keep_the_rate_prefer_pauses_and_go_on_in_silence():
    x, truth = _speech_and_silence(300.0)
    in_pause = in_speech = 0
    for seed in range(3):
        c = blinks.causal_blink_closure(x, len(truth), FPS, rate=15, seed=seed)
        runs = eyes.closure_runs(c)
        assert 0.75 * 15 * 5 <= len(runs) <= 1.25 * 15 * 5, (seed, len(runs))
        assert all(3 <= n <= 8 for _, n in runs[:-1]) and all(c[s:s + n].max() == 1.0 for s, n in runs[:-1])
        starts = np.array([s for s, _ in runs])
        assert np.all(np.diff(starts) >= FPS * eyes.MIN_SPACING_S)
        in_pause += int(truth[starts].sum())
        in_speech += int(len(starts) - truth[starts].sum())
    assert in_pause > in_speech, (in_pause, in_speech)
    silent = blinks.causal_blink_closure(np.zeros(60 * SR, np.float32), int(60 * FPS), FPS, rate=15, seed=0)
    assert 8 <= len(eyes.closure_runs(silent)) <= 25
    assert not blinks.causal_blink_closure(x[:SR * 20], 500, FPS, rate=0, seed=0).any()
