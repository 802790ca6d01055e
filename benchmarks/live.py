"""Live generation's latency and sustained frame rate (thflax/inference/live.py), on this machine.

    python benchmarks/live.py                               # demo config, random weights, 30 s of speech
    python benchmarks/live.py --checkpoint runs/demo/export # a trained bundle instead
    python benchmarks/live.py --seconds 60 --chunk_ms 20

The networks: configs/demo.py's STL net and "warp" generator at 128×128, randomly initialised unless
--checkpoint is given (speed does not depend on the weights; the frames are then the warped photo).
Photo: skimage's astronaut (512×512), read at --size (as `generate.py --live --size` reads it). Speech:
eSpeak NG sentences with pauses between them.

Rows:
  sustained   the speech pushed as fast as the session takes it, in --chunk_ms chunks: frames per
              second of wall time (what the machine can sustain), per output: the 128² crop, the
              photo with the crop pasted back (full-resolution warp) at --size, and that plus JPEG
              encoding (what `generate.py --live --live_mjpeg` adds).
  real time   the same speech pushed at its own pace (one chunk every --chunk_ms, as a microphone
              delivers it): sound-to-frame latency of each frame, from the start of the 40 ms it shows
              to the moment it is returned = look-ahead (audio it waits for past its start, 126 ms at
              25 fps) + waiting for the chunk that completes it (up to one chunk) + compute; median, 95th
              percentile and max. "kept up" = the frames came out at the audio's rate (no growing delay).
  per frame   each step's time for one frame: STL step, generator decode (batch 1), paste-back, JPEG.

Prints the table (markdown) with the machine, the load average before and after (the machine is
shared) and the command; writes nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

SENTENCES = ("The quick brown fox jumps over the lazy dog.", "Then it runs back home along the quiet river bank.",
             "Bin blue at F two now.", "Place green by M five again, please.",
             "The sun goes down and the birds fly home.")


def speech(seconds: float) -> np.ndarray:
    """eSpeak NG sentences with 0.3–0.9 s pauses between them, repeated to `seconds`: float32 [N] at 16 kHz."""
    from thflax.io import speech as speech_lib

    rng = np.random.default_rng(0)
    parts, total = [], 0
    while total < seconds * 16000:
        for s in SENTENCES:
            x = speech_lib.synthesize(s).audio
            parts += [x, np.zeros(int(rng.uniform(0.3, 0.9) * 16000), np.float32)]
            total += len(parts[-1]) + len(x)
    return np.concatenate(parts)[: int(seconds * 16000)]


def models_for(checkpoint: str | None):
    import jax

    from thflax.inference import networks
    from thflax.models import build

    if checkpoint:
        return networks.load_models(checkpoint), f"{checkpoint} (trained)"
    from configs import demo

    c = demo.get_config()
    return (networks.Models(c, build.build_stl(c), build.init_stl(c, jax.random.PRNGKey(0)),
                            build.build_generator(c), build.init_generator(c, jax.random.PRNGKey(1))),
            "configs/demo.py, random weights")


def session_for(models, reference, **kw):
    from thflax.inference.live import LiveSession

    s = LiveSession(models, reference, **kw)
    s.warmup()
    return s


def sustained(models, reference, x, chunk: int, jpeg: bool, **kw) -> float:
    """Frames per second of wall time with the audio pushed as fast as the session takes it."""
    from thflax.inference import live_io

    s = session_for(models, reference, **kw)
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(x), chunk):
        for f in s.push(x[i:i + chunk]):
            if jpeg:
                live_io.encode_jpeg(f.image)
            n += 1
    for f in s.flush():
        if jpeg:
            live_io.encode_jpeg(f.image)
        n += 1
    return n / (time.perf_counter() - t0)


def real_time(models, reference, x, chunk: int, **kw) -> dict:
    """Pushes one chunk per chunk duration; each frame's latency from its start's sound to its return."""
    from thflax.inference import live_io

    s = session_for(models, reference, **kw)
    sr, fps = 16000, s.fps
    latencies, behind = [], []
    t0 = time.perf_counter()
    for i in range(0, len(x), chunk):
        end = min(i + chunk, len(x))
        due = t0 + end / sr  # when a microphone would have delivered this chunk
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        behind.append(max(time.perf_counter() - due, 0.0))
        for f in s.push(x[i:end]):
            live_io.encode_jpeg(f.image)
            latencies.append(time.perf_counter() - (t0 + f.index / fps))
    lat = np.asarray(latencies) * 1000
    half = len(lat) // 2
    return {"median": float(np.median(lat)), "p95": float(np.percentile(lat, 95)), "max": float(lat.max()),
            # Kept up: the second half's latencies are no larger than the first half's (no backlog growing).
            "kept_up": bool(np.median(lat[half:]) < np.median(lat[:half]) + 20 and max(behind) < 0.5),
            "lookahead": s.lookahead_seconds * 1000, "frames": len(lat)}


def per_frame(models, reference, **kw) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    from thflax.inference import live_io
    from thflax.inference.generation import compose_frame

    s = session_for(models, reference, **kw)
    c = s.mfcc_config
    w = jnp.asarray(np.random.default_rng(0).normal(size=(1, 1, c.window, c.n_mfcc)).astype(np.float32))
    _, carry = s._stl(models.stl_variables, w, s._template, None)
    lm = np.asarray(reference.template, np.float32)[None]

    def median_ms(fn, repeats=30):
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1000 * statistics.median(times)

    imgs, masks = (np.asarray(a) for a in s._decode(models.generator_variables, s._features, lm))
    frame = compose_frame(models, reference, imgs[0], lm[0], masks[0], crop_only=False, landmarks_video=False,
                          size=kw.get("size"))
    return {
        "STL step": median_ms(lambda: jax.block_until_ready(s._stl(models.stl_variables, w, s._template, carry))),
        "generator decode (batch 1)": median_ms(
            lambda: jax.block_until_ready(s._decode(models.generator_variables, s._features, lm))),
        "paste-back (full-resolution warp)": median_ms(lambda: compose_frame(
            models, reference, imgs[0], lm[0], masks[0], crop_only=False, landmarks_video=False, size=kw.get("size"))),
        "JPEG": median_ms(lambda: live_io.encode_jpeg(frame)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="a trained workdir or export bundle (default: random demo)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of speech per row")
    p.add_argument("--chunk_ms", type=float, default=20.0, help="audio chunk pushed at a time")
    p.add_argument("--size", type=int, default=256, help="output height of the pasted photo rows")
    args = p.parse_args()

    import tempfile

    import cv2
    import jax
    import skimage.data

    from thflax.inference.photo import Reference, detect_face

    load_before = os.getloadavg()
    models, what = models_for(args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:  # the photo read as generate.py --live --size reads it
        path = os.path.join(tmp, "astronaut.png")
        cv2.imwrite(path, cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
        reference = Reference.from_face(*detect_face(path, size=args.size), models.image_size)
    x = speech(args.seconds)
    chunk = int(round(args.chunk_ms * 16))
    rows = []
    for name, kw, jpeg in (("128² crop", dict(crop_only=True), False),
                           (f"photo pasted back, height {args.size}", dict(size=args.size), False),
                           (f"photo pasted back, height {args.size}, + JPEG", dict(size=args.size), True)):
        rows.append((f"sustained: {name}", f"{sustained(models, reference, x, chunk, jpeg, **kw):.1f} frames/s"))
    for name, kw in (("128² crop + JPEG", dict(crop_only=True)),
                     (f"photo pasted back, height {args.size}, + JPEG", dict(size=args.size))):
        r = real_time(models, reference, x, chunk, **kw)
        rows.append((f"real time, {args.chunk_ms:g} ms chunks: {name}",
                     f"latency median {r['median']:.0f} ms, p95 {r['p95']:.0f}, max {r['max']:.0f} "
                     f"(look-ahead {r['lookahead']:.0f} of it); {'kept up' if r['kept_up'] else 'fell behind'}"))
    for step, ms in per_frame(models, reference, size=args.size).items():
        rows.append((f"per frame: {step}", f"{ms:.2f} ms"))
    load_after = os.getloadavg()

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__} on {jax.default_backend()}; load average before {load_before[0]:.2f}, "
          f"after {load_after[0]:.2f}")
    print(f"model: {what}; {args.seconds:g} s of eSpeak NG speech; photo 512×512 (astronaut) read at {args.size}")
    print(f"command: python benchmarks/live.py {' '.join(sys.argv[1:])}\n")
    print("| measure | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
