"""The share of a CPU train step lost to its input: the step fed by the real pipeline vs by one fixed batch.

Each stage's data-parallel train step runs `--steps` steps fed as `train.py` feeds it
(`input_pipeline.pipeline` → `parallel.prefetch_to_mesh`), then the same number of steps on one batch
already on the device (no input work at all). share = 1 − fixed / real: the time the pipeline costs
the step, by waiting or by taking the cores the step would use. The two runs alternate `--rounds`
times and the medians are compared, so drift of the machine falls on both.

    python benchmarks/data_wait.py --config configs/demo.py --data_dir runs/demo/tfds

The trainer logs its own upper bound per log interval as `train/data_wait_share` (time blocked on the
next batch / wall time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "demo.py"))
    p.add_argument("--data_dir", required=True)
    p.add_argument("--stages", nargs="+", default=["stl", "ltv"])
    p.add_argument("--steps", type=int, nargs="+", default=[100, 20], help="timed steps per run, per stage")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if not os.path.isdir(args.data_dir):
        print(f"error: no data_dir {args.data_dir}", file=sys.stderr)
        return 2

    import jax

    from input_pipeline import pipeline
    from thflax.configlib import load_config_file
    from thflax.training import parallel
    from thflax.training.tasks import get_task

    cfg = load_config_file(args.config)
    cfg.data.data_dir, cfg.data.prepare = args.data_dir, False
    mesh = parallel.make_mesh()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; "
          f"{jax.device_count()} device(s); config {os.path.relpath(args.config, ROOT)}; {cfg.data.name}\n")
    print("| stage | batch | step, real input (ms) | step, fixed batch (ms) | input's share | "
          "blocked on next batch | rounds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for stage, steps in zip(args.stages, args.steps * len(args.stages)):
        task = get_task(cfg, stage)
        data = pipeline.StageData(cfg, task)
        state = parallel.replicate(task.init_state(jax.random.PRNGKey(0)), mesh)
        step_fn = parallel.data_parallel(task.train_step, mesh)
        key = jax.random.PRNGKey(1)
        batches = parallel.prefetch_to_mesh(data.train(0, num_devices=jax.local_device_count()), mesh,
                                            size=int(cfg.train.device_prefetch))
        fixed = next(batches)
        for _ in range(3):  # compile, and the shuffle buffer's first fill
            state, m = step_fn(state, next(batches), key)
        jax.block_until_ready(m)
        real_t, fixed_t, blocked = [], [], []
        for _ in range(args.rounds):
            wait = 0.0
            t0 = time.perf_counter()
            for _ in range(steps):
                tw = time.perf_counter()
                b = next(batches)
                wait += time.perf_counter() - tw
                state, m = step_fn(state, b, key)
            jax.block_until_ready(m)
            real = time.perf_counter() - t0
            real_t.append(real / steps)
            blocked.append(wait / real)
            t0 = time.perf_counter()
            for _ in range(steps):
                state, m = step_fn(state, fixed, key)
            jax.block_until_ready(m)
            fixed_t.append((time.perf_counter() - t0) / steps)
        r, f = statistics.median(real_t), statistics.median(fixed_t)
        print(f"| {stage.upper()} | {int(cfg[stage].batch_size)} | {1e3 * r:.1f} | {1e3 * f:.1f} | "
              f"{100 * (1 - f / r):.1f} % | {100 * statistics.median(blocked):.2f} % | {args.rounds} × {steps} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
