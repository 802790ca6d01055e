"""Speech features: any audio file -> 16 kHz mono -> MFCC (10 ms hop) -> one window per video frame.

Normalisation: cepstral mean and variance normalisation (CMVN) per utterance — each MFCC coefficient
has zero mean and unit variance over the file. It removes loudness and channel differences between
recordings, and keeps c0 (log energy) so silence stays distinguishable from speech.

Alignment: video frame t spans [t/fps, (t+1)/fps); its window is the `window` MFCC frames centred on
(t + 0.5)/fps. MFCC frame j is centred on j·hop (librosa's `center=True`). Indices outside the
utterance are clamped (edge padding).

This module belongs to the data layer (it imports librosa lazily, so importing it is cheap).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess

import numpy as np

from thflax.errors import AudioError

SAMPLE_RATE = 16000
HOP_SECONDS = 0.010


@dataclasses.dataclass(frozen=True)
class MfccConfig:
    """Feature parameters; they are stored with every dataset so a model is fed what it was trained on."""

    sample_rate: int = SAMPLE_RATE
    n_mfcc: int = 20
    n_mels: int = 40
    win_seconds: float = 0.025
    hop_seconds: float = HOP_SECONDS
    window: int = 20  # MFCC frames per video frame window (200 ms of context).

    @property
    def hop_length(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate))

    @property
    def win_length(self) -> int:
        return int(round(self.win_seconds * self.sample_rate))


def _decode_with_ffmpeg(path: str, sample_rate: int) -> np.ndarray:
    """Decodes any container ffmpeg knows (mp4, m4a, mkv, ...) to mono float32 at `sample_rate`."""
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", path, "-vn",
           "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        if audio_track_missing(path):  # ffmpeg itself only says "Error opening output files"
            raise AudioError(f"{path} has no audio track")
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"cannot read audio from {path}: {msg[-1] if msg else 'ffmpeg failed'}")
    return np.frombuffer(proc.stdout, np.float32).copy()


def audio_track_missing(path: str) -> bool:
    """True when ffmpeg opens `path` as media that has no audio stream (e.g. a silent video).

    False for files with audio and for files ffmpeg cannot open. Used to explain ffmpeg failures,
    whose own message for this case ("Invalid argument") names neither the file nor the cause.
    """
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", path]
    text = subprocess.run(cmd, capture_output=True, check=False).stderr.decode(errors="replace")
    opened = re.search(r"^Input #0\b", text, re.M) is not None
    return opened and re.search(r"Stream #\d+:\d+\S*: Audio:", text) is None


def load_audio(path: str, sample_rate: int = SAMPLE_RATE, min_seconds: float = 0.2,
               silence_peak: float = 1e-3) -> np.ndarray:
    """Loads any common audio format (or a video's audio track) as mono float32 at `sample_rate`.

    Other sample rates are resampled (librosa, soxr), never refused.

    Returns:
      [num_samples] float32 in [-1, 1].

    Raises:
      AudioError: missing file, a directory, undecodable data, a video without an audio track, no
        samples, shorter than `min_seconds`, or silent (peak amplitude below `silence_peak`).
    """
    if os.path.isdir(path):
        raise AudioError(f"{path} is a directory, not an audio file")
    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    import soundfile as sf
    import librosa

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        audio = data.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        # Not a format libsndfile reads (e.g. an mp4 audio track): let ffmpeg decode and resample.
        audio, sr = _decode_with_ffmpeg(path, sample_rate), sample_rate
    if audio.size == 0:
        raise AudioError(f"audio file has no samples: {path}")
    if sr != sample_rate:
        audio = librosa.resample(audio, orig_sr=sr, target_sr=sample_rate)
    audio = np.asarray(audio, np.float32)
    check_audio(audio, sample_rate, min_seconds, silence_peak, name=path)
    return audio


def check_audio(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, min_seconds: float = 0.2,
                silence_peak: float = 1e-3, name: str = "audio") -> None:
    """Raises AudioError for empty, non-finite, too short or silent audio."""
    if audio.size == 0:
        raise AudioError(f"{name}: no samples")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    seconds = audio.size / sample_rate
    if seconds < min_seconds:
        raise AudioError(f"{name}: {seconds:.3f} s of audio is too short (need at least {min_seconds} s)")
    peak = float(np.max(np.abs(audio)))
    if peak < silence_peak:
        raise AudioError(f"{name}: audio is silent (peak amplitude {peak:.2e})")


def mfcc(audio: np.ndarray, config: MfccConfig = MfccConfig()) -> np.ndarray:
    """MFCC with a 10 ms hop and per-utterance CMVN.

    Args:
      audio: [num_samples] float32 mono at `config.sample_rate`.

    Returns:
      [num_mfcc_frames, n_mfcc] float32, num_mfcc_frames = 1 + num_samples // hop.
    """
    import librosa

    feats = librosa.feature.mfcc(
        y=np.asarray(audio, np.float32), sr=config.sample_rate, n_mfcc=config.n_mfcc,
        n_mels=config.n_mels, n_fft=max(512, config.win_length), win_length=config.win_length,
        hop_length=config.hop_length, center=True).T
    mean = feats.mean(axis=0, keepdims=True)
    std = feats.std(axis=0, keepdims=True)
    return ((feats - mean) / np.maximum(std, 1e-5)).astype(np.float32)


def num_video_frames(num_samples: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Number of whole video frames the audio covers."""
    return int(np.floor(num_samples / sample_rate * fps + 1e-6))


def window_indices(num_frames: int, num_mfcc_frames: int, fps: float,
                   config: MfccConfig = MfccConfig(), start_frame: int = 0) -> np.ndarray:
    """MFCC frame indices of each video frame's window, clamped to the utterance: [T, window] int."""
    t = np.arange(start_frame, start_frame + num_frames, dtype=np.float64)
    centre = (t + 0.5) / fps / config.hop_seconds
    start = np.round(centre - config.window / 2).astype(np.int64)
    idx = start[:, None] + np.arange(config.window)[None, :]
    return np.clip(idx, 0, num_mfcc_frames - 1)


def frame_windows(features: np.ndarray, num_frames: int, fps: float,
                  config: MfccConfig = MfccConfig(), start_frame: int = 0) -> np.ndarray:
    """Slices MFCC [N, n_mfcc] into per-video-frame windows [num_frames, window, n_mfcc]."""
    idx = window_indices(num_frames, features.shape[0], fps, config, start_frame)
    return features[idx]


def audio_to_windows(audio: np.ndarray, fps: float, config: MfccConfig = MfccConfig(),
                     num_frames: int | None = None) -> np.ndarray:
    """audio [num_samples] -> MFCC windows [T, window, n_mfcc] with T = `num_frames` or all frames."""
    if num_frames is None:
        num_frames = num_video_frames(audio.size, fps, config.sample_rate)
    return frame_windows(mfcc(audio, config), num_frames, fps, config)


def mfcc_numpy(audio: np.ndarray, config: "MfccConfig") -> np.ndarray:
    """`mfcc` (librosa's MFCC with per-utterance CMVN) in NumPy, without importing librosa.

    A second implementation on purpose: importing librosa (with scipy.signal and numba) takes longer
    than generating a short clip, so generation uses this one; dataset preparation keeps librosa's.

    Same STFT (periodic Hann window, zero padding, centred frames), Slaney mel filters, power in dB
    with an 80 dB floor and orthonormal DCT-II; `tests/test_generate_inputs.py` checks it against
    `thflax.io.audio.mfcc`. Returns [num_mfcc_frames, n_mfcc] float32.
    """
    y = np.asarray(audio, np.float32)
    n_fft = stft_size(config)
    y = np.pad(y, (n_fft // 2, n_fft // 2))
    db = mel_db_frames(y, config)
    db = np.maximum(db, db.max() - 80.0)
    feats = db @ dct_matrix(config).T  # [T, n_mfcc]
    mean = feats.mean(axis=0, keepdims=True)
    std = feats.std(axis=0, keepdims=True)
    return ((feats - mean) / np.maximum(std, 1e-5)).astype(np.float32)


def stft_size(config: "MfccConfig") -> int:
    """FFT length of the MFCC's STFT; frame j covers samples [j·hop - n_fft/2, j·hop + n_fft/2)."""
    return max(512, config.win_length)


def mel_db_frames(padded: np.ndarray, config: "MfccConfig", rowwise: bool = False) -> np.ndarray:
    """Mel power in dB (before any floor) of every whole STFT frame of `padded` [M] float32 (the audio
    with n_fft/2 zeros before it): [1 + (M - n_fft) // hop, n_mels] float32.

    rowwise: the mel matrix product with `np.einsum` (a fixed summation order per frame) instead of
    BLAS, whose rounding depends on how many frames are multiplied at once: a stream's frames
    (`thflax.io.audio_stream`) are then bit for bit those of the whole utterance.
    """
    y = np.ascontiguousarray(padded, np.float32)
    sr, n_fft = config.sample_rate, stft_size(config)
    hop, win = config.hop_length, config.win_length
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)
    lpad = (n_fft - win) // 2
    window = np.pad(window, (lpad, n_fft - win - lpad))
    n_frames = max(1 + (len(y) - n_fft) // hop, 0)
    frames = np.lib.stride_tricks.as_strided(y, (n_frames, n_fft), (y.strides[0] * hop, y.strides[0]))
    power = np.abs(np.fft.rfft(frames * window, axis=1).astype(np.complex64)) ** 2  # [T, F]
    filters = _mel_filters(sr, n_fft, config.n_mels)
    mel = np.einsum("tf,mf->tm", power, filters) if rowwise else power @ filters.T  # [T, n_mels]
    return 10.0 * np.log10(np.maximum(1e-10, mel))


def dct_matrix(config: "MfccConfig") -> np.ndarray:
    """Orthonormal DCT-II from mel dB to cepstrum: [n_mfcc, n_mels] float32."""
    n = config.n_mels
    k = np.arange(config.n_mfcc)[:, None]
    dct = np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n)) * np.sqrt(2.0 / n)
    dct[0] /= np.sqrt(2.0)
    return dct.astype(np.float32)


def _mel_filters(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels) (Slaney scale and norm): [n_mels, 1 + n_fft // 2]."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2.0), n_mels + 2))
    fftfreqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None].astype(np.float32)
    return weights
