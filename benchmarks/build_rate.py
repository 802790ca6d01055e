"""Data preparation at scale: videos per second per worker, local process pool vs Apache Beam.

Each row builds `--dataset` (e.g. grid/crop256) from `--manual_dir` into a fresh, empty data_dir (so
dlib's landmark cache is empty and every video is decoded, landmarked, cropped, JPEG-encoded and its
MFCCs computed), with N workers: the local pool (`--num_workers N`) or Beam's multi-process FnApiRunner
(`direct_num_workers=N`), the engine behind the README's Dataflow/Flink/Spark command.

    python benchmarks/build_rate.py --dataset grid/crop256 --manual_dir CORPUS --workers 1 2

Needs the `beam` extra for the Beam rows. Figures go to BENCHMARKS.md with the machine, date and command.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_once(dataset: str, manual_dir: str, workers: int, beam: bool) -> dict:
    """Builds into a fresh temporary data_dir in a child process; returns seconds and counts."""
    data_dir = tempfile.mkdtemp(prefix="thflax_build_rate_")
    try:
        cmd = [sys.executable, "-m", "input_pipeline.build", "--dataset", dataset, "--data_dir", data_dir,
               "--manual_dir", manual_dir]
        if beam:
            cmd += ["--beam_pipeline_options",
                    f"runner=FnApiRunner,direct_num_workers={workers},direct_running_mode=multi_processing"]
        else:
            cmd += ["--num_workers", str(workers)]
        t0 = time.perf_counter()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU time of the whole process tree (workers, ffmpeg): workers also use threads and child
        # processes, so on few cores CPU-seconds per video is the per-core figure that projects.
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        if out.returncode:
            raise SystemExit(f"build failed ({' '.join(cmd)}):\n{out.stderr[-2000:]}")
        name, config = dataset.split("/")
        version = next(d for d in os.listdir(os.path.join(data_dir, name, config)) if d[0].isdigit())
        folder = os.path.join(data_dir, name, config, version)
        videos = 0
        for f in os.listdir(folder):
            if f.startswith("build_report_") and f.endswith(".json"):
                rep = json.load(open(os.path.join(folder, f)))
                videos += sum(rep["counts"].values())
        info = json.load(open(os.path.join(folder, "dataset_info.json")))
        kept = sum(sum(map(int, s.get("shardLengths", []))) for s in info["splits"])
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        return {"seconds": seconds, "cpu": cpu, "videos": videos, "kept": kept, "bytes": size}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="grid/crop256")
    p.add_argument("--manual_dir", required=True, help="the corpus: a folder of talking-head videos")
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--modes", nargs="+", default=["local", "beam"], choices=["local", "beam"])
    args = p.parse_args(argv)
    if not os.path.isdir(args.manual_dir):
        print(f"error: no corpus folder {args.manual_dir}", file=sys.stderr)
        return 2
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; {args.dataset} from "
          f"{args.manual_dir}\n")
    print("| preparation | workers | videos | seconds | videos/s | videos/s per worker | CPU-s per video | "
          "videos per CPU-s | dataset MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in args.modes:
        for w in args.workers:
            r = build_once(args.dataset, args.manual_dir, w, mode == "beam")
            label = "local process pool" if mode == "local" else "Beam FnApiRunner (multi-process)"
            print(f"| {label} | {w} | {r['videos']} ({r['kept']} kept) | {r['seconds']:.1f} | "
                  f"{r['videos'] / r['seconds']:.2f} | {r['videos'] / r['seconds'] / w:.2f} | "
                  f"{r['cpu'] / r['videos']:.3f} | {r['videos'] / r['cpu']:.2f} | {r['bytes'] / 2**20:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
