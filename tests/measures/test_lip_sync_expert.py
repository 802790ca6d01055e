"""LSE-D / LSE-C and the A/V offset (thflax/measures/lip_sync_expert.py) on embeddings whose answer is known,
against a transcription of syncnet_python's calc_pdist, and an expert's windows and alignment."""

from __future__ import annotations

import numpy as np
import pytest

from thflax.measures import lip_sync_expert as lse
from thflax.models import syncnet


def _calc_pdist_then_scores(video: np.ndarray, audio: np.ndarray, vshift: int):
    """syncnet_python's SyncNetInstance.evaluate after the embeddings, line for line in numpy (torch's
    pairwise_distance: ||x1 - x2 + 1e-6||; median of an odd count)."""
    win = vshift * 2 + 1
    feat2p = np.pad(audio, ((vshift, vshift), (0, 0)))
    dists = [np.linalg.norm(np.repeat(video[[i]], win, 0) - feat2p[i:i + win] + 1e-6, axis=1) for i in range(len(video))]
    mdist = np.mean(np.stack(dists, 1), 1)
    minidx = int(np.argmin(mdist))
    return vshift - minidx, float(mdist[minidx]), float(np.median(mdist) - mdist[minidx])


def _lagged(n: int, lag: int, noise: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Audio embeddings of n windows, and video ones that show window v's audio `lag` windows late."""
    audio = rng.normal(size=(n, 16))
    video = np.stack([audio[min(max(v - lag, 0), n - 1)] for v in range(n)]) + noise * rng.normal(size=(n, 16))
    return video, audio


@pytest.mark.parametrize("lag", [0, 3, -4, 12])
def test_offset_and_scores_recover_a_known_lag(lag):
    rng = np.random.default_rng(lag + 20)
    video, audio = _lagged(80, lag, 0.05, rng)
    out = lse.scores(lse.offset_distances(video, audio))
    assert out["lse_offset"] == lag  # + = the video lags the audio
    # At the true offset the windows match up to the noise (and the few clamped at the edge); elsewhere
    # two random 16-d vectors are ~sqrt(2 * 16) apart.
    assert out["lse_d"] < 0.25 * np.sqrt(32)
    assert out["lse_c"] > 0.5 * np.sqrt(32)


def test_same_numbers_as_syncnet_python():
    rng = np.random.default_rng(1)
    video, audio = _lagged(40, 2, 0.5, rng)
    for vshift in (15, 5):
        offset, minval, conf = _calc_pdist_then_scores(video, audio, vshift)
        out = lse.scores(lse.offset_distances(video, audio, vshift), vshift)
        assert out["lse_offset"] == offset
        np.testing.assert_allclose([out["lse_d"], out["lse_c"]], [minval, conf], rtol=1e-12)


def test_a_still_mouth_has_no_confidence():
    """A constant video embedding is equally far from every audio window: LSE-C ~ 0, far below a synced video's."""
    rng = np.random.default_rng(2)
    video, audio = _lagged(80, 0, 0.05, rng)
    still = np.repeat(video[:1], len(video), 0)
    synced, frozen = (lse.scores(lse.offset_distances(v, audio)) for v in (video, still))
    assert frozen["lse_c"] < 0.1 * synced["lse_c"]
    assert frozen["lse_d"] > synced["lse_d"] + 1.0


def test_empty_video_is_undefined():
    out = lse.scores(lse.offset_distances(np.zeros((0, 4)), np.zeros((0, 4))))
    assert all(np.isnan(v) for v in out.values())
    assert lse.num_windows(4) == 0 and lse.num_windows(30) == 25


def _tiny_expert(public: bool = False) -> lse.Expert:
    import jax
    import jax.numpy as jnp

    model = syncnet.SyncNet((4, 8, 8, 8, 8, 8), (4, 8, 8, 8, 8, 8), 8, 6, stem_pool=False)
    spec = syncnet.InputSpec((0.25, 0.475, 0.75, 0.85), (48, 64))
    v = model.init(jax.random.key(0), jnp.zeros((1, 13, 20)), jnp.zeros((1, 5, 48, 64, 3)))
    return lse.Expert("tiny", model, v, spec, public=public, crop_size=64)


def test_expert_reads_the_middle_frames_mfcc_window_of_each_window():
    expert = _tiny_expert()
    t = 12
    mfcc = np.zeros((t, 20, 20), np.float32)
    mfcc += np.arange(t, dtype=np.float32)[:, None, None]  # window of frame f holds the value f
    mfcc[:, :, 13:] = -1.0  # coefficients past the 13 the expert reads
    a = expert.audio_windows(t, mfcc=mfcc)
    assert a.shape == (t - 5, 13, 20)  # [window, coefficient, time]
    np.testing.assert_array_equal(a[:, 0, 0], np.arange(2, t - 3))  # window v: frame v + 2's MFCC
    assert (a >= 0).all()


def test_expert_measures_a_clip_end_to_end():
    expert = _tiny_expert()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (30, 64, 64, 3), dtype=np.uint8)
    out = expert.measure(frames, mfcc=rng.normal(size=(30, 20, 20)).astype(np.float32))
    assert np.isfinite(out["lse_d"]) and out["lse_c"] >= 0 and -15 <= out["lse_offset"] <= 15
    # From raw samples the same way the dataset computes its windows (librosa, CMVN).
    speech = (0.1 * rng.normal(size=30 * 640)).astype(np.float32)
    assert np.isfinite(expert.measure(frames, audio=speech)["lse_d"])
    # Deterministic.
    assert expert.measure(frames, mfcc=np.ones((30, 20, 20), np.float32)) == expert.measure(
        frames, mfcc=np.ones((30, 20, 20), np.float32))


def test_public_audio_windows_slice_syncnet_pythons_mfcc():
    psf = pytest.importorskip("python_speech_features",
                              reason="python_speech_features is not installed (pip install -e '.[sync-reference]')")
    rng = np.random.default_rng(0)
    audio = (3000 * rng.normal(size=16000)).astype(np.int16)  # 1 s: 25 frames
    windows = lse.public_audio_windows(audio, lse.num_windows(25))
    full = np.asarray(psf.mfcc(audio, 16000), np.float32).T  # [13, M], as SyncNetInstance.evaluate reads it
    assert windows.shape == (20, 13, 20)
    np.testing.assert_allclose(windows[3], full[:, 12:32], rtol=1e-6)  # window v: MFCC frames 4v .. 4v + 19
