"""The web page's Live tab: the browser's microphone drives the chosen photo over WebRTC.

Browser side (`HEAD_SCRIPT`, in the page's <head>): Start asks for the microphone, opens an
RTCPeerConnection with the microphone's audio track, a receive-only video transceiver and a data
channel ("stats"), and hands its offer (candidates gathered, no trickle) to the server through the
Start button's Gradio event; the answer comes back through the event's output and is applied. The
video plays in <video id="live-video">; under it the latency: the server's part for each frame (its
look-ahead, the audio packet, the compute after the packet arrived) plus the browser's video jitter
buffer (`getStats`), and the frame rate the browser presents (requestVideoFrameCallback). Server side:
`thflax.inference.live_rtc.LiveRtc`.

`window.thflaxLive` exposes what the page measured (frames presented, per-frame stats) for the
browser test.
"""

from __future__ import annotations

import html
from typing import Any

HEAD_SCRIPT = r"""
<script>
window.thflaxLive = (() => {
  const L = {pc: null, stream: null, stats: [], presented: [], error: null};
  const el = (id) => document.getElementById(id);
  const show = (text) => { const e = el('live-latency'); if (e) e.textContent = text; };

  function countFrames(video) {
    const tick = (now, meta) => {
      L.presented.push({t: now, n: meta.presentedFrames});
      if (L.pc) video.requestVideoFrameCallback(tick);
    };
    video.requestVideoFrameCallback(tick);
  }

  L.fps = (seconds = 2.0) => {
    const p = L.presented;
    if (p.length < 2) return 0;
    const last = p[p.length - 1];
    let i = p.length - 1;
    while (i > 0 && last.t - p[i - 1].t <= seconds * 1000) i--;
    const first = p[i];
    return last.t > first.t ? (last.n - first.n) * 1000 / (last.t - first.t) : 0;
  };

  async function jitterMs() {
    if (!L.pc) return null;
    let ms = null;
    (await L.pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video' && r.jitterBufferEmittedCount)
        ms = 1000 * r.jitterBufferDelay / r.jitterBufferEmittedCount;
    });
    return ms;
  }

  async function report() {
    if (!L.pc) return;
    const s = L.stats.filter((x) => x.compute_ms !== null).slice(-25);
    if (s.length) {
      const median = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
      const compute = median(s.map((x) => x.compute_ms));
      const packet = median(s.map((x) => x.packet_ms));
      const look = s[s.length - 1].lookahead_ms;
      const jitter = await jitterMs();
      const total = look + packet + compute + (jitter || 0);
      show(`latency ≈ ${total.toFixed(0)} ms: look-ahead ${look.toFixed(0)} + audio packet ${packet.toFixed(0)}`
           + ` + compute ${compute.toFixed(0)}` + (jitter === null ? '' : ` + video buffer ${jitter.toFixed(0)}`)
           + ` (server and this browser; the network's own delay not counted) · ${L.fps().toFixed(1)} frames/s`);
    }
    setTimeout(report, 500);
  }

  L.stop = () => {
    if (L.pc) { L.pc.close(); L.pc = null; }
    if (L.stream) { L.stream.getTracks().forEach((t) => t.stop()); L.stream = null; }
  };

  L.start = async () => {
    L.stop();
    L.stats = []; L.presented = []; L.error = null;
    try {
      L.stream = await navigator.mediaDevices.getUserMedia(
        {audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
    } catch (e) {
      return 'error: no microphone (' + (e.message || e.name) + ')';
    }
    const pc = new RTCPeerConnection();
    L.pc = pc;
    const channel = pc.createDataChannel('stats');
    channel.onmessage = (m) => { L.stats.push(JSON.parse(m.data)); };
    L.stream.getAudioTracks().forEach((t) => pc.addTrack(t, L.stream));
    pc.addTransceiver('video', {direction: 'recvonly'});
    pc.ontrack = (e) => {
      if (e.track.kind !== 'video') return;
      const v = el('live-video');
      v.srcObject = new MediaStream([e.track]);
      v.play().catch(() => {});
      countFrames(v);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') resolve();
      });
      setTimeout(resolve, 3000);  // what has been gathered by then (host candidates come at once)
    });
    return JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type});
  };

  L.accept = async (answer) => {
    if (!L.pc) return;
    if (!answer) { L.stop(); return; }
    try {
      await L.pc.setRemoteDescription(JSON.parse(answer));
      show('connecting...');
      report();
    } catch (e) {
      L.error = String(e);
      L.stop();
    }
  };
  return L;
})();
</script>
"""

#: The Start button's browser part: the microphone and the offer become the event's input.
START_JS = "async (photo, blinks, offer) => [photo, blinks, await window.thflaxLive.start()]"
#: After the server answered: apply the answer (an empty one, after an error, closes the connection).
ACCEPT_JS = "async (answer) => { await window.thflaxLive.accept(answer); return []; }"
STOP_JS = "() => { window.thflaxLive.stop(); return []; }"


def build_tab(gr: Any, rtc: Any, blink_range: tuple[float, float], default_blinks: float,
              one_line) -> None:
    """The Live tab's components and events, inside an open `gr.Tab` (see module docstring).

    `rtc` is a `LiveRtc` (or None when aiortc is missing: the tab then says how to install it);
    `one_line(err, names)` formats an error for the page."""
    from thflax.errors import InputError

    gr.Markdown("Speak: the photo speaks with you, frame by frame, as the sound arrives (WebRTC).")
    with gr.Row():
        with gr.Column():
            photo = gr.Image(label="Photo of a face", type="filepath", sources=["upload", "clipboard"], height=280,
                             elem_id="live-photo")
            blinks = gr.Slider(*blink_range, value=default_blinks, step=1, label="Blinks per minute",
                               elem_id="live-blinks")
            with gr.Row():
                start = gr.Button("Start (microphone)", variant="primary", elem_id="live-start")
                stop = gr.Button("Stop", elem_id="live-stop")
        with gr.Column():
            gr.HTML('<video id="live-video" autoplay playsinline muted style="width:100%;height:360px;'
                    'background:#111;object-fit:contain"></video>'
                    '<div id="live-latency" style="font-family:monospace;font-size:90%"></div>')
            status = gr.Markdown(elem_id="live-status")
    offer = gr.Textbox(visible=False)
    answer = gr.Textbox(visible=False)

    def begin(photo_path, blink_rate, offer_json):
        if rtc is None:
            raise gr.Error("the Live tab needs aiortc: pip install -e '.[app]'", print_exception=False)
        if not photo_path:
            raise gr.Error("upload a photo of a face first", print_exception=False)
        if not offer_json or offer_json.startswith("error:"):
            raise gr.Error(html.escape((offer_json or "error: the browser made no WebRTC offer")[6:].strip()),
                           print_exception=False)
        try:
            reply = rtc.answer(offer_json, photo_path, blink_rate=blink_rate)
        except InputError as e:
            raise gr.Error(html.escape(one_line(e, {photo_path: "the photo"})), print_exception=False) from None
        return reply, "live: speak now"

    start.click(begin, [photo, blinks, offer], [answer, status], js=START_JS, concurrency_limit=None) \
        .then(None, [answer], None, js=ACCEPT_JS)
    stop.click(None, None, None, js=STOP_JS)
