"""Tests of the evaluation's lip-sync figures and rows (thflax/measures/evaluation.py): each row's lip-sync
figures (dlib mouth opening vs speech energy) find a known audio-visual offset, leave out frame 0, are
undefined for a still mouth, and reach the table; the real video is a row. On arrays: no corpus.

The rest of the evaluation protocol (no leak from the scored frames, disjoint splits) is
tests/test_eval_protocol.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from thflax import testing

FPS, SR, T_SYNC = 25.0, 16000, 60


def _envelope(n: int, seed: int) -> np.ndarray:
    """[n] a smooth random series in [0, 1] (syllable-like: a few frames per swing)."""
    from scipy.ndimage import gaussian_filter1d

    x = gaussian_filter1d(np.random.default_rng(seed).standard_normal(n), 2.0)
    return (x - x.min()) / (x.max() - x.min())


def _talking(openness: np.ndarray, size: int = 256) -> np.ndarray:
    """[T, 68, 2] landmarks at `size` px whose inner lips part by `openness[t]` (0 closed, 1 wide)."""
    return np.stack([testing.face_landmarks(float(o)) * size for o in openness])


def _speech(loudness: np.ndarray) -> np.ndarray:
    """[T·640] int16 at 16 kHz: a 200 Hz tone (8 periods per 25 fps frame) at 30·(loudness[t] - 1) dB in
    frame t, so that its energy in dB per frame is an affine copy of `loudness`."""
    spf = int(SR / FPS)
    amp = 0.5 * 10 ** (30 * (np.repeat(loudness, spf) - 1) / 20)
    tone = np.sin(2 * np.pi * 200 * np.arange(amp.size) / SR)
    return np.round(amp * tone * 32767).astype(np.int16)


def _synced(lag: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks [T, 68, 2] and audio [T·640] int16 where the mouth opens `lag` frames after the sound."""
    pad = 8
    e = _envelope(T_SYNC + 2 * pad, seed)
    return _talking(e[pad - lag:pad - lag + T_SYNC]), _speech(e[pad:pad + T_SYNC])


@pytest.mark.parametrize("lag", [2, -3, 0])
def test_lip_sync_figures_find_a_known_offset(lag):
    from thflax.measures import evaluation

    lm, audio = _synced(lag)
    got = evaluation.lip_sync_figures(lm, audio, FPS, SR)
    assert got["sync_offset"] == lag and got["sync_r"] > 0.98
    if lag:
        assert got["sync_r0"] < got["sync_r"] - 0.1
    else:
        assert got["sync_r0"] == got["sync_r"]
    # Frames dlib loses are interpolated, not a break in the series.
    lost = lm.copy()
    lost[[10, 11, 30]] = np.nan
    assert evaluation.lip_sync_figures(lost, audio, FPS, SR)["sync_offset"] == lag


def test_lip_sync_figures_leave_out_frame_0_and_are_undefined_for_a_still_mouth():
    from thflax.measures import evaluation

    lm, audio = _synced(0)
    wide = lm.copy()
    wide[0] = _talking(np.array([3.0]))[0]  # frame 0 (the reference) far off the speech
    assert evaluation.lip_sync_figures(wide, audio, FPS, SR) == evaluation.lip_sync_figures(lm, audio, FPS, SR)
    # ... which would have counted had it been kept (offset 0 pairs every frame).
    assert (evaluation.lip_sync_figures(wide, audio, FPS, SR, first=0)["sync_r0"]
            < evaluation.lip_sync_figures(lm, audio, FPS, SR, first=0)["sync_r0"] - 0.05)
    still = evaluation.lip_sync_figures(_talking(np.full(T_SYNC, 0.3)), audio, FPS, SR)
    assert set(still) == {"sync_r", "sync_offset", "sync_r0"} and all(np.isnan(v) for v in still.values())


class _StubLandmarker:
    """Stands in for dlib: `track` returns the given landmarks [T, 68, 2] for frames at 256 px."""

    def __init__(self, landmarks: np.ndarray):
        self.landmarks = landmarks

    def track(self, frames: np.ndarray) -> np.ndarray:
        assert frames.shape[1:3] == (256, 256)
        return self.landmarks


def test_rows_carry_lip_sync_into_the_table_with_the_real_video_as_ceiling():
    from thflax.measures import evaluation

    true_lm, audio = _synced(0)
    frames = np.random.default_rng(0).integers(0, 255, (T_SYNC, 32, 32, 3), dtype=np.uint8)
    ex = {"frames": frames, "landmarks_raw": true_lm / 256, "audio": audio, "fps": np.float32(FPS),
          "speaker": "s1", "utterance": "u1"}
    still = _StubLandmarker(_talking(np.full(T_SYNC, 0.3)))  # what dlib finds on the copied reference
    ref = evaluation.evaluate_utterance(evaluation.Row("Reference", kind="reference"), ex, still, true_lm)
    real = evaluation.evaluate_utterance(evaluation.Row("Real", kind="real"), ex, still, true_lm)
    assert np.isnan(ref["sync_r"]) and np.isnan(ref["sync_offset"]) and np.isfinite(ref["ssim"])
    assert real["sync_offset"] == 0 and real["sync_r"] > 0.98 and real["detected"] == 1.0
    assert "ssim" not in real and "lmd" not in real  # real vs itself: blank, not perfect
    summary = evaluation.summarize({"Real": [real], "Reference": [ref]})
    table = evaluation.markdown_table(summary).splitlines()
    head = [c.strip() for c in table[0].strip("|").split("|")]
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in table[2:]}
    col = {name: head.index(name) for name in ("SSIM", "sync r", "sync offset", "sync r @0")}
    assert cells["Real"][col["sync r"]] == f"{real['sync_r']:.2f}" and cells["Real"][col["sync offset"]] == "0.0"
    assert cells["Real"][col["SSIM"]] == "–"
    assert [cells["Reference"][col[k]] for k in ("sync r", "sync offset", "sync r @0")] == ["–"] * 3


def test_summary_takes_the_median_offset_and_skips_undefined_sync():
    from thflax.measures import evaluation

    nan = float("nan")
    utts = [{"sync_r": 0.6, "sync_offset": 1, "sync_r0": 0.5}, {"sync_r": 0.4, "sync_offset": 5, "sync_r0": 0.1},
            {"sync_r": 0.5, "sync_offset": 1, "sync_r0": 0.3}, {"sync_r": nan, "sync_offset": nan, "sync_r0": nan}]
    row = evaluation.summarize({"m": utts})["m"]
    assert row["sync_offset"] == 1.0  # the median; the mean would be 2.33
    assert row["sync_r"] == pytest.approx(0.5) and row["sync_r0"] == pytest.approx(0.3) and row["utterances"] == 4
