"""Video IO: reading frames with OpenCV, writing H.264 mp4 with the audio muxed in (imageio-ffmpeg).

Writers never leave a half-written file: frames go to a temporary file next to the target, which is
renamed into place only after ffmpeg finished successfully.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np

from thflax.errors import ImageError, VideoError


def video_info(path: str) -> tuple[float, int, int, int]:
    """(fps, num_frames, width, height) from the container; raises VideoError if unreadable."""
    import cv2

    if not os.path.isfile(path):
        raise VideoError(f"video file not found: {path}")
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise VideoError(f"cannot open video: {path}")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    return fps, n, w, h


def iter_frames(path: str) -> Iterator[np.ndarray]:
    """Yields RGB uint8 frames [H, W, 3] of a video; raises VideoError if it cannot be opened."""
    import cv2

    if not os.path.isfile(path):
        raise VideoError(f"video file not found: {path}")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"cannot open video: {path}")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def read_video(path: str) -> tuple[np.ndarray, float]:
    """Reads a whole video: (frames [T, H, W, 3] uint8 RGB, fps). Raises VideoError if no frames."""
    fps = video_info(path)[0]
    frames = list(iter_frames(path))
    if not frames:
        raise VideoError(f"video has no decodable frames: {path}")
    if not fps or not np.isfinite(fps) or fps <= 0:
        raise VideoError(f"video reports no frame rate: {path}")
    return np.stack(frames), fps


def read_image(path: str) -> np.ndarray:
    """Reads an image file as RGB uint8 [H, W, 3]; raises ImageError if missing or not an image."""
    import cv2

    if not os.path.isfile(path):
        raise ImageError(f"image file not found: {path}")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"not a readable image: {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class VideoWriter:
    """Streams RGB frames to an H.264 mp4, optionally muxing an audio file in on close.

    Use as a context manager; if the block raises, the partial output is deleted and the target path
    is left untouched.

        with VideoWriter("out.mp4", fps=25, audio_path="speech.wav") as w:
            for frame in frames:      # [H, W, 3] uint8
                w.write(frame)
    """

    def __init__(self, path: str, fps: float = 25.0, audio_path: str | None = None,
                 quality: int = 8):
        self.path = os.path.abspath(path)
        self.fps = fps
        self.audio_path = audio_path
        self.quality = quality
        self._gen = None
        self._size = None
        self.num_frames = 0
        out_dir = os.path.dirname(self.path) or "."
        os.makedirs(out_dir, exist_ok=True)
        fd, self._tmp_video = tempfile.mkstemp(suffix=".mp4", dir=out_dir, prefix=".thflax-")
        os.close(fd)

    def write(self, frame: np.ndarray) -> None:
        import imageio_ffmpeg

        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB frame [H, W, 3], got {frame.shape}")
        if self._gen is None:
            self._size = (frame.shape[1], frame.shape[0])
            self._gen = imageio_ffmpeg.write_frames(
                self._tmp_video, self._size, fps=self.fps, codec="libx264", quality=self.quality,
                pix_fmt_out="yuv420p", macro_block_size=2, ffmpeg_log_level="error")
            self._gen.send(None)
        elif (frame.shape[1], frame.shape[0]) != self._size:
            raise ValueError(f"frame size changed from {self._size} to {frame.shape[1::-1]}")
        self._gen.send(frame)
        self.num_frames += 1

    def close(self) -> None:
        if self._gen is None:
            raise VideoError("no frames were written")
        self._gen.close()
        self._gen = None
        if self.audio_path is None:
            os.replace(self._tmp_video, self.path)
            return
        mux_audio(self._tmp_video, self.audio_path, self.path)
        os.remove(self._tmp_video)

    def abort(self) -> None:
        if self._gen is not None:
            try:
                self._gen.close()
            except Exception:  # noqa: BLE001 - already failing; cleanup must not mask the cause
                pass
            self._gen = None
        if os.path.exists(self._tmp_video):
            os.remove(self._tmp_video)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


def mux_audio(video_path: str, audio_path: str, out_path: str) -> None:
    """Copies the video stream and encodes `audio_path` as AAC into `out_path` (atomically)."""
    import imageio_ffmpeg

    out_dir = os.path.dirname(os.path.abspath(out_path)) or "."
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=out_dir, prefix=".thflax-mux-")
    os.close(fd)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i", video_path,
           "-i", audio_path, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac",
           "-b:a", "128k", "-shortest", tmp]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        os.remove(tmp)
        raise VideoError(f"ffmpeg could not mux {audio_path}: {proc.stderr.decode(errors='replace')[-300:]}")
    os.replace(tmp, out_path)


def write_video(path: str, frames: Iterable[np.ndarray], fps: float = 25.0,
                audio_path: str | None = None) -> int:
    """Writes RGB frames (iterable of [H, W, 3] uint8) to mp4; returns the number of frames."""
    with VideoWriter(path, fps=fps, audio_path=audio_path) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.num_frames


def write_image(path: str, image: np.ndarray) -> None:
    """Writes an RGB uint8 image (PNG/JPEG by extension)."""
    import cv2

    if not cv2.imwrite(path, cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR)):
        raise ImageError(f"could not write image: {path}")
