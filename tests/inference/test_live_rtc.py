"""The Live tab's WebRTC server (thflax/inference/live_rtc.py) against an aiortc client in this process:
the client's audio track (speech, paced in real time) comes back as video frames, one per 40 ms of
audio, with a stats message per frame; a photo without a face and a bad offer are one line.

Random tiny networks (no training): this checks the transport, not the picture. The browser's side is
tests/inference/test_live_page.py.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time

import numpy as np
import pytest

pytest.importorskip("aiortc", reason="the app extra's aiortc is not installed")

from thflax.errors import InputError  # noqa: E402

from tests.inference.test_live import _models, photo  # noqa: E402,F401 (photo: a fixture)
from tests.io.test_audio_stream import _speechlike  # noqa: E402


def _audio_track(x: np.ndarray, rate: int = 48000):
    """An aiortc audio track playing x (16 kHz) as 20 ms frames at `rate`, in real time, then ending."""
    import av
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    up = np.repeat(x, rate // 16000)  # 48 kHz by repetition: the server resamples it back
    step = rate // 50

    class Track(MediaStreamTrack):
        kind = "audio"

        def __init__(self):
            super().__init__()
            self.i = 0
            self.t0 = None

        async def recv(self):
            if self.i * step >= len(up):
                self.stop()
                raise MediaStreamError
            if self.t0 is None:
                self.t0 = time.monotonic()
            wait = self.t0 + self.i * 0.02 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            chunk = up[self.i * step:(self.i + 1) * step]
            chunk = np.pad(chunk, (0, step - len(chunk)))
            frame = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16)[None], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, self.i * step, fractions.Fraction(1, rate)
            self.i += 1
            return frame

    return Track()


async def _client(rtc, photo_path: str, x: np.ndarray, listen_s: float) -> tuple[list, list]:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    stats, frames = [], []
    channel = pc.createDataChannel("stats")
    channel.on("message", lambda m: stats.append(json.loads(m)))
    pc.addTrack(_audio_track(x))
    pc.addTransceiver("video", direction="recvonly")

    @pc.on("track")
    def on_track(track):
        async def read():
            while True:
                try:
                    frames.append((await track.recv()).to_ndarray(format="rgb24"))
                except Exception:  # noqa: BLE001 - the track ended
                    return
        asyncio.ensure_future(read())

    await pc.setLocalDescription(await pc.createOffer())
    offer = json.dumps({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
    answer = await asyncio.get_running_loop().run_in_executor(None, rtc.answer, offer, photo_path)
    await pc.setRemoteDescription(RTCSessionDescription(**json.loads(answer)))
    await asyncio.sleep(listen_s)
    await pc.close()
    return stats, frames


@pytest.mark.cli
def test_audio_over_webrtc_comes_back_as_frames_and_stats(photo):  # noqa: F811
    from thflax.inference.live_rtc import LiveRtc

    rtc = LiveRtc(_models("warp_tiny"))
    try:
        x = _speechlike(4.0, seed=8)
        stats, frames = asyncio.run(_client(rtc, photo, x, listen_s=12.0))
    finally:
        rtc.close()
    indices = [s["i"] for s in stats]
    # 4 s of audio: 100 frames, in order; the last few may still be on their way when the client closes.
    assert indices == list(range(len(indices))) and len(indices) >= 90, indices[-5:]
    assert all(abs(s["lookahead_ms"] - 126) < 1e-6 for s in stats)
    timed = [s["compute_ms"] for s in stats if s["compute_ms"] is not None]
    assert len(timed) >= 80 and np.median(timed) < 1000
    assert len(frames) >= 50 and frames[-1].shape == (256, 256, 3)  # the photo's height set by the tab
    assert np.isfinite([s["mouth"] for s in stats]).all() and np.isfinite([s["db"] for s in stats]).all()


def test_no_face_and_a_bad_offer_are_one_line(tmp_path, photo):  # noqa: F811
    import cv2

    from thflax.errors import NoFaceError
    from thflax.inference.live_rtc import LiveRtc

    noise = str(tmp_path / "noise.png")
    cv2.imwrite(noise, np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    offer = asyncio.run(_offer(with_audio=True))
    rtc = LiveRtc(None)  # each case fails before the networks are needed
    try:
        with pytest.raises(InputError, match="could not be read"):
            rtc.answer("not json", photo)
        with pytest.raises(InputError, match="no microphone"):
            rtc.answer(asyncio.run(_offer(with_audio=False)), photo)
        with pytest.raises(NoFaceError, match="no face"):
            rtc.answer(offer, noise)
    finally:
        rtc.close()


async def _offer(with_audio: bool) -> str:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    if with_audio:
        pc.addTrack(_audio_track(np.zeros(1600, np.float32)))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = json.dumps({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
    await pc.close()
    return offer
