"""Live generation's ends: where the audio comes from (a PCM pipe, the default input device) and where
the frames go (an MJPEG pipe, MJPEG over HTTP, an mp4 recording), and the loop between them.

    ffmpeg -i talk.mp4 -f s16le -ac 1 -ar 16000 - | python generate.py --live --live_in - ...
    arecord -f S16_LE -c 1 -r 16000 -t raw | python generate.py --live --live_in - ...

Audio: 16 kHz mono signed 16-bit little-endian PCM (`pcm_chunks`), read as it arrives (no fixed block
size: whatever the pipe holds, so a slow consumer catches up instead of falling behind). The default
input device (`microphone_chunks`) through the `sounddevice` package when installed, else ffmpeg's
PulseAudio capture (imageio-ffmpeg's binary); neither available: `NoMicrophoneError`, one line.

Frames: MJPEG, i.e. one JPEG per frame, written to a pipe (`MjpegPipe`: `| ffplay -f mjpeg -`) or
served over HTTP (`MjpegServer`: multipart/x-mixed-replace, which a browser shows as a moving
picture); `LiveRecorder` writes the frames and the audio heard into an mp4 (atomically, on close).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

import numpy as np

from thflax.errors import AudioError, InputError

SAMPLE_RATE = 16000
#: The most bytes taken from the PCM pipe at once (0.5 s): what has arrived is read, up to this.
READ_BYTES = 16000


class NoMicrophoneError(AudioError):
    """No default input device could be opened."""


def pcm_chunks(fd: int, read_bytes: int = READ_BYTES, prefix: bytes = b"") -> Iterator[np.ndarray]:
    """float32 chunks [n] in [-1, 1] of s16le PCM read from the file descriptor `fd` (after the bytes
    `prefix`, read from it already) until it ends.

    Each read returns what the pipe holds (blocking only while it is empty). A last odd byte (half a
    sample) is dropped."""
    rest = prefix
    while True:
        try:
            data = os.read(fd, read_bytes)
        except OSError as e:
            raise AudioError(f"cannot read audio from the input: {e.strerror or e}") from e
        if not data:
            return
        data = rest + data
        whole = len(data) - len(data) % 2
        rest = data[whole:]
        if whole:
            yield np.frombuffer(data[:whole], "<i2").astype(np.float32) / 32768.0


def microphone_chunks(block_seconds: float = 0.02) -> "_Capture":
    """float32 chunks of the default input device at 16 kHz mono, until the device stops (iterate it;
    `close()` releases the device).

    Raises NoMicrophoneError (one line) when no library can open one: `sounddevice` (PortAudio) when
    installed, else ffmpeg's PulseAudio capture (`-f pulse -i default`)."""
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):  # OSError: the package without its PortAudio library
        return _ffmpeg_microphone(block_seconds)
    return _sounddevice_microphone(block_seconds)


def _sounddevice_microphone(block_seconds: float) -> "_Capture":
    import sounddevice as sd

    blocks: queue.Queue = queue.Queue()

    def callback(data, frames, time_info, status):
        blocks.put(np.asarray(data[:, 0], np.float32).copy())

    try:
        stream = sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32",
                                blocksize=int(SAMPLE_RATE * block_seconds), callback=callback)
        stream.start()
    except Exception as e:  # noqa: BLE001 - PortAudio's errors (no device, busy) as one line
        raise NoMicrophoneError(f"no microphone: the default input device cannot be opened ({e})") from e

    def chunks():
        while stream.active:
            try:
                yield blocks.get(timeout=1.0)
            except queue.Empty:
                continue

    return _Capture(chunks(), stream.close)


def _ffmpeg_microphone(block_seconds: float) -> "_Capture":
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-f", "pulse", "-i", "default",
           "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "-"]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        raise NoMicrophoneError(f"no microphone: cannot start ffmpeg to capture it ({e.strerror or e})") from e
    fd = proc.stdout.fileno()
    first = os.read(fd, 2)  # unbuffered: nothing read here may be left in a Python buffer
    if not first:
        proc.wait()
        msg = proc.stderr.read().decode(errors="replace").strip().splitlines()
        raise NoMicrophoneError("no microphone: no default input device could be opened (install the sounddevice "
                                "package, or pipe 16 kHz s16le PCM into --live_in -)"
                                + (f"; ffmpeg: {msg[-1]}" if msg else ""))

    def stop():
        proc.kill()
        proc.wait()

    return _Capture(pcm_chunks(fd, max(int(SAMPLE_RATE * block_seconds) * 2, 2), prefix=first), stop)


class _Capture:
    """Chunks of an open input device; `close` releases the device (also when never iterated)."""

    def __init__(self, chunks: Iterator[np.ndarray], stop: Callable[[], None]):
        self._chunks, self._stop, self._closed = chunks, stop, False

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._chunks

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop()


def encode_jpeg(frame: np.ndarray, quality: int = 85) -> bytes:
    """RGB frame [H, W, 3] uint8 -> JPEG bytes."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class MjpegPipe:
    """Writes each frame as one JPEG to a binary stream (`ffplay -f mjpeg -` reads it). When the reader
    goes away (a broken pipe) it is `closed` and drops the frames: the run decides whether to go on."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.closed = False

    def write(self, jpeg: bytes) -> None:
        if self.closed:
            return
        try:
            self.stream.write(jpeg)
            self.stream.flush()
        except OSError:  # BrokenPipeError, or the reader's end otherwise gone
            self.closed = True

    def close(self) -> None:
        pass


class MjpegServer:
    """Serves the newest frame as MJPEG over HTTP (multipart/x-mixed-replace) at http://host:port/.

    Each client gets every frame made while it is connected, as fast as it reads them (a slow client
    skips frames instead of slowing the session); the server runs in daemon threads.
    """

    BOUNDARY = b"thflaxframe"

    def __init__(self, host: str = "127.0.0.1", port: int = 8090):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._count = 0
        self._closed = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # no access log on the console
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={owner.BOUNDARY.decode()}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seen = 0
                while True:
                    with owner._cond:
                        owner._cond.wait_for(lambda: owner._count > seen or owner._closed)
                        if owner._count == seen:
                            return
                        jpeg, seen = owner._jpeg, owner._count
                    try:
                        self.wfile.write(b"--" + owner.BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                                         + f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise InputError(f"cannot serve the frames on {host}:{port} ({e.strerror or e})") from e
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def write(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg, self._count = jpeg, self._count + 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()


class LiveRecorder:
    """The frames and the audio heard, into an mp4 at `out` (H.264 + AAC), written atomically on `close`;
    `abort` (or an error) leaves no file behind. The audio is kept in a temporary WAV beside `out`."""

    def __init__(self, out: str, fps: float):
        import tempfile

        import soundfile as sf

        from thflax.io import video as video_lib
        from thflax.io import files

        self.out = out
        self._video = video_lib.VideoWriter(out, fps=fps)
        try:
            fd, self._wav_path = tempfile.mkstemp(prefix=".thflax-live-", suffix=".wav",
                                                  dir=os.path.dirname(os.path.abspath(out)))
            os.close(fd)
        except OSError as e:
            self._video.abort()
            raise files.output_error(out, e) from e
        self._wav = sf.SoundFile(self._wav_path, "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16")

    def add_audio(self, samples: np.ndarray) -> None:
        self._wav.write(np.asarray(samples, np.float32))

    def add_frame(self, frame: np.ndarray) -> None:
        self._video.write(frame)

    def close(self) -> int:
        """Muxes and publishes the mp4; returns its frame count."""
        try:
            self._wav.close()
            self._video.audio_path = self._wav_path
            self._video.close()
            return self._video.num_frames
        finally:
            self.abort()

    def abort(self) -> None:
        if not self._wav.closed:
            self._wav.close()
        self._video.abort()
        try:
            os.remove(self._wav_path)
        except OSError:
            pass


@dataclasses.dataclass
class LiveStats:
    """What a live run did: frames, audio, wall time, and each frame's delay after its audio arrived."""

    frames: int = 0
    samples: int = 0
    stopped_by: str | None = None  # why the stream ended early: a signal's name, or the pipe's reader gone
    wall_seconds: float = 0.0
    compute_delays: list = dataclasses.field(default_factory=list)  # seconds from the chunk's arrival to the frame

    def summary(self, lookahead: float) -> str:
        audio_s = self.samples / SAMPLE_RATE
        text = f"live: {self.frames} frames from {audio_s:.2f} s of audio in {self.wall_seconds:.2f} s"
        if self.compute_delays:
            d = np.asarray(self.compute_delays) * 1000
            text += (f"; each frame {np.median(d):.0f} ms (median; max {d.max():.0f}) after the audio it waited for, "
                     f"which ends {lookahead * 1000:.0f} ms past the frame's start")
        return text


def run_live(session, chunks: Iterable[np.ndarray], sinks: list, recorder: LiveRecorder | None = None,
             max_seconds: float | None = None, on_frame: Callable | None = None) -> LiveStats:
    """Pushes every chunk into `session` (a `LiveSession`), sends each frame to every sink (JPEG) and
    the recorder, until the chunks end or `max_seconds` of audio have passed; then flushes.

    Ctrl-C or SIGTERM (`thflax.cli.Interrupted`, a KeyboardInterrupt) ends the stream as its end does,
    the frames made so far flushed, as does the reader of the only output closing its pipe
    (`stats.stopped_by` says which). A microphone is stopped that way, so its recording is kept."""
    stats = LiveStats()
    start = time.perf_counter()
    limit = None if not max_seconds else int(max_seconds * SAMPLE_RATE)

    def send(frames, arrived):
        for f in frames:
            if sinks:
                jpeg = encode_jpeg(f.image)
                for sink in sinks:
                    sink.write(jpeg)
            if recorder is not None:
                recorder.add_frame(f.image)
            if arrived is not None:
                stats.compute_delays.append(time.perf_counter() - arrived)
            if on_frame is not None:
                on_frame(f)
            stats.frames += 1

    try:
        for chunk in chunks:
            arrived = time.perf_counter()
            if limit is not None:
                chunk = chunk[:max(limit - stats.samples, 0)]
            stats.samples += len(chunk)
            if recorder is not None:
                recorder.add_audio(chunk)
            send(session.push(chunk), arrived)
            if limit is not None and stats.samples >= limit:
                break
            if recorder is None and sinks and all(getattr(s, "closed", False) for s in sinks):
                stats.stopped_by = "the frames' reader closed its pipe"
                break
    except KeyboardInterrupt as e:
        import signal

        stats.stopped_by = signal.Signals(getattr(e, "signum", signal.SIGINT)).name
    finally:
        if hasattr(chunks, "close"):  # a microphone or ffmpeg capture stops here
            chunks.close()
    send(session.flush(), None)
    stats.wall_seconds = time.perf_counter() - start
    return stats


def print_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def check_microphone() -> None:
    """Raises NoMicrophoneError now (one line) when the default input device cannot be opened, so a
    run without one fails before the models load; the device is closed again."""
    chunks = microphone_chunks()
    chunks.close()


def live_generate(checkpoint: str | None, image: str, *, live_in: str = "default", live_out: str | None = None,
                  mjpeg: str | None = None, port: int | None = None, host: str = "127.0.0.1",
                  max_seconds: float | None = None, config=None, fps: float = 25.0, still: bool = False,
                  blink_rate: float = 15.0, blink_seed: int = 0, sway: float = 1.0, crop_only: bool = False,
                  landmarks_video: bool = False, size: int | None = None, max_batch: int = 4,
                  face_index: int | None = None, face_box: tuple[int, int, int, int] | None = None) -> dict:
    """`generate.py --live` with `checkpoint` (None: the shipped model): speech from `live_in` ("-": s16le 16 kHz mono PCM on stdin; "default": the
    default input device) animates the face in `image`; frames go to `mjpeg` ("-": stdout, or a file
    or FIFO), to an MJPEG HTTP server on `port`, and/or into the mp4 `live_out`, until the audio ends
    (or `max_seconds`, or Ctrl-C). Returns a summary. Bad input: InputError, one line, before the
    models load where it can be known then (options, photo, face, output path, microphone)."""
    from thflax.inference import caches, networks
    from thflax.inference.live import LiveSession
    from thflax.inference.options import check_frame, check_options
    from thflax.inference.photo import Reference, detect_face
    from thflax.io import video as video_lib

    if live_out is None and mjpeg is None and port is None:
        raise InputError("--live needs somewhere to send the frames: --live_out FILE.mp4, --live_mjpeg - "
                         "and/or --live_port PORT")
    if live_in not in ("-", "default"):
        raise InputError(f"--live_in takes - (16 kHz s16le mono PCM on stdin) or default (the default input "
                         f"device), not {live_in!r}")
    if live_in == "-" and os.isatty(0):
        raise InputError("--live_in - reads 16 kHz s16le mono PCM from stdin, which is a terminal: pipe the audio "
                         "in (e.g. ffmpeg -i talk.wav -f s16le -ac 1 -ar 16000 - | python generate.py ...)")
    if not 0.0 <= sway <= 5.0:
        raise InputError(f"--live_sway {sway:g} is out of range (0..5)")
    if max_seconds is not None and not max_seconds > 0:
        raise InputError(f"--live_seconds must be more than 0, not {max_seconds:g}")
    check_options(fps=fps, size=size, batch=max_batch, face_index=face_index, face_box=face_box,
                  blink_rate=blink_rate, blink_seed=blink_seed)
    if live_out is not None:
        video_lib.check_output(live_out, [image])
    face = detect_face(image, face_index=face_index, face_box=face_box, size=size)
    check_frame(*face[0].shape[:2], size, crop_only, landmarks_video)
    if live_in == "default":
        check_microphone()
    models = networks.load_models(checkpoint, config)
    if caches.root() is not None:
        models = caches.CachingModels.wrap(models)
    session = LiveSession(models, Reference.from_face(*face, models.image_size), fps=fps, still=still,
                          blink_rate=blink_rate, blink_seed=blink_seed, sway=sway, crop_only=crop_only,
                          landmarks_video=landmarks_video, size=size, max_batch=max_batch)
    session.warmup()

    sinks: list = []
    recorder = None
    pipe_file = None
    try:
        if mjpeg is not None:
            if mjpeg == "-":
                # The frames own stdout; anything else printed to it (by us or a library) goes to stderr.
                pipe_file = os.fdopen(os.dup(1), "wb")
                sys.stdout.flush()
                os.dup2(2, 1)
            else:
                try:
                    pipe_file = open(mjpeg, "wb")
                except OSError as e:
                    raise InputError(f"cannot write the frames to {mjpeg}: {e.strerror or e}") from e
            sinks.append(MjpegPipe(pipe_file))
        if port is not None:
            server = MjpegServer(host, port)
            sinks.append(server)
            print_line(f"live: frames at {server.url} (MJPEG)")
        if live_out is not None:
            recorder = LiveRecorder(live_out, fps)
        chunks = pcm_chunks(0) if live_in == "-" else microphone_chunks()
        print_line(f"live: listening ({'stdin' if live_in == '-' else 'the default input device'}); each frame "
                   f"waits for {session.lookahead_seconds * 1000:.0f} ms of audio past its start")
        stats = run_live(session, chunks, sinks, recorder, max_seconds)
        if stats.samples == 0:
            raise AudioError("no audio arrived" + (" on stdin" if live_in == "-" else " from the microphone"))
        if stats.stopped_by:
            print_line(f"live: stopped ({stats.stopped_by})")
        print_line(stats.summary(session.lookahead_seconds))
        written = None
        if recorder is not None:
            rec, recorder = recorder, None
            written = rec.close()
            print_line(f"wrote {os.path.abspath(live_out)} ({written} frames, {written / fps:.2f} s)")
        return {"frames": stats.frames, "seconds": stats.samples / SAMPLE_RATE, "out": live_out,
                "recorded": written}
    finally:
        if recorder is not None:
            recorder.abort()
        for sink in sinks:
            sink.close()
        if pipe_file is not None:
            try:
                pipe_file.close()
            except OSError:
                pass
