"""Video IO: reading frames with OpenCV, writing H.264 mp4 with the audio muxed in (imageio-ffmpeg).

Writers never leave a half-written file: frames go to a temporary file next to the target, which is
renamed into place only after ffmpeg finished successfully, with the mode a new file gets under the
umask. Any failure (ffmpeg, a full disk, a read-only file system, an exception in the caller) deletes
the temporary files and raises one line: `OutputError` when the output cannot be written (naming the
cause), `AudioError` only when the audio input itself is unreadable or has no audio track.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np

from thflax.io import files, signals
from thflax.errors import AudioError, ImageError, InputError, OutputError, VideoError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv")

# A folder with less free space than this is taken as full when ffmpeg fails writing into it.
_MIN_FREE_BYTES = 1 << 20

_log = logging.getLogger(__name__)

# The prefixes of OpenCV's log lines ("[ERROR:0@0.009] global loadsave.cpp:577 imread_ ") and of
# ffmpeg's ("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d0c5a1b040] "): a cause shown to the user drops them.
_LIBRARY_PREFIX = re.compile(r"^\[\s*[A-Z]+:\d+@[\d.]+\]\s+global\s+\S+\s+|^\[[^\]]* @ 0x[0-9a-fA-F]+\]\s*")


def _cause(text: str) -> str | None:
    """The last line a library wrote, without its prefix, as the cause of a failure (or None)."""
    lines = [_LIBRARY_PREFIX.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1][:200] if lines else None


@contextlib.contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Keeps what C libraries write straight to the process's stderr (fd 2) inside the block, e.g.
    libpng's "libpng error: Read Error" from OpenCV's decoders, off the user's console; Python's
    logging and warnings cannot reach it. The text is appended to the yielded list, for the caller
    to turn into the one-line cause, and logged at DEBUG level."""
    captured: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (an embedding host): nothing to keep off
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            if text.strip():
                captured.append(text)
                _log.debug("library output: %s", text.strip())


def _unreadable_video(path: str) -> VideoError:
    """One line for a video OpenCV cannot open, with ffmpeg's reason (e.g. "moov atom not found" for
    a truncated mp4) read from its own run: OpenCV's copy of ffmpeg is kept quiet (cli.setup_logging)."""
    reason = None
    try:
        import imageio_ffmpeg

        proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-i",
                               path, "-t", "0", "-f", "null", "-"], capture_output=True, timeout=30, check=False)
        reason = _cause(proc.stderr.decode(errors="replace").split("Error opening input")[0])
    except (OSError, subprocess.SubprocessError, ImportError):
        pass  # no reason to add; the message still names the file
    return VideoError(f"cannot open video: {path}" + (f" ({reason})" if reason else ""))


def video_info(path: str) -> tuple[float, int, int, int]:
    """(fps, num_frames, width, height) from the container; raises VideoError if unreadable."""
    import cv2

    if not os.path.isfile(path):
        raise VideoError(f"video file not found: {path}")
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise _unreadable_video(path)
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
        raise _unreadable_video(path)
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
    """Reads an image file as RGB uint8 [H, W, 3]; raises ImageError (one line, with the cause) if it
    is missing, unreadable or not an image.

    The bytes are read here and decoded with cv2.imdecode, so a file that cannot be read names its
    OSError, and what the decoders write to stderr (libpng's "Read Error" for a truncated PNG) becomes
    the cause instead of a line beside the error.
    """
    import cv2

    if os.path.isdir(path):
        raise ImageError(f"{path} is a folder, not an image")
    if not os.path.isfile(path):
        raise ImageError(f"image file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = np.frombuffer(f.read(), np.uint8)
    except OSError as e:
        raise ImageError(f"cannot read image {path}: {(e.strerror or str(e)).lower()}") from e
    img = None
    with _native_stderr() as chatter:
        if data.size:
            try:
                img = cv2.imdecode(data, cv2.IMREAD_COLOR)
            except cv2.error:
                img = None
    if img is None:
        reason = "the file is empty" if not data.size else _cause("".join(chatter))
        raise ImageError(f"not a readable image: {path}" + (f" ({reason})" if reason else ""))
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def check_output(out: str, inputs: list[str]) -> None:
    """Raises OutputError (one line) unless `out` can take a new video, before any work is done.

    `out` must end in .mp4/.mov/.mkv, not be a directory, not be the same file as any of `inputs`
    (writing would destroy that input; symlinks and hard links count), and its folder must exist
    and be writable.
    """
    if not out.lower().endswith(VIDEO_EXTENSIONS):
        raise OutputError(f"output must be an .mp4, .mov or .mkv file: {out}")
    if os.path.isdir(out):
        raise OutputError(f"output {out} is a directory; give a file name such as "
                          f"{os.path.join(out, 'out.mp4')}")
    real = os.path.realpath(out)
    for src in inputs:
        if not src:
            continue
        same = os.path.realpath(src) == real
        if not same and os.path.exists(out) and os.path.exists(src):
            try:
                same = os.path.samefile(out, src)
            except OSError:
                pass
        if same:
            raise OutputError(f"output {out} is the input {src}; writing it would destroy the input")
    files.check_folder(out)


def _remove(path: str | None) -> None:
    """Deletes a temporary file if it is still there; never raises (cleanup must not hide the cause)."""
    if path:
        try:
            os.remove(path)
        except OSError:
            pass


def _suffix(path: str) -> str:
    """Temporary files keep the output's container type so ffmpeg picks the right muxer."""
    ext = os.path.splitext(path)[1].lower()
    return ext if ext in VIDEO_EXTENSIONS else ".mp4"


def _temp_file(path: str, prefix: str, suffix: str) -> str:
    """An empty temporary file next to `path` (same file system, so the final rename is atomic)."""
    try:
        fd, tmp = tempfile.mkstemp(suffix=suffix, dir=os.path.dirname(os.path.abspath(path)), prefix=prefix)
    except OSError as e:
        raise files.output_error(path, e) from e
    os.close(fd)
    return tmp


def _publish(tmp: str, path: str) -> None:
    """Renames a finished temporary file to `path`, with the mode a new file gets under the umask.

    mkstemp creates files 0600; without the chmod every output would be private to its owner.
    """
    try:
        os.chmod(tmp, 0o666 & ~files.umask())
    except OSError:
        pass  # some file systems (FAT, network shares) refuse chmod; the file itself is fine
    try:
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise files.output_error(path, e) from e


def _disk_full(folder: str, stderr: str = "") -> bool:
    if "No space left on device" in stderr or "Disk quota exceeded" in stderr:
        return True
    try:
        return shutil.disk_usage(folder).free < _MIN_FREE_BYTES
    except OSError:
        return False


def _last_line(stderr: str, default: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else default


def _ffmpeg_output_error(path: str, stderr: str, what: str, returncode: int | None) -> InputError:
    """Why ffmpeg failed writing `path`: the disk (OutputError) or ffmpeg itself (VideoError)."""
    if _disk_full(os.path.dirname(os.path.abspath(path)), stderr):
        return OutputError(f"cannot write {path}: no space left on device")
    if "Read-only file system" in stderr:
        return OutputError(f"cannot write {path}: read-only file system")
    return VideoError(f"ffmpeg failed {what} {path}: {_last_line(stderr, f'exit status {returncode}')}")


class VideoWriter:
    """Streams RGB frames to an H.264 mp4, optionally muxing an audio file in on close.

    Use as a context manager; if the block raises, the partial output is deleted and the target path
    is left untouched.

        with VideoWriter("out.mp4", fps=25, audio_path="speech.wav") as w:
            for frame in frames:      # [H, W, 3] uint8
                w.write(frame)

    Raises:
      OutputError: the output cannot be written (folder, permissions, read-only or full disk).
      VideoError: ffmpeg failed for another reason; AudioError: see `mux_audio`.
    """

    def __init__(self, path: str, fps: float = 25.0, audio_path: str | None = None,
                 quality: int = 8):
        self.name = path
        self.path = os.path.abspath(path)
        self.fps = fps
        self.audio_path = audio_path
        self.quality = quality
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._size = None
        self.num_frames = 0
        if os.path.isdir(self.path):
            raise OutputError(f"cannot write {path}: it is a directory")
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        except OSError as e:
            raise files.output_error(path, e) from e
        self._tmp_video = _temp_file(self.path, ".thflax-", _suffix(path))

    def write(self, frame: np.ndarray) -> None:
        """Appends one RGB frame [H, W, 3] uint8; all frames must have the first frame's size."""
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB frame [H, W, 3], got {frame.shape}")
        if self._proc is None:
            self._start((frame.shape[1], frame.shape[0]))
        elif (frame.shape[1], frame.shape[0]) != self._size:
            raise ValueError(f"frame size changed from {self._size} to {frame.shape[1::-1]}")
        try:
            self._proc.stdin.write(frame.tobytes())
        except OSError as e:  # ffmpeg quit (broken pipe): say why
            raise self._encoder_error() from e
        self.num_frames += 1

    def _start(self, size: tuple[int, int]) -> None:
        """Starts ffmpeg reading raw frames from a pipe (its stderr kept for error messages)."""
        import imageio_ffmpeg

        w, h = size
        fps = Fraction(self.fps).limit_denominator()
        crf = int((1 - self.quality / 10.0) * 51)  # imageio-ffmpeg's quality scale
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p",
               "-crf", str(crf)]
        if w % 2 or h % 2:  # yuv420p needs even sizes
            cmd += ["-vf", f"scale={w + w % 2}:{h + h % 2}"]
        cmd.append(self._tmp_video)
        self._size = size
        self._stderr = tempfile.TemporaryFile()  # anonymous: nothing to clean up
        # Own session: Ctrl-C reaches Python (which aborts and deletes), not ffmpeg mid-file. No preexec_fn
        # (imageio-ffmpeg's write_frames passes os.setpgrp): with one, CPython really forks the
        # multithreaded process, running Python in the child (JAX warns "os.fork() was called ... likely
        # lead to a deadlock"); without, it vforks and execs at once (start_new_session is a plain setsid()).
        # Signals held until the process is recorded: one arriving while Popen returns would leave ffmpeg
        # running unrecorded (abort could not stop it), and on EOF it writes the file abort just deleted.
        try:
            with signals.signals_deferred():
                self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                              stderr=self._stderr, start_new_session=True)
        except OSError as e:
            raise VideoError(f"cannot start ffmpeg ({cmd[0]}): {e.strerror or e}") from e

    def _ffmpeg_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _encoder_error(self) -> InputError:
        """The one-line error for an ffmpeg encoder that stopped early or failed."""
        proc = self._proc
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        return _ffmpeg_output_error(self.name, self._ffmpeg_stderr(), "encoding", rc)

    def close(self) -> None:
        """Finishes encoding, muxes the audio in and moves the result to `path`.

        On any failure the temporary files are deleted and `path` is left as it was.
        """
        try:
            if self._proc is None:
                raise VideoError(f"no frames were written to {self.name}")
            try:
                self._proc.stdin.close()
            except OSError:
                pass  # broken pipe: ffmpeg already quit; its exit status says why
            if self._proc.wait() != 0:
                raise self._encoder_error()
            self._proc = None
            if self.audio_path is None:
                _publish(self._tmp_video, self.path)
            else:
                mux_audio(self._tmp_video, self.audio_path, self.path, self.num_frames / self.fps)
        finally:
            self.abort()

    def abort(self) -> None:
        """Stops ffmpeg and deletes the temporary file; the target path is left untouched."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                proc.kill()
            except OSError:
                pass
            try:
                proc.stdin.close()
            except OSError:
                pass
            proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        _remove(self._tmp_video)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _audio_unreadable(stderr: str, audio_path: str) -> str | None:
    """ffmpeg's reason when its stderr says it could not open `audio_path` as an input, else None."""
    lines = stderr.splitlines()
    if not any(f"Error opening input file {audio_path}" in ln or ln.startswith(f"{audio_path}:")
               for ln in lines):
        return None
    for ln in lines:
        if "Error opening input" in ln and ":" in ln:
            return ln.rsplit(":", 1)[1].strip() or None
    return None


def mux_audio(video_path: str, audio_path: str, out_path: str, duration: float | None = None) -> None:
    """Copies the video stream and encodes `audio_path` as AAC into `out_path` (atomically).

    The output lasts `duration` seconds (default: the video's frames / fps), so every video frame is
    kept and the audio is cut there. Not ffmpeg's `-shortest`: with ffmpeg 9's threaded pipeline it
    sometimes dropped the last video frame, so the same frames gave 59 or 58 frames (seen in CI).

    Raises:
      AudioError: `audio_path` is missing, unreadable (as ffmpeg reports it) or has no audio track.
      OutputError: `out_path` cannot be written (full disk, read-only, folder); VideoError: other
        ffmpeg failures. No temporary file is left behind.
    """
    import imageio_ffmpeg

    if not os.path.isfile(audio_path):
        raise AudioError(f"audio file not found: {audio_path}")
    if duration is None:
        fps, n, _, _ = video_info(video_path)
        duration = n / fps
    tmp = _temp_file(out_path, ".thflax-mux-", _suffix(out_path))
    try:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i", video_path,
               "-i", audio_path, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac",
               "-b:a", "128k", "-t", f"{duration:.6f}", tmp]
        proc = None
        try:
            with signals.signals_deferred():  # as in VideoWriter._start: a started ffmpeg is always recorded
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, err = proc.communicate()
        except BaseException:
            if proc is not None:  # stopped before `finally` deletes tmp: it must not write it again
                proc.kill()
                proc.wait()
            raise
        if proc.returncode != 0:
            stderr = err.decode(errors="replace")
            if _disk_full(os.path.dirname(os.path.abspath(out_path)), stderr):
                raise OutputError(f"cannot write {out_path}: no space left on device")
            from thflax.io.audio import audio_track_missing

            if audio_track_missing(audio_path):
                raise AudioError(f"{audio_path} has no audio track")
            reason = _audio_unreadable(stderr, audio_path)
            if reason is not None:
                raise AudioError(f"cannot read audio from {audio_path}: {reason}")
            raise _ffmpeg_output_error(out_path, stderr, "muxing the audio into", proc.returncode)
        _publish(tmp, out_path)
    finally:
        _remove(tmp)


def write_video(path: str, frames: Iterable[np.ndarray], fps: float = 25.0,
                audio_path: str | None = None) -> int:
    """Writes RGB frames (iterable of [H, W, 3] uint8) to mp4; returns the number of frames."""
    with VideoWriter(path, fps=fps, audio_path=audio_path) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.num_frames


def write_image(path: str, image: np.ndarray) -> None:
    """Writes an RGB uint8 image (PNG/JPEG by extension) atomically, with the umask's file mode.

    Raises:
      ImageError: the extension is not an image format OpenCV writes.
      OutputError: the file cannot be written (folder, permissions, read-only or full disk).
    """
    import cv2

    ext = os.path.splitext(path)[1]
    if os.path.isdir(path):
        raise OutputError(f"cannot write {path}: it is a directory")
    try:
        ok, buf = cv2.imencode(ext, cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise ImageError(f"could not write image {path}: {ext or 'no extension'} is not an image format "
                         "OpenCV writes (use .png or .jpg)")
    tmp = _temp_file(path, ".thflax-", ext)
    try:
        with open(tmp, "wb") as f:
            f.write(buf.tobytes())
        _publish(tmp, path)
    except OSError as e:
        raise files.output_error(path, e) from e
    finally:
        _remove(tmp)
