"""Causal MFCC windows as audio arrives (thflax/io/audio_stream.py): chunking changes nothing, each
frame is complete exactly when its look-ahead has arrived, and the features approach the offline
(per-utterance CMVN) ones as speech accumulates."""

from __future__ import annotations

import numpy as np
import pytest

from thflax.io import audio, audio_stream

SR, FPS = 16000, 25.0


def _speechlike(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """Noise bursts with a varying spectrum, separated by digital silence (the hard case for CMVN)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    on = np.repeat(rng.random(n // 1600 + 1) > 0.4, 1600)[:n]
    tone = np.sin(2 * np.pi * np.cumsum(rng.uniform(100, 900, n)) / SR)
    return (on * (0.05 * rng.standard_normal(n) + 0.1 * tone)).astype(np.float32)


def _pushed(stream: audio_stream.WindowStream, x: np.ndarray, rng: np.random.Generator, max_chunk: int):
    """Pushes x in random chunks; returns the windows and, per frame, the samples pushed when it came out."""
    out, arrived, i = [], [], 0
    while i < len(x):
        n = int(rng.integers(1, max_chunk))
        w = stream.push(x[i:i + n])
        i += n
        out.append(w)
        arrived += [min(i, len(x))] * len(w)
    w = stream.flush()
    return np.concatenate(out + [w]), arrived + [len(x)] * len(w)


@pytest.mark.parametrize("max_chunk", [40, 700, 5000])
def test_chunks_of_any_size_give_the_whole_utterance_windows_bit_for_bit(max_chunk):
    x = _speechlike()
    whole = audio_stream.causal_windows(x, FPS)
    assert whole.shape == (audio.num_video_frames(len(x), FPS), 20, 20)
    for seed in range(3):
        got, _ = _pushed(audio_stream.WindowStream(FPS), x, np.random.default_rng(seed), max_chunk)
        np.testing.assert_array_equal(got, whole)


def test_each_frame_comes_out_once_its_lookahead_has_arrived_and_not_later():
    x = _speechlike(3.0, seed=1)
    cfg = audio.MfccConfig()
    rng = np.random.default_rng(5)
    _, arrived = _pushed(audio_stream.WindowStream(FPS), x, rng, 900)
    rng = np.random.default_rng(5)  # the same chunk boundaries again
    bounds, i = [], 0
    while i < len(x):
        i += int(rng.integers(1, 900))
        bounds.append(min(i, len(x)))
    idx = audio.window_indices(len(arrived), 1 << 40, FPS, cfg)  # unclamped at the end
    for t, got in enumerate(arrived):
        # The last MFCC frame of the window, centred on j*hop, needs n_fft/2 samples after it.
        need = idx[t, -1] * cfg.hop_length + 256
        expected = next((b for b in bounds if b >= need), len(x))
        assert got == expected, (t, got, need, expected)
    assert audio_stream.samples_needed(10, FPS) == 640 * 10 + 2016  # 126 ms past the frame's start


def test_windows_of_other_rates_and_window_sizes_match_too():
    x = _speechlike(2.0, seed=2)
    for fps, cfg in ((30.0, audio.MfccConfig(window=12)), (12.5, audio.MfccConfig(n_mfcc=13, window=8))):
        whole = audio_stream.causal_windows(x, fps, cfg)
        got, _ = _pushed(audio_stream.WindowStream(fps, cfg), x, np.random.default_rng(0), 1500)
        np.testing.assert_array_equal(got, whole)


def test_causal_features_approach_the_offline_ones():
    x = _speechlike(20.0, seed=3)
    cfg = audio.MfccConfig()
    causal = audio_stream.causal_windows(x, FPS, cfg)
    offline = audio.frame_windows(audio.mfcc_numpy(x, cfg), len(causal), FPS, cfg)
    err = np.abs(causal - offline).mean(axis=(1, 2))
    # The first second's statistics are a few frames'; after 10 s they are close to the whole file's.
    assert err[-100:].mean() < 0.2 < err[:25].mean(), (err[:25].mean(), err[-100:].mean())
    # Without the causal parts (floor, CMVN), the raw cepstra are the offline ones.
    raw = audio_stream.causal_mfcc(x, cfg)
    assert raw.shape == (1 + len(x) // cfg.hop_length, cfg.n_mfcc)


def test_a_stream_shorter_than_a_frame_gives_nothing_and_ends_once():
    s = audio_stream.WindowStream(FPS)
    assert s.push(np.zeros(100, np.float32)).shape == (0, 20, 20)
    assert s.flush().shape == (0, 20, 20)
    assert s.flush().shape == (0, 20, 20)
    with pytest.raises(ValueError):
        s.push(np.zeros(10, np.float32))
