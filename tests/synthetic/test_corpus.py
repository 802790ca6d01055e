"""Tests of the synthetic corpus on disk (thflax/synthetic/corpus.py): GRID layout, alignments, presets."""

from __future__ import annotations

import json
import os
import re

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.corpus  # renders faces / builds datasets: minutes
import soundfile

from thflax.errors import InputError
from thflax.synthetic import base_face, corpus, grammar
from thflax.io import speech

SENTENCE = ["bin", "blue", "at", "f", "two", "now"]
_ALIGN_LINE = re.compile(r"^(\d+) (\d+) ([a-z]+)$")


def test_corpus_layout(tmp_path):
    out = tmp_path / "corpus"
    manifest = corpus.generate_corpus(out, num_speakers=2, utterances_per_speaker=2, seed=3,
                                      progress=False)
    assert json.loads((out / "corpus.json").read_text()) == json.loads(json.dumps(manifest))
    assert manifest["num_utterances"] == 4 and set(manifest["speakers"]) == {"s1", "s2"}
    assert manifest["speakers"]["s1"]["voice"] in speech.VOICES
    for item in manifest["utterances"]:
        spk, uid, words = item["speaker"], item["utt_id"], item["words"]
        assert uid[:6] == grammar.utterance_id(words)
        video = out / spk / f"{uid}.mp4"
        cap = cv2.VideoCapture(str(video))
        assert cap.isOpened()
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
        frames = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(f)
        cap.release()
        t = item["frames"]
        assert len(frames) == t and frames[0].shape == (288, 360, 3)
        audio, sr = soundfile.read(str(out / "audio" / spk / f"{uid}.wav"), dtype="float32")
        info = soundfile.info(str(out / "audio" / spk / f"{uid}.wav"))
        assert sr == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert len(audio) == t * 640 and np.sqrt(np.mean(audio**2)) > 0.01
        lines = (out / "alignments" / spk / f"{uid}.align").read_text().splitlines()
        segs = []
        for line in lines:
            m = _ALIGN_LINE.match(line)
            assert m, line
            segs.append((int(m[1]), int(m[2]), m[3]))
        assert segs[0][0] == 0 and segs[0][2] == "sil" and segs[-1][2] == "sil"
        assert segs[-1][1] == t * 1000  # 1/25000 s units: 1000 per frame
        assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))
        assert all(s[1] >= s[0] for s in segs)
        assert [w for _, _, w in segs if w not in ("sil", "sp")] == words
        truth = np.load(out / "synthetic_truth" / spk / f"{uid}.npz")
        assert truth["landmarks"].shape == (t, 68, 2) and truth["poses"].shape == (t, 6)
        # The decoded video still shows the face where the ground truth says.
        rgb = cv2.cvtColor(frames[t // 2], cv2.COLOR_BGR2RGB)
        p = base_face.detect_landmarks(rgb, 1)
        assert p is not None and np.linalg.norm(p - truth["landmarks"][t // 2], axis=-1).mean() < 3.0

    # Deterministic: a smaller corpus with the same seed reproduces s1's first utterance.
    out2 = tmp_path / "again"
    m2 = corpus.generate_corpus(out2, 1, 1, seed=3, progress=False)
    uid = m2["utterances"][0]["utt_id"]
    assert uid == manifest["speakers"]["s1"]["utterances"][0]
    for rel in [f"s1/{uid}.mp4", f"audio/s1/{uid}.wav", f"alignments/s1/{uid}.align"]:
        assert (out / rel).read_bytes() == (out2 / rel).read_bytes(), rel


def test_align_lines_and_unique_ids():
    segs = corpus.align_lines([(0.4, 0.6, "bin"), (0.6, 0.8, "blue"), (0.9, 1.0, "at")], 1.2)
    assert segs == [(0, 10000, "sil"), (10000, 15000, "bin"), (15000, 20000, "blue"),
                    (20000, 22500, "sp"), (22500, 25000, "at"), (25000, 30000, "sil")]
    plan = corpus.plan_utterances(0, 1, 400)
    ids = [uid for _, uid in plan]
    assert len(set(ids)) == len(ids)


def test_repeated_sentences_get_suffixes(monkeypatch):
    monkeypatch.setattr(grammar, "sample_sentence", lambda rng: (list(SENTENCE), "bbaf2n"))
    plan = corpus.plan_utterances(0, 1, 3)
    assert [uid for _, uid in plan] == ["bbaf2n", "bbaf2n_2", "bbaf2n_3"]
    assert all(words == SENTENCE for words, _ in plan)


def _outline_motion(landmarks: np.ndarray) -> float:
    """Mean over the non-mouth points 0-47 of their std over time, frame px: how much the head moves."""
    return float(landmarks[:, :48].std(0).mean())


def test_grid_like_preset_has_frontal_nearly_still_heads(tmp_path):
    """One utterance of the `grid_like` preset and one of `small` (as configured: their own seeds and
    speakers), and grid_like's own utterance at the default amplitude: grid_like's head moves by a few
    pixels and degrees, several times less than small's, and only the motion differs."""
    from input_pipeline import synthetic

    by_name = {c.name: c for c in synthetic.CONFIGS}
    grid, small = by_name["grid_like"], by_name["small"]
    assert (grid.crop_size, grid.num_speakers, grid.utterances_per_speaker) == (
        small.crop_size, small.num_speakers, small.utterances_per_speaker)
    assert grid.seed not in {c.seed for c in synthetic.CONFIGS if c is not grid}
    assert 0 < grid.head_motion_scale < 1
    assert all(c.head_motion_scale == 1.0 for c in synthetic.CONFIGS if c is not grid)  # existing: untouched

    def one(name: str, seed: int, scale: float) -> tuple[dict, dict]:
        m = corpus.generate_corpus(tmp_path / name, 1, 1, seed=seed, progress=False, head_motion_scale=scale)
        uid = m["utterances"][0]["utt_id"]
        return m, dict(np.load(tmp_path / name / "synthetic_truth" / "s1" / f"{uid}.npz"))

    m_grid, grid_truth = one("grid", grid.seed, grid.head_motion_scale)
    m_small, small_truth = one("small", small.seed, small.head_motion_scale)
    m_same, same_truth = one("same", grid.seed, 1.0)
    assert m_grid["head_motion_scale"] == grid.head_motion_scale
    assert "head_motion_scale" not in m_small and "head_motion_scale" not in m_same  # default manifests as before
    stats = {}
    for name, truth in (("grid_like", grid_truth), ("small", small_truth), ("grid_like x1", same_truth)):
        p = truth["poses"]
        stats[name] = (float(np.abs(p[:, 0]).max()), float(p[:, 0].std()), float(p[:, 3].std()),
                       _outline_motion(truth["landmarks"]))
    print("max |yaw| deg, yaw std deg, tx std px, outline motion px:",
          {k: np.round(v, 2).tolist() for k, v in stats.items()})
    g = stats["grid_like"]
    assert g[0] < 6.0 and g[3] < 2.0  # frontal and nearly still: within a few degrees and pixels
    for other in ("small", "grid_like x1"):
        assert g[1] < stats[other][1] / 2 and g[2] < stats[other][2] / 2 and g[3] < stats[other][3] / 2
    # Same seed at both amplitudes: same sentence, same speech; only the head moves differently.
    uid = m_grid["utterances"][0]["utt_id"]
    assert uid == m_same["utterances"][0]["utt_id"]
    assert (tmp_path / "grid" / "audio" / "s1" / f"{uid}.wav").read_bytes() == \
        (tmp_path / "same" / "audio" / "s1" / f"{uid}.wav").read_bytes()
    with pytest.raises(InputError):
        corpus.generate_corpus(tmp_path / "bad", 1, 1, seed=0, progress=False, head_motion_scale=-1.0)


def test_grid_like_builder_passes_its_head_motion_to_the_generator(tmp_path, monkeypatch):
    """The TFDS builder hands each config's `head_motion_scale` to `generate_corpus` (0.25 for grid_like,
    1.0 for the others)."""
    import types

    from input_pipeline import synthetic

    calls = {}

    def fake_generate(out, **kw):
        calls[os.path.basename(out)] = kw

    monkeypatch.setattr(corpus, "generate_corpus", fake_generate)
    dl = types.SimpleNamespace(manual_dir="", download_dir=str(tmp_path / "downloads"))
    for name in ("grid_like", "small"):
        builder = synthetic.SyntheticTalkingHeads(config=name, data_dir=str(tmp_path / "tfds"))
        builder.corpus_dir(dl)
    assert calls["grid_like"]["head_motion_scale"] == 0.25 and calls["grid_like"]["seed"] == 6
    assert calls["small"]["head_motion_scale"] == 1.0 and calls["small"]["seed"] == 1
