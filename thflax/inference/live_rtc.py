"""The web page's Live tab, server side: WebRTC (aiortc) in, a `LiveSession`, WebRTC out.

The browser sends its microphone as a WebRTC audio track (Opus, 48 kHz); each decoded packet (20 ms)
is resampled to 16 kHz mono (PyAV, which aiortc uses) and pushed into a `LiveSession`; the frames it
returns go out as a WebRTC video track, and a data channel ("stats") carries one message per frame:
its index, how long it took after the packet that completed it arrived (`compute_ms`), the session's
look-ahead, the packet's length, and for measuring lip sync the frame's mouth opening (landmarks) and
the loudness of the audio it shows (dB RMS over its 1/fps seconds).

aiortc runs on an asyncio loop in a daemon thread of its own (Gradio's handlers are threads); the
networks run in one worker thread per connection, so the loop keeps receiving while a frame renders.
Signalling is the page's own: the offer arrives through a Gradio event, the answer goes back the same
way (`answer`), so no other endpoint is served. The `app` extra installs aiortc.

aiortc is imported with this module, and this module must be imported before TensorFlow in a process
that has both: aiortc's SRTP library (pylibsrtp) crashes in its init when TensorFlow's BoringSSL symbols
are already loaded (the app imports it first; tests/conftest.py does for the tests).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import json
import logging
import threading
import time
from typing import Any

import aiortc  # noqa: F401 - first: see the module docstring
import numpy as np

from thflax.errors import InputError

_log = logging.getLogger(__name__)

#: Output frame height of the Live tab: the photo with the face pasted back, small enough for a VP8
#: encoder to keep up on a 2-core CPU beside the networks.
FRAME_HEIGHT = 256
#: Frames waiting for the encoder beyond this are dropped (the newest kept): a slow link costs frames,
#: not a growing delay.
MAX_QUEUED_FRAMES = 2


def _frame_track_class():
    from aiortc import MediaStreamTrack

    class FrameTrack(MediaStreamTrack):
        """A video track of the session's frames, sent as they are made."""

        kind = "video"

        def __init__(self, fps: float):
            super().__init__()
            self.fps = fps
            self._queue: asyncio.Queue = asyncio.Queue()

        def put(self, index: int, image: np.ndarray) -> None:
            while self._queue.qsize() >= MAX_QUEUED_FRAMES:
                self._queue.get_nowait()
            self._queue.put_nowait((index, image))

        async def recv(self):
            import av

            index, image = await self._queue.get()
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = int(round(index * 90000 / self.fps))
            frame.time_base = fractions.Fraction(1, 90000)
            return frame

    return FrameTrack


class LiveRtc:
    """Answers WebRTC offers with a talking-head stream of `models` (one `LiveSession` per connection)."""

    def __init__(self, models: Any):
        self.models = models
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="thflax-live-rtc", daemon=True)
        self._thread.start()
        self._connections: set = set()

    def answer(self, offer: str, photo: str, *, blink_rate: float = 15.0, still: bool = False,
               timeout: float = 60.0) -> str:
        """The answer (JSON {"sdp", "type"}) to a browser's offer (the same JSON), after preparing the
        session for the face in `photo` (InputError, one line: no face, a bad photo, a bad offer)."""
        from thflax.inference.live import LiveSession

        from aiortc.sdp import SessionDescription

        try:
            description = json.loads(offer)
            sdp, kind = description["sdp"], description["type"]
            media = SessionDescription.parse(sdp).media
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            raise InputError("the browser's WebRTC offer could not be read") from e
        if kind != "offer" or not any(m.kind == "audio" for m in media):
            raise InputError("the browser's WebRTC offer carries no microphone (no audio track)")
        session = LiveSession.from_photo(self.models, photo, blink_rate=blink_rate, still=still, size=FRAME_HEIGHT)
        session.warmup()  # the first connection compiles here, before any audio waits for it
        future = asyncio.run_coroutine_threadsafe(self._answer(sdp, kind, session), self._loop)
        return future.result(timeout)

    async def _answer(self, sdp: str, kind: str, session) -> str:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection()
        self._connections.add(pc)
        video = _frame_track_class()(session.fps)
        pc.addTrack(video)
        channel: dict[str, Any] = {}
        worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="thflax-live-session")

        @pc.on("datachannel")
        def on_datachannel(ch):
            channel["stats"] = ch

        @pc.on("track")
        def on_track(track):
            if track.kind == "audio":
                asyncio.ensure_future(self._pump(track, session, video, channel, worker))

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                await self._close(pc, worker)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            await pc.setLocalDescription(await pc.createAnswer())  # gathers the candidates (no trickle)
        except Exception as e:  # noqa: BLE001 - aiortc's errors on a malformed or unusable offer
            await self._close(pc, worker)
            raise InputError(f"the browser's WebRTC offer was refused ({' '.join(str(e).split())})") from e
        return json.dumps({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def _pump(self, track, session, video, channel: dict, worker) -> None:
        """Microphone packets -> session -> video frames and stats, until the track ends (then flush)."""
        import av
        from aiortc.mediastreams import MediaStreamError

        from thflax.face.points import mouth_opening

        loop = asyncio.get_running_loop()
        resampler = av.AudioResampler(format="s16", layout="mono", rate=session.sample_rate)
        per_frame = int(round(session.sample_rate / session.fps))
        recent = np.zeros(0, np.float32)  # the latest samples, for each frame's loudness
        recent_start = 0  # stream index of recent[0]

        def send(frames, arrived: float | None, packet_ms: float) -> None:
            for f in frames:
                video.put(f.index, f.image)
                ch = channel.get("stats")
                if ch is None or ch.readyState != "open":
                    continue
                lo = f.index * per_frame - recent_start
                seg = recent[max(lo, 0):max(lo + per_frame, 0)]
                rms = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if len(seg) else 0.0
                ch.send(json.dumps({
                    "i": f.index, "lookahead_ms": session.lookahead_seconds * 1000, "packet_ms": packet_ms,
                    "compute_ms": None if arrived is None else (time.perf_counter() - arrived) * 1000,
                    "mouth": float(mouth_opening(f.landmarks[None])[0]), "db": 20 * np.log10(rms + 1e-9)}))

        try:
            while True:
                try:
                    packet = await track.recv()
                except MediaStreamError:
                    break  # the browser stopped sending (Stop, page closed, microphone gone)
                arrived = time.perf_counter()
                parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(packet)]
                if not parts:
                    continue
                pcm = np.concatenate(parts).astype(np.float32) / 32768.0
                recent = np.concatenate([recent, pcm])
                keep = 2 * session.sample_rate  # two seconds back is more than any frame waits
                if len(recent) > keep:
                    recent_start += len(recent) - keep
                    recent = recent[-keep:]
                frames = await loop.run_in_executor(worker, session.push, pcm)
                send(frames, arrived, 1000.0 * len(pcm) / session.sample_rate)
            send(await loop.run_in_executor(worker, session.flush), None, 0.0)
        except Exception:  # noqa: BLE001 - a broken connection must not take the server down
            _log.exception("live stream failed")

    async def _close(self, pc, worker) -> None:
        if pc in self._connections:
            self._connections.discard(pc)
            await pc.close()
            worker.shutdown(wait=False)

    def close(self) -> None:
        """Closes every connection and stops the loop."""
        async def close_all():
            for pc in list(self._connections):
                await pc.close()
            self._connections.clear()
            # The audio pumps (and aiortc's own tasks) end here rather than being dropped mid-await.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
