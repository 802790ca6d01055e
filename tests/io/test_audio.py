import numpy as np
import pytest
import soundfile as sf

from thflax.io import audio
from thflax.errors import AudioError


def _tone(seconds=1.0, sr=16000, f=220.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_mfcc_shape_hop_and_normalisation():
    cfg = audio.MfccConfig()
    x = _tone(2.0) * np.linspace(0, 1, 32000, dtype=np.float32)
    m = audio.mfcc(x, cfg)
    assert m.shape == (1 + 32000 // 160, cfg.n_mfcc) and m.dtype == np.float32
    np.testing.assert_allclose(m.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(m.std(0), 1, atol=1e-3)


def test_windows_are_centred_on_video_frames():
    cfg = audio.MfccConfig(window=8)
    feats = np.arange(400, dtype=np.float32)[:, None].repeat(3, 1)  # value = mfcc frame index
    w = audio.frame_windows(feats, 25, fps=25, config=cfg)
    assert w.shape == (25, 8, 3)
    # Frame t is centred at (t + 0.5) * 40 ms = MFCC index 4t + 2: window covers 4t-2 .. 4t+5.
    for t in (5, 10, 20):
        np.testing.assert_array_equal(w[t, :, 0], np.arange(4 * t - 2, 4 * t + 6))
    # Edges are padded by repeating the first / last MFCC frame.
    assert w[0, 0, 0] == 0 and w[0, 2, 0] == 0
    end = audio.frame_windows(feats, 100, fps=25, config=cfg)
    assert end[-1, -1, 0] == 399


def test_start_frame_offsets_windows():
    cfg = audio.MfccConfig(window=4)
    feats = np.arange(400, dtype=np.float32)[:, None]
    full = audio.frame_windows(feats, 50, 25, cfg)
    part = audio.frame_windows(feats, 10, 25, cfg, start_frame=30)
    np.testing.assert_array_equal(full[30:40], part)


def test_audio_to_windows_frame_count():
    x = _tone(3.0)
    w = audio.audio_to_windows(x, fps=25)
    assert w.shape[0] == 75


@pytest.mark.parametrize("fmt,sr", [("wav", 16000), ("flac", 44100), ("wav", 22050)])
def test_load_audio_resamples_any_rate(tmp_path, fmt, sr):
    path = tmp_path / f"x.{fmt}"
    sf.write(path, np.stack([_tone(1.0, sr), _tone(1.0, sr)], 1), sr)  # stereo -> mono
    x = audio.load_audio(str(path))
    assert x.dtype == np.float32 and x.ndim == 1 and abs(x.size - 16000) <= 2


def test_load_audio_from_video_container(tmp_path):
    from thflax.io import video

    wav = tmp_path / "s.wav"
    sf.write(wav, _tone(1.0), 16000)
    frames = np.zeros((25, 32, 32, 3), np.uint8)
    out = tmp_path / "v.mp4"
    video.write_video(str(out), frames, 25, audio_path=str(wav))
    x = audio.load_audio(str(out))
    assert abs(x.size / 16000 - 1.0) < 0.1


def test_bad_audio_gives_specific_errors(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        audio.load_audio(str(tmp_path / "missing.wav"))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="cannot read"):
        audio.load_audio(str(junk))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError):
        audio.load_audio(str(empty))
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioError, match="silent"):
        audio.load_audio(str(silent))
    short = tmp_path / "short.wav"
    sf.write(short, _tone(0.05), 16000)
    with pytest.raises(AudioError, match="too short"):
        audio.load_audio(str(short))
