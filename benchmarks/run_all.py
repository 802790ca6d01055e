"""thflax benchmark suite: prints one markdown table and appends it to BENCHMARKS.md.

    python benchmarks/run_all.py                         # everything this machine can run
    python benchmarks/run_all.py --sections model,generator
    python benchmarks/run_all.py --no-append             # print only

Sections (each row: what, config, value, unit, notes):
  model      STL and LTV train steps/s (+ examples or frames/s) from in-memory random batches, at the
             LTV resolutions 128 and 256, on all local devices; compile time separately. On a GPU also
             achieved TFLOP/s (XLA cost analysis of the step x steps/s) and MFU against the card's
             measured bf16 matmul rate, with --config.half_precision (bf16).
  generator  LTV generator frames/s at 128 and 256, batch 1 and batched, full forward and cached
             reference (benchmarks/bench_generator.py), with GFLOPs/frame.
  scaling    STL steps/s on 1, 2, 4, 8 fake CPU devices (overhead sanity check, not speed).
  generation end-to-end audio -> mp4 frames/s at 128 (model load excluded, JIT compile reported
             separately) and peak RSS for 10 s vs 10 min of speech (randomly initialised models: the
             speed does not depend on the weights). Needs librosa/dlib/cv2.
  data       dlib landmarking frames/s on one core at 256x256 with tracking; tf.data examples/s of
             the STL and LTV pipelines; pipeline rate / train-step rate (target >= 10). Needs TF.

model, generator and scaling need only jax, flax, optax and numpy (accelerator hosts may lack
TensorFlow, librosa and dlib); sections whose imports fail are skipped with a note.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

ROWS: list[tuple[str, str, str, str, str]] = []


def row(what: str, config: str, value, unit: str, notes: str = "") -> None:
    v = f"{value:.3g}" if isinstance(value, float) else str(value)
    ROWS.append((what, config, v, unit, notes))
    print(f"  {what:<38} {config:<26} {v:>10} {unit:<10} {notes}", flush=True)


def _median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    import jax

    for _ in range(warmup):
        jax.block_until_ready(fn())
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def matmul_peak_tflops() -> float:
    """Measured bf16 matmul rate of device 0 (TFLOP/s), the MFU denominator."""
    import jax
    import jax.numpy as jnp

    n = 8192
    a = jnp.ones((n, n), jnp.bfloat16)
    f = jax.jit(lambda x, y: x @ y)
    t = _median_time(lambda: f(a, a), repeats=10, warmup=2)
    return 2 * n**3 / t / 1e12


def train_rate(cfg, stage: str, batch: dict, steps: int = 10) -> tuple[float, float, float]:
    """(steps/s, compile seconds, FLOPs per step) of one stage's data-parallel train step (FLOPs: the
    device's count, NaN where it gives none)."""
    from benchmarks.train_steps import compile_train, run_steps

    compiled, state, gb, key, compile_s, flops = compile_train(cfg, stage, batch, cpu_when_missing=False)
    return run_steps(compiled, state, gb, key, steps)[0], compile_s, flops


def section_model(args) -> None:
    import jax

    from configs import cpu, default
    from thflax.testing import random_ltv_batch, random_stl_batch

    on_gpu = jax.default_backend() == "gpu"
    peak = matmul_peak_tflops() if on_gpu else None
    if peak:
        row("bf16 matmul peak (8192^2)", jax.devices()[0].device_kind, peak, "TFLOP/s", "MFU denominator")
    n_dev = jax.local_device_count()
    for name, mk in (("cpu", cpu.get_config), ("default", default.get_config)):
        cfg = mk()
        b = max(cfg.stl.batch_size, n_dev) // n_dev * n_dev
        sps, comp, fl = train_rate(cfg, "stl", random_stl_batch(cfg, b, landmark_noise=0.01), steps=args.steps)
        row("STL train", f"{name} b={b} L={cfg.stl.clip_len}", sps, "steps/s",
            f"{sps * b:.0f} clips/s, {sps * b * cfg.stl.clip_len:.0f} frames/s; compile {comp:.1f} s")
    for size in args.sizes:
        for hp in ([False, True] if on_gpu else [False]):
            cfg = default.get_config()
            cfg.ltv.image_size = size
            cfg.half_precision = hp
            b = args.ltv_batch // n_dev * n_dev or n_dev
            sps, comp, fl = train_rate(cfg, "ltv", random_ltv_batch(cfg, b), steps=args.steps)
            notes = f"{sps * b:.1f} frames/s; compile {comp:.1f} s; {fl / b / 1e9:.1f} GFLOP/frame"
            if peak:
                achieved = fl * sps / 1e12
                notes += f"; {achieved:.1f} TFLOP/s = {100 * achieved / peak:.0f}% MFU"
            row("LTV train (G+D step)", f"fast {size}px b={b}{' bf16' if hp else ''}", sps, "steps/s", notes)


def section_generator(args) -> None:
    import jax.numpy as jnp

    from benchmarks import bench_generator as bg

    for spec in args.generators:
        name, cfg = bg.parse_config(spec)
        for size in args.sizes:
            for batch in args.gen_batches:
                r = bg.bench_one(cfg, size, batch, jnp.float32, repeats=5)
                row("LTV generator forward", f"{name} {size}px b={batch}", r["fps_full"], "frames/s",
                    f"cached reference, sketch+decode {r['fps_sk_dec']:.0f} fps; "
                    f"{r['gflops_full']:.2f} GFLOP/frame")


SCALING_SCRIPT = """
import sys, time, jax, numpy as np
sys.path.insert(0, %r)
from configs import cpu
from benchmarks.run_all import train_rate
from thflax.testing import random_stl_batch
cfg = cpu.get_config()
n = jax.device_count()
sps, comp, _ = train_rate(cfg, "stl", random_stl_batch(cfg, 16, landmark_noise=0.01), steps=10)
print("RESULT", n, sps, comp)
"""


def section_scaling(args) -> None:
    for n in (1, 2, 4, 8):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        out = subprocess.run([sys.executable, "-c", SCALING_SCRIPT % ROOT], env=env, capture_output=True,
                             text=True, timeout=900)
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
        if not line:
            row("STL train, fake CPU devices", f"{n} devices", "failed", "", out.stderr[-200:])
            continue
        _, nd, sps, comp = line[0].split()
        row("STL train, fake CPU devices", f"cpu b=16 on {nd} devices", float(sps), "steps/s",
            f"same global batch; compile {float(comp):.1f} s")


GEN_SCRIPT = """
import json, os, resource, sys, time
sys.path.insert(0, %(root)r)
import numpy as np, soundfile as sf, jax, cv2, skimage.data
from configs import default
from thflax.inference import generation, networks
from thflax.models import build
cfg = default.get_config()
cfg.ltv.image_size = %(size)d
models = networks.Models(cfg, build.build_stl(cfg), build.init_stl(cfg, jax.random.PRNGKey(0)),
                          build.build_generator(cfg), build.init_generator(cfg, jax.random.PRNGKey(1)))
tmp = %(tmp)r
photo = os.path.join(tmp, "astronaut.png")
cv2.imwrite(photo, cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
rng = np.random.default_rng(0)
def speech(seconds):
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.normal(size=t.size)
    p = os.path.join(tmp, f"speech_{seconds}.wav"); sf.write(p, x.astype(np.float32), 16000); return p
warm = speech(2.0)
t0 = time.time(); generation.generate("-", photo, warm, os.path.join(tmp, "warm.mp4"), models=models,
                                      progress=False, crop_only=%(crop)r); compile_s = time.time() - t0
wav = speech(%(seconds)f)
t0 = time.time()
out = generation.generate("-", photo, wav, os.path.join(tmp, "out.mp4"), models=models, progress=False,
                          crop_only=%(crop)r)
dt = time.time() - t0
print("RESULT", json.dumps({"frames": out["frames"], "seconds": dt, "first_call_s": compile_s,
      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _gen_run(size: int, seconds: float, crop: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        code = GEN_SCRIPT % {"root": ROOT, "size": size, "tmp": tmp, "seconds": seconds, "crop": crop}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
        if not line:
            raise RuntimeError(out.stderr[-800:])
        return json.loads(line[0].split(" ", 1)[1])


def section_generation(args) -> None:
    for size in (128,):
        r = _gen_run(size, 10.0, crop=False)
        row("generation end-to-end (audio->mp4)", f"fast {size}px, 10 s speech", r["frames"] / r["seconds"],
            "frames/s", f"{r['seconds']:.1f} s for a 10 s clip (real time if < 10); first call incl. "
            f"JIT {r['first_call_s']:.1f} s; full 512x512 photo")
    if args.long_audio:
        short = _gen_run(128, 10.0, crop=True)
        long = _gen_run(128, 600.0, crop=True)
        row("generation peak RSS", "10 s speech", short["maxrss_mb"], "MiB", "crop output")
        row("generation peak RSS", "10 min speech", long["maxrss_mb"], "MiB",
            f"{long['frames']} frames in {long['seconds']:.0f} s ({long['frames'] / long['seconds']:.0f} fps)")


def section_data(args) -> None:
    import jax

    import skimage.data

    from configs import cpu
    from input_pipeline import pipeline
    from thflax.face import crop, landmarks
    from thflax.training.tasks import get_task
    from thflax.testing import random_ltv_batch, random_stl_batch

    # landmarking: 256x256 frames of the real photo panning/zooming, tracked on one core.
    img = skimage.data.astronaut()
    frames = [crop.crop(img, crop.CropBox(110 + 12 * np.sin(t / 9), 10 + 6 * np.cos(t / 7),
                                          240 * (1 + 0.05 * np.sin(t / 13))), 256) for t in range(250)]
    lm = landmarks.FaceLandmarker()
    stats = landmarks.TrackStats()
    t0 = time.perf_counter()
    lm.track(frames, stats)
    dt = time.perf_counter() - t0
    row("dlib landmarking with tracking", "256x256, 1 core", len(frames) / dt, "frames/s",
        f"{stats.detections} detections, {stats.verifications} verifications in {len(frames)} frames")
    if not args.data_dir:
        row("tf.data pipeline", "-", "skipped", "", f"pass --data_dir with a prepared {args.data_name}")
        return
    cfg = cpu.get_config()
    cfg.data.data_dir = args.data_dir
    cfg.data.name = args.data_name
    cfg.data.prepare = False
    builder = pipeline.get_builder(cfg.data)
    for stage in ("stl", "ltv"):
        b = int(cfg[stage].batch_size)
        it = pipeline.as_numpy(pipeline.train_dataset(cfg, get_task(cfg, stage), builder, num_devices=1))
        next(it)
        n = args.data_batches
        t0 = time.perf_counter()
        for _ in range(n):
            next(it)
        rate = n * b / (time.perf_counter() - t0)
        if stage == "stl":
            step_rate, _, _ = train_rate(cfg, "stl", random_stl_batch(cfg, b, landmark_noise=0.01), steps=args.steps)
        else:
            step_rate, _, _ = train_rate(cfg, "ltv", random_ltv_batch(cfg, b), steps=args.steps)
        ratio = rate / (step_rate * b)
        row(f"tf.data {stage.upper()} pipeline", f"{cfg.data.name} b={b}", rate, "examples/s",
            f"train step consumes {step_rate * b:.0f}/s -> ratio {ratio:.1f} (target >= 10)")


def machine() -> str:
    import jax

    try:
        cpu_name = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except Exception:  # noqa: BLE001
        cpu_name = platform.processor()
    dev = jax.devices()[0]
    return (f"{os.cpu_count()} cores ({cpu_name}); devices: {jax.device_count()} x {dev.device_kind} "
            f"({jax.default_backend()})")


def versions() -> str:
    import flax
    import jax
    import optax

    return f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}, numpy {np.__version__}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default="model,generator,scaling,generation,data")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--gen_batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--generators", nargs="+", default=["fast"])
    p.add_argument("--ltv_batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--data_batches", type=int, default=50, help="tf.data batches timed per stage (data section)")
    p.add_argument("--data_dir", default=None, help="TFDS data_dir holding --data_name, prepared (data section)")
    p.add_argument("--data_name", default="synthetic_talking_heads/small",
                   help="TFDS dataset with 64x64 crops for the data section (configs/cpu.py's)")
    p.add_argument("--long_audio", action="store_true", help="also measure peak RSS for 10 min of speech")
    p.add_argument("--no-append", dest="append", action="store_false")
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    header = (f"### {datetime.datetime.now():%Y-%m-%d %H:%M} — {machine()}\n\n{versions()}. Command: "
              f"`python benchmarks/run_all.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    print(header)
    sections = {"model": section_model, "generator": section_generator, "scaling": section_scaling,
                "generation": section_generation, "data": section_data}
    for name in a.sections.split(","):
        print(f"[{name}]", flush=True)
        try:
            sections[name](a)
        except ImportError as e:
            row(name, "-", "skipped", "", f"missing dependency: {e.name}")
        except Exception as e:  # noqa: BLE001 - one failing section must not lose the others
            traceback.print_exc()
            row(name, "-", "failed", "", f"{type(e).__name__}: {str(e)[:120]}")
    table = ["| benchmark | config | value | unit | notes |", "|---|---|---:|---|---|"]
    table += [f"| {w} | {c} | {v} | {u} | {n} |" for w, c, v, u, n in ROWS]
    text = header + "\n" + "\n".join(table) + "\n"
    print("\n" + text)
    if a.append:
        with open(a.out, "a") as f:
            f.write("\n" + text)
        print(f"appended to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
