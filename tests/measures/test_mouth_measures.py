"""The inside of the mouth (thflax.measures.face_measures.mouth_pixels / mouth_interior): contrast and
teeth brightness on mouths drawn with OpenCV at known landmarks (no dlib), and once through
`measure_video` on a rendered talking head (dlib)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from thflax.measures import face_measures as fm

SKIN, LIPS, CAVITY, TEETH = (205, 160, 140), (175, 85, 95), (45, 20, 25), (235, 235, 225)
SUPER = 8  # drawn at 8x, then shrunk with INTER_AREA: one scene at every resolution


def mouth_landmarks(cx: float, cy: float, width: float, opening: float) -> np.ndarray:
    """[68, 2] landmarks: points 48–67 a mouth `width` px wide whose inner lips are `opening` x width
    apart (`fm.mouth_openings` reads back ~`opening`); the other points a finite stand-in face."""
    lm = np.zeros((68, 2))
    lm[:48] = np.stack([np.linspace(cx - width, cx + width, 48), np.full(48, cy - 1.5 * width)], -1)
    a, gap = width / 2, opening * width / 2
    lip = 0.18 * width
    # Outer: 48 left corner, 49–53 upper (left to right), 54 right corner, 55–59 lower (right to left).
    up = np.linspace(np.pi, 0, 7)[1:-1]
    lm[48], lm[54] = (cx - a, cy), (cx + a, cy)
    lm[49:54] = np.stack([cx + a * np.cos(up), cy - (gap + lip) * np.sin(up)], -1)
    lm[55:60] = np.stack([cx + a * np.cos(up[::-1]), cy + (gap + lip) * np.sin(up[::-1])], -1)
    # Inner: 60 left corner, 61–63 upper, 64 right corner, 65–67 lower (right to left).
    ai = 0.8 * a
    inner_up = np.linspace(np.pi, 0, 5)[1:-1]
    lm[60], lm[64] = (cx - ai, cy), (cx + ai, cy)
    lm[61:64] = np.stack([cx + ai * np.cos(inner_up), cy - gap * np.sin(inner_up)], -1)
    lm[65:68] = np.stack([cx + ai * np.cos(inner_up[::-1]), cy + gap * np.sin(inner_up[::-1])], -1)
    return lm


def draw_mouth(lm: np.ndarray, size: int, inside: str) -> np.ndarray:
    """[size, size, 3] uint8 RGB: skin, lips, and inside the inner lips either a dark cavity with a
    bright teeth band ("teeth"), the dark cavity alone ("dark") or the lips' pink ("flat")."""
    big = np.full((size * SUPER, size * SUPER, 3), SKIN, np.uint8)

    def poly(points: np.ndarray, colour) -> None:
        p = np.round(((points + 0.5) * SUPER - 0.5) * 16).astype(np.int32)  # pixel centres; 4 bits sub-pixel
        cv2.fillPoly(big, [p], colour, cv2.LINE_8, 4)

    poly(lm[48:60], LIPS)
    inner = lm[60:68]
    poly(inner, LIPS if inside == "flat" else CAVITY)
    if inside == "teeth":
        top = inner[1:4]
        band = np.concatenate([top, (top + [0, 0.45 * (lm[66, 1] - lm[62, 1])])[::-1]])
        poly(band, TEETH)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


def scene(scale: float, opening: float = 0.35, inside: str = "teeth") -> tuple[np.ndarray, np.ndarray]:
    """One mouth (48 px wide at scale 1) in a 160-px frame, at `scale`: (frame, landmarks)."""
    lm = mouth_landmarks(80 * scale - 0.5 * (scale - 1), 90 * scale - 0.5 * (scale - 1), 48 * scale, opening)
    return draw_mouth(lm, int(160 * scale), inside), lm


def test_teeth_and_a_dark_interior_score_above_a_flat_smear():
    values = {k: fm.mouth_pixels(*scene(1.0, inside=k)) for k in ("teeth", "dark", "flat")}
    print("contrast, teeth:", values)
    (c_teeth, t_teeth), (c_dark, t_dark), (c_flat, t_flat) = values["teeth"], values["dark"], values["flat"]
    assert c_flat < 3 < 20 < c_teeth  # a flat pink inside has no spread; teeth on a dark cavity a wide one
    assert c_flat < c_dark  # the cavity against the lip edge pixels: some spread, still below teeth
    assert t_teeth > 60 > t_flat  # teeth far above the lips' median; a smear at most at the lips' level
    assert t_teeth > t_dark and t_dark < 5  # a dark cavity alone is below the lips


@pytest.mark.parametrize("inside", ["teeth", "flat"])
def test_values_do_not_depend_on_the_resolution(inside):
    """The mouth is scaled to 64 px first: drawn at 1x (48 px, enlarged) and 2x (96 px, shrunk)."""
    c1, t1 = fm.mouth_pixels(*scene(1.0, inside=inside))
    c2, t2 = fm.mouth_pixels(*scene(2.0, inside=inside))
    print(inside, (c1, t1), (c2, t2))
    assert abs(c1 - c2) < max(0.1 * c1, 2.0)
    assert abs(t1 - t2) < max(0.1 * abs(t1), 4.0)


def test_a_closed_mouth_has_no_interior_to_measure():
    frame, lm = scene(1.0, opening=0.0, inside="flat")
    assert all(math.isnan(v) for v in fm.mouth_pixels(frame, lm))
    assert all(math.isnan(v) for v in fm.mouth_pixels(frame, np.full((68, 2), np.nan)))


def test_video_medians_over_the_top_quarter_of_openings():
    """12 frames: 9 closed-ish (opening 0.1, flat inside) and 3 wide open with teeth; the top quarter is
    the 3 open ones, so the video reads the teeth frames' values."""
    frames, lms = [], []
    for o in [0.1] * 9 + [0.4] * 3:
        f, lm = scene(1.0, opening=o, inside="flat" if o < 0.2 else "teeth")
        frames.append(f)
        lms.append(lm)
    lms = np.stack(lms)
    idx, reason = fm.open_mouth_frames(lms)
    assert reason is None and idx.tolist() == [9, 10, 11]
    got = fm.mouth_interior(frames, lms)
    want = fm.mouth_pixels(frames[10], lms[10])
    assert got["mouth_reason"] is None and got["mouth_open_frames"] == 3
    assert got["mouth_contrast"] == pytest.approx(want[0]) and got["teeth_brightness"] == pytest.approx(want[1])
    # Only the open frames are read: a mapping holding just those is enough (measure_video's second pass).
    assert fm.mouth_interior({t: frames[t] for t in idx}, lms) == got


def test_no_open_mouth_or_no_face_is_nan_with_a_reason():
    frames, lms = zip(*(scene(1.0, opening=0.0, inside="flat") for _ in range(8)))
    lms = np.stack(lms)
    got = fm.mouth_interior(list(frames), lms)
    assert math.isnan(got["mouth_contrast"]) and math.isnan(got["teeth_brightness"])
    assert got["mouth_open_frames"] == 0 and "open mouth" in got["mouth_reason"]
    # Too few open frames: 2 open of 8, 3 needed.
    few = lms.copy()
    few[:2] = scene(1.0, opening=0.4)[1]
    assert "2 frames with an open mouth" in fm.mouth_interior(list(frames), few)["mouth_reason"]
    none = fm.mouth_interior(list(frames), np.full_like(lms, np.nan))
    assert math.isnan(none["mouth_contrast"]) and none["mouth_reason"] == "dlib found no face"
    # A single photo counts with min_frames=1: open with teeth -> values; closed -> NaN.
    f, lm = scene(1.0, opening=0.35)
    assert math.isfinite(fm.mouth_interior([f], lm[None], min_frames=1)["teeth_brightness"])


def test_measure_video_reads_the_rendered_teeth_and_loses_them_when_blurred(tmp_path):
    """A talking head rendered with teeth (thflax.synthetic.renderer) through `measure_video`, and the same
    video with its frames blurred (a generator's pink smear, roughly): both values drop."""
    import soundfile as sf

    from thflax.io import speech, video
    from thflax.synthetic import renderer, speakers

    utt = speech.synthesize("Bin blue at F two now, please.", "en-us", 160, 50,
                            leading_silence=0.3, trailing_silence=0.3)
    clip = renderer.render_clip(speakers.make_speaker(1234), utt, rng=np.random.default_rng(0))
    wav, photo = tmp_path / "speech.wav", tmp_path / "photo.png"
    sf.write(wav, clip.audio, clip.sample_rate)
    cv2.imwrite(str(photo), cv2.cvtColor(clip.frames[0], cv2.COLOR_RGB2BGR))
    out = {}
    for name, frames in (("sharp", clip.frames), ("blurred", [cv2.GaussianBlur(f, (0, 0), 3.0) for f in clip.frames])):
        mp4 = tmp_path / f"{name}.mp4"
        video.write_video(str(mp4), frames, fps=clip.fps, audio_path=str(wav))
        out[name] = fm.measure_video(str(photo), str(mp4), every=10)
    print({k: {m: v[m] for m in ("mouth_contrast", "teeth_brightness", "mouth_open_frames", "mouth_reason",
                                 "photo_mouth_contrast", "photo_mouth_reason")} for k, v in out.items()})
    sharp, blurred = out["sharp"], out["blurred"]
    assert sharp["mouth_reason"] is None and sharp["mouth_open_frames"] >= fm.MIN_OPEN_FRAMES
    # Seen: contrast 64.9, teeth 42.0 sharp; 13.4 and -1.1 blurred (sigma 3 px) (53.5, 27.8; 12.0, 1.8 with the
    # corpus' flat teeth before 2026-12-07); the photo (frame 0, silence) has a closed mouth: NaN with its reason.
    assert sharp["mouth_contrast"] > 30 and sharp["teeth_brightness"] > 15
    assert blurred["mouth_contrast"] < 0.5 * sharp["mouth_contrast"]
    assert blurred["teeth_brightness"] < 0.5 * sharp["teeth_brightness"]
    assert math.isnan(sharp["photo_mouth_contrast"]) and "open mouth" in sharp["photo_mouth_reason"]


# --- the end-to-end evaluation's columns (thflax.measures.evaluation) -------------------------------------


class _Landmarker:
    """Stands in for dlib: `track` returns the given landmarks [T, 68, 2] (at 256 px)."""

    def __init__(self, landmarks: np.ndarray):
        self.landmarks = landmarks

    def track(self, frames: np.ndarray) -> np.ndarray:
        assert frames.shape[1:3] == (256, 256) and len(frames) == len(self.landmarks)
        return self.landmarks


def _utterance():
    """12 frames at 128 px: frame 0 closed (the reference), then a flat half-open mouth and wide-open
    teeth in turn; and the landmarks at 256 px, as evaluation tracks them."""
    openings = [0.0] + [0.1, 0.4] * 5 + [0.4]
    frames, lms = zip(*(scene(0.8, o, "teeth" if o > 0.2 else "flat") for o in openings))
    lm256 = (np.stack(lms) + 0.5) * 2 - 0.5
    t = len(openings)
    ex = {"frames": np.stack(frames), "landmarks_raw": lm256 / 256, "audio": np.zeros(t * 640, np.int16),
          "fps": np.float32(25.0), "speaker": "s1", "utterance": "u1"}
    return ex, lm256


def test_evaluation_rows_carry_the_mouth_over_the_truth():
    from thflax.measures import evaluation

    ex, lm256 = _utterance()
    real = evaluation.evaluate_utterance(evaluation.Row("Real", kind="real"), ex, None, lm256)
    assert real["mouth_contrast_ratio"] == 1.0 and real["teeth_ratio"] == 1.0  # by construction
    assert real["mouth_contrast_truth"] > 20 and real["teeth_brightness_truth"] > 60
    assert "psnr_lips" not in real  # real vs itself: blank, not perfect
    still = _Landmarker(np.repeat(lm256[:1], len(lm256), 0))  # what dlib finds on the copied closed mouth
    ref = evaluation.evaluate_utterance(evaluation.Row("Reference", kind="reference"), ex, still, lm256)
    assert math.isnan(ref["mouth_contrast_ratio"]) and math.isnan(ref["teeth_ratio"])
    assert "open mouth" in ref["mouth_reason"] and ref["mouth_reason_truth"] is None
    assert ref["teeth_brightness_truth"] == real["teeth_brightness_truth"]
    assert 5 < ref["psnr_lips"] < ref["psnr"]  # the copied closed mouth is worst where the lips are
    summary = evaluation.summarize({"Real": [real], "Reference": [ref]})
    assert summary["Reference"]["teeth_brightness_truth"] == pytest.approx(real["teeth_brightness"])
    table = evaluation.markdown_table(summary).splitlines()
    head = [c.strip() for c in table[0].strip("|").split("|")]
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in table[2:]}
    col = {k: head.index(k) for k in ("mouth contrast / truth", "teeth / truth", "lips PSNR")}
    assert [cells["Real"][col[k]] for k in col] == ["1.00", "1.00", "–"]
    assert cells["Reference"][col["mouth contrast / truth"]] == "–"
    assert cells["Reference"][col["lips PSNR"]] == f"{ref['psnr_lips']:.2f}"


def test_lips_psnr_reads_only_inside_the_real_outer_lips():
    from thflax.measures import evaluation

    ex, lm256 = _utterance()
    true = ex["frames"][1:]
    outside = true.copy()
    outside[:, :20] = 0  # the top of the frame, far from the mouth
    assert evaluation.lips_psnr(outside, true, lm256[1:]) > 100  # unchanged: masked_psnr's 1e-10 floor, 148 dB
    inside = true.copy()
    inside[:, 70:74, 50:78] = 0  # across the mouth (centre (64, 72) at 128 px)
    assert evaluation.lips_psnr(inside, true, lm256[1:]) < 20
    assert math.isnan(evaluation.lips_psnr(true, true, np.full_like(lm256[1:], np.nan)))
