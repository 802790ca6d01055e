"""Speech features as the audio arrives: `thflax.io.audio`'s MFCC windows, computed causally, chunk by chunk.

Two steps of the offline features read the whole utterance: the dB floor (80 dB under the loudest
frame of the file) and CMVN (each coefficient's mean and std over the file). A stream cannot, so here
both are causal: MFCC frame j is floored 80 dB under the loudest frame up to j, and video frame t's
window is normalised with the mean and std of the MFCC frames 0..e_t, e_t the last frame of its
window. Everything else is the offline computation (`thflax.io.audio.mel_db_frames`, the DCT, the
windows centred on each video frame, indices clamped at both ends). The statistics converge to the
utterance's as speech accumulates; the first second differs most (BENCHMARKS.md, "live").

`causal_windows` computes the same windows for a whole utterance at once (vectorised); a
`WindowStream` pushed the same audio in chunks of any size gives them too, bit for bit (the matrix
products are summed in a fixed order per frame, `mel_db_frames(rowwise=True)`: with BLAS, rounding
differences between batch sizes, blown up by the CMVN of a run of digital silence, reached 1.0).

Look-ahead (what bounds a live video's latency): video frame t, which shows [t/fps, (t+1)/fps), needs
MFCC frames up to e_t, and MFCC frame j needs the samples up to j·hop + n_fft/2: `samples_needed`.
With 25 fps and the default `MfccConfig` that is 640 t + 2016 samples, 126 ms past the frame's start.

numpy only.
"""

from __future__ import annotations

import numpy as np

from thflax.io import audio as audio_lib

FLOOR_DB = 80.0  # the offline floor: `mfcc_numpy`'s `db.max() - 80`
MIN_STD = 1e-5  # the offline CMVN's floor on the std


def last_window_frame(frame: int, fps: float, config: audio_lib.MfccConfig = audio_lib.MfccConfig()) -> int:
    """e_t: the last MFCC frame index in video frame `frame`'s window (before clamping to the utterance)."""
    centre = (frame + 0.5) / fps / config.hop_seconds
    return int(np.round(centre - config.window / 2)) + config.window - 1


def samples_needed(frame: int, fps: float, config: audio_lib.MfccConfig = audio_lib.MfccConfig()) -> int:
    """Samples from the start of the stream that video frame `frame`'s window needs (its MFCC frames,
    each centred on j·hop with n_fft/2 samples either side)."""
    return max(last_window_frame(frame, fps, config) * config.hop_length + audio_lib.stft_size(config) // 2, 0)


def causal_mfcc(audio: np.ndarray, config: audio_lib.MfccConfig = audio_lib.MfccConfig()) -> np.ndarray:
    """MFCC frames with the causal dB floor, before normalisation: [1 + N // hop, n_mfcc] float32."""
    n_fft = audio_lib.stft_size(config)
    db = audio_lib.mel_db_frames(np.pad(np.asarray(audio, np.float32), (n_fft // 2, n_fft // 2)), config,
                                 rowwise=True)
    return _floor_and_dct(db, -np.inf, config)[0]


def _floor_and_dct(db: np.ndarray, loudest: float, config) -> tuple[np.ndarray, float]:
    """mel dB [J, n_mels] -> (cepstra [J, n_mfcc] float32, the loudest dB so far); each frame floored
    `FLOOR_DB` under the loudest frame up to it (`loudest`: up to the frame before these)."""
    if len(db) == 0:
        return np.zeros((0, config.n_mfcc), np.float32), loudest
    peaks = np.maximum.accumulate(np.concatenate([[loudest], db.max(axis=1)]))[1:]
    db = np.maximum(db, (peaks - FLOOR_DB)[:, None].astype(np.float32))
    # einsum, not BLAS: the same rounding for a frame however many are multiplied at once.
    return np.einsum("tm,cm->tc", db, audio_lib.dct_matrix(config)).astype(np.float32), float(peaks[-1])


def _normalise(windows: np.ndarray, sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Windows [T, W, n] normalised by the statistics of `counts` [T] frames (their sums [T, n] and sums
    of squares, float64): float32 [T, W, n]."""
    mean = sums / counts[:, None]
    std = np.sqrt(np.maximum(squares / counts[:, None] - mean * mean, 0.0))
    return ((windows - mean[:, None]) / np.maximum(std, MIN_STD)[:, None]).astype(np.float32)


def causal_windows(audio: np.ndarray, fps: float, config: audio_lib.MfccConfig = audio_lib.MfccConfig(),
                   num_frames: int | None = None) -> np.ndarray:
    """The causally normalised MFCC windows of a whole utterance [N]: [T, window, n_mfcc] float32, T =
    `num_frames` or every whole video frame the audio covers (what a `WindowStream` yields for it)."""
    feats = causal_mfcc(audio, config)
    if num_frames is None:
        num_frames = audio_lib.num_video_frames(np.size(audio), fps, config.sample_rate)
    idx = audio_lib.window_indices(num_frames, len(feats), fps, config)
    f64 = feats.astype(np.float64)
    sums, squares = np.cumsum(f64, axis=0), np.cumsum(f64 * f64, axis=0)
    last = idx[:, -1]
    return _normalise(feats[idx], sums[last], squares[last], last + 1.0)


class WindowStream:
    """`causal_windows` chunk by chunk: `push(samples)` returns the windows of the video frames whose
    audio is complete (`samples_needed`), `flush()` those of the rest once the stream has ended.

    Memory stays bounded (the last window's MFCC frames and one STFT frame of samples), however long
    the stream.
    """

    def __init__(self, fps: float, config: audio_lib.MfccConfig = audio_lib.MfccConfig()):
        self.fps = float(fps)
        self.config = config
        self._n_fft = audio_lib.stft_size(config)
        self._hop = config.hop_length
        self._buffer = np.zeros(self._n_fft // 2, np.float32)  # the zero padding of the offline STFT
        self._next_stft = 0  # the next MFCC frame to compute; _buffer starts at its first sample
        self._feats = np.zeros((0, config.n_mfcc), np.float32)  # MFCC frames from index _first
        self._sums = np.zeros((0, config.n_mfcc))  # running sums up to each of those frames
        self._squares = np.zeros((0, config.n_mfcc))
        self._first = 0
        self._loudest = -np.inf
        self.num_samples = 0  # pushed so far
        self.next_frame = 0  # the next video frame to emit
        self.ended = False

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Appends samples [n] float32 (16 kHz mono); returns the windows of the video frames now
        complete, [k, window, n_mfcc] float32, frames `next_frame - k .. next_frame - 1`."""
        self.append(samples)
        return self.take(self.available())

    def flush(self) -> np.ndarray:
        """Ends the stream: the windows of every remaining video frame the audio covers (their last
        MFCC frames padded as offline: zeros after the end, indices clamped)."""
        self.end()
        return self.take(self.available())

    def append(self, samples: np.ndarray) -> None:
        """Appends samples [n] (16 kHz mono) without taking any window."""
        if self.ended:
            raise ValueError("the stream has ended")
        x = np.asarray(samples, np.float32).reshape(-1)
        self.num_samples += len(x)
        self._buffer = np.concatenate([self._buffer, x])
        self._compute_stft_frames()

    def end(self) -> None:
        """No more samples: the last MFCC frames are computed (zero padding after the end, as offline)."""
        if not self.ended:
            self._buffer = np.concatenate([self._buffer, np.zeros(self._n_fft // 2, np.float32)])
            self._compute_stft_frames()
            self.ended = True

    def available(self) -> int:
        """How many of the next video frames `take` can give: those whose samples have arrived, or once
        the stream has ended, every frame it covers."""
        if self.ended:
            total = audio_lib.num_video_frames(self.num_samples, self.fps, self.config.sample_rate)
            return max(total - self.next_frame, 0)
        ready = 0
        while samples_needed(self.next_frame + ready, self.fps, self.config) <= self.num_samples:
            ready += 1
        return ready

    def take(self, count: int) -> np.ndarray:
        """The windows of the next `count` (at most `available()`) video frames, [count, window, n_mfcc]."""
        if count > self.available():
            raise ValueError(f"{count} windows asked for, {self.available()} complete")
        return self._emit(count, 1 + self.num_samples // self._hop if self.ended else None)

    def _compute_stft_frames(self) -> None:
        n = max(1 + (len(self._buffer) - self._n_fft) // self._hop, 0)
        if n == 0:
            return
        db = audio_lib.mel_db_frames(self._buffer[: (n - 1) * self._hop + self._n_fft], self.config, rowwise=True)
        feats, self._loudest = _floor_and_dct(db, self._loudest, self.config)
        f64 = feats.astype(np.float64)
        # Sequential sums continued from the last frame's (np.cumsum adds in order, as `causal_windows`'s does).
        last_s = self._sums[-1:] if len(self._sums) else np.zeros((1, self.config.n_mfcc))
        last_q = self._squares[-1:] if len(self._squares) else np.zeros((1, self.config.n_mfcc))
        sums = np.cumsum(np.concatenate([last_s, f64]), axis=0)[1:]
        squares = np.cumsum(np.concatenate([last_q, f64 * f64]), axis=0)[1:]
        self._feats = np.concatenate([self._feats, feats])
        self._sums = np.concatenate([self._sums, sums])
        self._squares = np.concatenate([self._squares, squares])
        self._next_stft += n
        self._buffer = self._buffer[n * self._hop:]

    def _emit(self, count: int, num_mfcc: int | None) -> np.ndarray:
        """Windows of the next `count` video frames; `num_mfcc`: the stream's MFCC frames once it has
        ended (indices clamped to it), None while it runs (every index is computed already)."""
        c = self.config
        if count <= 0:
            return np.zeros((0, c.window, c.n_mfcc), np.float32)
        idx = audio_lib.window_indices(count, num_mfcc or 1 << 62, self.fps, c, start_frame=self.next_frame)
        local = idx - self._first
        last = local[:, -1]
        out = _normalise(self._feats[local], self._sums[last], self._squares[last], idx[:, -1] + 1.0)
        self.next_frame += count
        # Keep the MFCC frames from the next window's first one on.
        keep_from = audio_lib.window_indices(1, 1 << 62, self.fps, c, start_frame=self.next_frame)[0, 0]
        drop = int(min(max(keep_from - self._first, 0), len(self._feats) - 1))
        if drop > 0:
            self._feats, self._sums, self._squares = self._feats[drop:], self._sums[drop:], self._squares[drop:]
            self._first += drop
        return out
