"""Output frames of generation and dubbing: the finished frame, and the stream into an mp4 with the audio."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np


class Clock:
    """Seconds spent in each step of `generate` (reported in its summary)."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.times[step] = self.times.get(step, 0.0) + now - self._t
        self._t = now


def finish_frame(frame: np.ndarray, lm: np.ndarray, crop_size: int, landmarks_video: bool,
                 size: int | None) -> np.ndarray:
    """An output frame as every path makes it: the landmark sketch (lm [68, 2], normalised crop
    coordinates in [0, 1]) beside it with `landmarks_video`, resized to height `size` when given."""
    import cv2

    if landmarks_video:
        from thflax.face import plotting

        side = plotting.draw_landmarks(np.full((crop_size, crop_size, 3), 255, np.uint8), lm, (200, 0, 0))
        side = cv2.resize(side, (frame.shape[0], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
        frame = np.concatenate([frame, side], axis=1)
    if size is not None and frame.shape[0] != size:
        w = int(round(frame.shape[1] * size / frame.shape[0] / 2)) * 2
        frame = cv2.resize(frame, (w, size), interpolation=cv2.INTER_AREA)
    return frame


def write_frames(frames: Iterable[np.ndarray], out: str, fps: float, audio: str, total: int, clock,
                 progress: bool | Callable[[int, int], None], desc: str = "generating") -> int:
    """Streams frames [H, W, 3] uint8 into `out` with `audio` muxed in (atomically); `progress` as in
    `generate` (a tqdm bar, nothing, or a function of (written, total)). Returns the count."""
    from thflax.io import video

    report = progress if callable(progress) else None
    bar = None
    if progress and report is None:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="frame", disable=None)  # None: off when not a terminal
    # Made in the with statement: a signal between making it (its temporary file) and entering the
    # block would leave that file behind.
    with video.VideoWriter(out, fps=fps, audio_path=audio) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame)
            if bar is not None:
                bar.update(1)
            if report is not None:
                report(i + 1, total)
            if i == 0:
                clock.mark("first_frame")
        clock.mark("render")
    clock.mark("mux")
    if bar is not None:
        bar.close()
    return writer.num_frames
