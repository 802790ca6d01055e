"""The input pipelines alone, per core: can one GPU host's CPUs feed the accelerator's train steps?

MaxText's rule: the host's data loading must outrun the accelerator's step. This times
`input_pipeline.pipeline.train_dataset` alone (no train step) for the LTV and STL tasks on prepared
datasets of several crop sizes, each in a child process pinned to 1, 2, … cores (TensorFlow sizes its
thread pools from the affinity mask), and projects the per-core rate to a 16-core GPU host (the H100
and H200 machines lent here have 16). `--profile` adds where the time goes: records read and parsed
only, then the task's element function (JPEG decoding) without batching and shuffling.

    python benchmarks/loader.py --data_dir /tmp/tfds --datasets grid/crop64 grid/crop128 grid/crop256 \
        --cores 1 2 --profile

Prepare the datasets first from one corpus (here the demo's; any folder of talking-head videos), e.g.
`python -m input_pipeline.build --dataset grid/crop256 --data_dir /tmp/tfds --manual_dir CORPUS`.
Figures go to BENCHMARKS.md with the machine, date and command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The accelerator's measured train-step rates the host must feed (BENCHMARKS.md, one H200, 2026-11-27):
#: LTV "fast" bf16 at 256², batch 64: 49.55 steps/s; STL default config b=32 L=32: 176 steps/s.
GPU_RATES = {"ltv": ("H200 LTV 'fast' 256² bf16 b=64", 49.55 * 64),
             "stl": ("H200 STL default b=32 L=32", 176.0 * 32)}
#: How much faster than the step the loader must be (the issue's margin).
MARGIN = 1.5
HOST_CORES = 16


def child(spec: dict) -> dict:
    """Runs in a process pinned to `spec['cores']` CPUs: examples/s of one task's pipeline."""
    cores = list(range(int(spec["cores"])))
    os.sched_setaffinity(0, cores)  # before TensorFlow starts: its pools are sized from this mask
    sys.path.insert(0, ROOT)
    from input_pipeline import pipeline
    from thflax.training.tasks import get_task
    from thflax.testing import AllFeatures

    tf = pipeline.tf
    tf.config.threading.set_inter_op_parallelism_threads(len(cores))
    tf.config.threading.set_intra_op_parallelism_threads(len(cores))
    from configs import default

    cfg = default.get_config()
    cfg.data.name, cfg.data.data_dir, cfg.data.prepare = spec["dataset"], spec["data_dir"], False
    stage = spec["stage"]
    builder = pipeline.get_builder(cfg.data)
    size = int(builder.builder_config.crop_size)
    cfg.ltv.image_size = size
    cfg[stage].batch_size = int(spec["batch"])
    task = get_task(cfg, stage)
    per_el_frames = int(cfg.stl.clip_len) if stage == "stl" else 1
    if spec.get("all_features"):  # as before stages named their features: every feature parsed
        features = None
        task = AllFeatures(task)
    else:
        features = pipeline._features(task, True, False)
    mode = spec["mode"]
    if mode == "full":
        index, count = spec.get("process", (0, 1))
        ds = pipeline.train_dataset(cfg, task, builder, num_devices=1, autocache=False, process_index=index,
                                    process_count=count)
        unit = int(spec["batch"]) // count  # this host's part of the global batch
    else:
        base = pipeline._read(builder, "train", features, autocache=False).repeat()
        if mode == "elements":  # + the task's element function (JPEG decoding), no shuffling
            seed = tf.constant([0, 0], tf.int64)
            ds = base.map(lambda ex: task.elements(ex, seed, train=True), num_parallel_calls=tf.data.AUTOTUNE)
            ds = ds.unbatch().batch(64)
            unit = 64
        else:  # "read": records read and parsed, JPEGs left encoded; one number per utterance to the host
            ds = base.map(lambda ex: tf.shape(ex["landmarks"])[0]).batch(64)
            unit = 64
        ds = ds.prefetch(tf.data.AUTOTUNE)
    it = iter(ds)
    for _ in range(int(spec["warmup"])):
        next(it)
    n = int(spec["batches"])
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for _ in range(n):
        next(it)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    rate = n * unit / dt  # elements (LTV: frame pairs; STL: clips) per second; "read": utterances per second
    return {"size": size, "rate": rate, "frames": rate * per_el_frames, "cpu_s_per_s": cpu / dt,
            "seconds": dt, "count": n * unit}


def run_child(spec: dict) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode or not lines:
        raise SystemExit(f"child {spec} failed:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", default=None, help="TFDS data_dir holding the prepared datasets")
    p.add_argument("--datasets", nargs="+", default=["grid/crop64", "grid/crop128", "grid/crop256"])
    p.add_argument("--stages", nargs="+", default=["ltv", "stl"], choices=["ltv", "stl"])
    p.add_argument("--cores", nargs="+", type=int, default=[1, 2])
    p.add_argument("--ltv_batch", type=int, default=64, help="the H200 measurement's batch")
    p.add_argument("--stl_batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="also time reading alone and the element function alone")
    p.add_argument("--hosts", type=int, default=1,
                   help="> 1: also time each host's shard (tfds.split_for_jax_process) of a pod of that many hosts, "
                        "on the first --cores count")
    p.add_argument("--all_features", action="store_true",
                   help="parse every feature of a record, as the pipeline did before stages named theirs")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    if not args.data_dir or not os.path.isdir(args.data_dir):
        print(f"error: no data_dir {args.data_dir}", file=sys.stderr)
        return 2

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; batches: LTV "
          f"{args.ltv_batch} pairs, STL {args.stl_batch} clips; {args.batches} batches after {args.warmup}\n")
    print("| pipeline | crop | cores | examples/s | frames/s | frames/s per core | CPU-s per s | "
          f"projected {HOST_CORES}-core host, frames/s | {MARGIN}× the GPU step | met |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for ds_name in args.datasets:
        for stage in args.stages:
            batch = args.ltv_batch if stage == "ltv" else args.stl_batch
            what, gpu = GPU_RATES[stage]
            gpu_frames = gpu * (32 if stage == "stl" else 1)
            for cores in args.cores:
                r = run_child({"dataset": ds_name, "data_dir": args.data_dir, "stage": stage, "batch": batch,
                               "cores": cores, "batches": args.batches, "warmup": args.warmup, "mode": "full",
                               "all_features": args.all_features})
                per_core = r["frames"] / cores
                proj = per_core * HOST_CORES
                need = MARGIN * gpu_frames
                print(f"| {stage.upper()} | {r['size']}² | {cores} | {r['rate']:,.0f} | {r['frames']:,.0f} | "
                      f"{per_core:,.0f} | {r['cpu_s_per_s']:.2f} | {proj:,.0f} | {need:,.0f} | "
                      f"{'yes' if proj >= need else 'no'} |", flush=True)
    print(f"\nGPU steps to feed ({MARGIN}× margin): " + "; ".join(
        f"{w}: {g * (32 if s == 'stl' else 1):,.0f} frames/s" for s, (w, g) in GPU_RATES.items()))
    print("LTV frames = frame pairs (reference + target: two JPEGs decoded per pair); STL frames = clips × 32. "
          f"Projection = frames/s per core × {HOST_CORES} (linear). "
          "TFDS's in-memory cache of small datasets is off (a large corpus never gets it).")
    if args.hosts > 1:
        print(f"\nEach host of a {args.hosts}-host pod reading only its shard ({args.cores[0]} core(s); "
              "global batch as above, so each host makes 1/hosts of it):\n")
        print("| pipeline | crop | host | examples/s | frames/s per core |")
        print("|---|---:|---:|---:|---:|")
        for ds_name in args.datasets:
            for stage in args.stages:
                batch = args.ltv_batch if stage == "ltv" else args.stl_batch
                for host in range(args.hosts):
                    r = run_child({"dataset": ds_name, "data_dir": args.data_dir, "stage": stage, "batch": batch,
                                   "cores": args.cores[0], "batches": args.batches, "warmup": args.warmup,
                                   "mode": "full", "process": [host, args.hosts],
                                   "all_features": args.all_features})
                    print(f"| {stage.upper()} | {r['size']}² | {host} of {args.hosts} | {r['rate']:,.0f} | "
                          f"{r['frames'] / args.cores[0]:,.0f} |", flush=True)
    if args.profile:
        print("\nWhere the time goes, 1 core: records read and parsed (utterances/s), then + the element "
              "function (elements/s, no shuffle), then the whole pipeline (elements/s):\n")
        print("| pipeline | crop | read + parse, utterances/s | + element fn, elements/s | whole pipeline, elements/s |")
        print("|---|---:|---:|---:|---:|")
        for ds_name in args.datasets:
            for stage in args.stages:
                common = {"dataset": ds_name, "data_dir": args.data_dir, "cores": 1, "stage": stage,
                          "batches": args.batches, "warmup": args.warmup, "all_features": args.all_features}
                batch = args.ltv_batch if stage == "ltv" else args.stl_batch
                r = [run_child({**common, "batch": batch, "mode": m}) for m in ("read", "elements", "full")]
                print(f"| {stage.upper()} | {r[0]['size']}² | {r[0]['rate']:,.0f} | {r[1]['rate']:,.0f} | "
                      f"{r[2]['rate']:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
