"""Start-up time of generate.py: wall time of one short clip (default 4 s of speech) as a subprocess.

    python benchmarks/bench_startup.py                                   # the shipped model, else runs/demo/export, else a tiny model
    python benchmarks/bench_startup.py --checkpoint runs/demo/export     # and its source workdir, if it exists
    python benchmarks/bench_startup.py --checkpoint runs/demo --baseline # a workdir (exported here for the bundle rows)

For each kind of checkpoint (export bundle, training workdir) the same command runs
  cold         with an empty cache folder (THFLAX_CACHE_DIR): compilation, dlib, everything;
  warm         again (median of --repeats): programs, traced functions and the face come from the cache;
  warm, new photo   cache warm but a photo it has not seen (dlib loads and detects);
  no cache     --nocompilation_cache (what every run paid before the caches), with --baseline.
Columns: wall seconds measured here, then the steps generate.py --timings reports: startup (flags,
imports, cache set-up), detect, audio, load (checkpoint), features (MFCC), first_frame (STL and LTV
set-up, tracing/compiling, first batch), render (the other frames: generator, paste, x264), mux
(finishing the mp4 and muxing the audio); other = wall - their sum (interpreter start and exit).
Without --checkpoint: the shipped model (thflax/assets/model); without it and the demo's bundle, a tiny model (configs/tiny.py, 10 steps per
stage) is trained first (minutes). Prints a markdown table; writes nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEMO_EXPORT = os.path.join(ROOT, "runs", "demo", "export")
STEPS = ("startup", "detect", "audio", "load", "features", "first_frame", "render", "mux")
TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs back home along the quiet river "
        "bank before the sun goes down.")


def train_tiny(root: str) -> str:
    """A workdir of configs/tiny.py trained 10 steps per stage on a small synthetic corpus."""
    from thflax.synthetic import corpus

    corpus_dir, workdir = os.path.join(root, "corpus"), os.path.join(root, "tiny_workdir")
    print("training a tiny model (no --checkpoint given and no demo bundle found)...", flush=True)
    corpus.generate_corpus(corpus_dir, num_speakers=2, utterances_per_speaker=6, seed=0, progress=False)
    subprocess.run([sys.executable, "train.py", "--config", "configs/tiny.py", "--workdir", workdir,
                    f"--config.data.data_dir={os.path.join(root, 'tfds')}", f"--config.data.manual_dir={corpus_dir}",
                    "--config.stl.num_steps=10", "--config.ltv.num_steps=10"], cwd=ROOT, check=True)
    return workdir


def checkpoints(args, root: str) -> list[tuple[str, str]]:
    """[(kind, path)]: the export bundle and the training workdir to measure."""
    from thflax.inference import params

    from thflax.inference import shipped_model

    fallback = next((p for p in (shipped_model.SHIPPED_MODEL, DEMO_EXPORT) if params.is_export(p)), None)
    path = args.checkpoint or fallback or train_tiny(root)
    if params.is_export(path):
        bundle = path
        with open(os.path.join(path, params.EXPORT_FILE)) as f:
            source = json.load(f).get("source")
        workdir = args.workdir or (source if source and os.path.isdir(os.path.join(source, "stl")) else None)
    else:
        workdir = path
        bundle = os.path.join(root, "bundle")
        params.export(workdir, bundle)
    found = [("export bundle", bundle)]
    if workdir:
        found.append(("training workdir", workdir))
    return found


def make_inputs(root: str, seconds: float) -> dict[str, str]:
    """The bundled photo, a mirrored copy (other bytes: not in the face cache) and `seconds` of speech."""
    import cv2
    import numpy as np
    import skimage.data
    import soundfile as sf

    from thflax.io import speech

    face = skimage.data.astronaut()
    photo, mirrored = os.path.join(root, "photo.png"), os.path.join(root, "mirrored.png")
    cv2.imwrite(photo, cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    cv2.imwrite(mirrored, cv2.cvtColor(np.ascontiguousarray(face[:, ::-1]), cv2.COLOR_RGB2BGR))
    utt = speech.synthesize(TEXT, rate=160, leading_silence=0.3)
    n = int(round(seconds * utt.sample_rate))
    audio = np.concatenate([utt.audio, np.zeros(max(0, n - len(utt.audio)), np.float32)])[:n]
    wav = os.path.join(root, "speech.wav")
    sf.write(wav, audio, utt.sample_rate)
    return {"photo": photo, "mirrored": mirrored, "wav": wav}


def run_once(checkpoint: str, photo: str, wav: str, out: str, cache: str, *extra: str) -> dict[str, float]:
    """One generate.py subprocess: {"wall": s, step: s, ...} from its --timings line."""
    cmd = [sys.executable, "generate.py", "--checkpoint", checkpoint, "--image", photo, "--audio", wav,
           "--out", out, "--quiet", "--timings", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "THFLAX_CACHE_DIR": cache})
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"generate.py failed ({r.returncode}):\n{r.stderr[-3000:]}")
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("timings:")][-1]
    values = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
    values["wall"] = wall
    return values


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median wall time (its steps stay consistent with its wall time)."""
    return sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="export bundle or training workdir (default: the demo's bundle)")
    p.add_argument("--workdir", help="training workdir for the workdir rows (default: the bundle's source)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the speech clip")
    p.add_argument("--repeats", type=int, default=3, help="warm runs per checkpoint (the median is shown)")
    p.add_argument("--baseline", action="store_true", help="also run without the caches")
    args = p.parse_args(argv)

    root = tempfile.mkdtemp(prefix="thflax-bench-startup-")
    try:
        kinds = checkpoints(args, root)
        inputs = make_inputs(root, args.seconds)
        out = os.path.join(root, "out.mp4")
        rows = []
        for kind, path in kinds:
            cache = os.path.join(root, f"cache-{len(rows)}")
            print(f"{kind}: {path}", flush=True)
            rows.append((kind, "cold (empty cache)", run_once(path, inputs["photo"], inputs["wav"], out, cache)))
            warm = [run_once(path, inputs["photo"], inputs["wav"], out, cache) for _ in range(args.repeats)]
            rows.append((kind, f"warm (median of {len(warm)})", median_run(warm)))
            rows.append((kind, "warm, new photo", run_once(path, inputs["mirrored"], inputs["wav"], out, cache)))
            if args.baseline:
                rows.append((kind, "no cache", run_once(path, inputs["photo"], inputs["wav"], out, cache,
                                                         "--nocompilation_cache")))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    import jax

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    cpu = platform.processor() or platform.machine()
    print(f"\ngenerate.py start-up, {args.seconds:g} s clip, 512x512 photo; {cpu}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} (1 min) at the end; jax {jax.__version__} "
          f"({jax.default_backend()}); {time.strftime('%Y-%m-%d')}\n")
    print("| checkpoint | caches | wall s | " + " | ".join(STEPS) + " | other |")
    print("|---|---|---:|" + "---:|" * (len(STEPS) + 1))
    for kind, case, v in rows:
        other = v["wall"] - sum(v.get(s, 0.0) for s in STEPS)
        cells = " | ".join(f"{v.get(s, 0.0):.2f}" for s in STEPS)
        print(f"| {kind} | {case} | {v['wall']:.2f} | {cells} | {other:.2f} |")


if __name__ == "__main__":
    main()
