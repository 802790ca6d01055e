"""Generators compared: trains the LTV net with each variant (a preset, optionally with extra loss
weights) for the same steps or the same training time, and prints SSIM/PSNR on the test split (`--split`) next to
two floors (the copied reference frame; for warp generators the reference warped to the true landmarks
alone), PSNR inside the target's lips (where a warp cannot show an opened mouth), the face's
sharpness relative to the truth (variance of the Laplacian), the attention mask's
mean inside / outside the face, and the training time.

    python benchmarks/ltv_quality.py --data_dir DIR [--presets fast paper] [--steps 300]
    python benchmarks/ltv_quality.py --data_dir DIR --dataset synthetic_talking_heads/people_small \
        --presets fast warp warp:l1_weight=10 paper --seconds 240      # equal time, held-out identity
    python benchmarks/ltv_quality.py --workdir runs/demo --eval_batches 8   # a trained model (the demo's)
    python benchmarks/ltv_quality.py --data_dir DIR --dataset synthetic_talking_heads/people_small \
        --presets warp:l1_weight=10 warp:l1_weight=10,mouth_weight=5 --seeds 3   # mean ± std over seeds

A variant is a preset name, optionally followed by `:key=value,...` overrides of config.ltv
(`g.<field>=value` overrides a generator field, e.g. `warp:g.mask_bias=-4,mask_weight=1`). With
--seconds each variant first times 20 steps, then trains as many steps as fit in that budget
(compile excluded). The budget is in CPU seconds of this process (all its threads: XLA's and
tf.data's) by default, so other jobs on the machine do not shift it between variants; `--clock wall`
counts wall seconds instead. With --seeds N each variant is trained N times (config.seed 0 … N-1: the
initialisation and the training stream) and each cell shows mean ± std (ddof=1): a GAN's single run
moves by a few hundredths of SSIM with any float-level change, so one seed cannot rank close variants.
The dataset is prepared in DIR on first use (reused after), outside the timed
training. Uses configs/cpu.py (64x64) so that it runs on a CPU; this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", help="TFDS data_dir (prepared on first use); default: the --workdir's")
    p.add_argument("--workdir", help="evaluate the LTV net trained in this workdir (its saved config and "
                   "dataset) instead of training variants")
    p.add_argument("--presets", nargs="+", default=["fast", "paper"], help="variants: preset[:key=value,...]")
    p.add_argument("--dataset", default="synthetic_talking_heads/small")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seconds", type=float, default=0.0, help="> 0: equal training time instead of equal steps")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="what --seconds counts: CPU seconds of this process (default) or wall seconds")
    p.add_argument("--split", default="test", choices=("test", "validation"), help="held-out split scored (validation: for choosing; test: to report)")
    p.add_argument("--eval_batches", type=int, default=4, help="held-out batches of config.ltv.eval_batch_size")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per variant (mean ± std when > 1)")
    p.add_argument("--config", default="cpu", help="configs/<name>.py to start from (cpu: 64x64; tiny for a smoke run)")
    a = p.parse_args(argv)
    if a.seeds < 1:
        p.error("--seeds must be at least 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    import importlib

    from input_pipeline import pipeline
    from thflax.training import parallel, tasks, trainer
    from thflax.models import ltv

    def config(variant, steps, seed=0):
        preset, _, extra = variant.partition(":")
        c = importlib.import_module(f"configs.{a.config}").get_config()
        c.seed = seed
        c.data.name = a.dataset
        c.data.data_dir = a.data_dir
        c.ltv.generator = preset
        fields = {}
        for kv in filter(None, extra.split(",")):
            k, v = kv.split("=")
            if k.startswith("g."):  # a generator field (thflax.models.ltv.Generator), e.g. g.mask_bias=-4
                fields[k[2:]] = type(getattr(ltv.Generator, k[2:]))(v)
            else:
                c.ltv[k] = type(c.ltv[k])(v)
        if fields:  # registered as a preset of its own: config.ltv.generator holds a preset name
            ltv.GENERATOR_PRESETS[variant] = {**ltv.GENERATOR_PRESETS[preset], **fields}
            c.ltv.generator = variant
        c.ltv.num_steps = steps
        c.train.eval_every = c.train.checkpoint_every = 10**9
        return c

    clock = time.process_time if a.clock == "cpu" else time.time

    def train(c):
        """(task, state, seconds on --clock, wall seconds)."""
        task = tasks.get_task(c, "ltv")
        with tempfile.TemporaryDirectory() as wd:
            t0, w0 = clock(), time.time()
            state = trainer.train_stage(c, wd, task, pipeline.StageData(c, task))
            return task, state, clock() - t0, time.time() - w0

    def evaluate(c, task, state):
        mesh = parallel.make_mesh()
        ev = parallel.data_parallel_eval(task.eval_step, mesh)
        held_out = pipeline.eval_dataset(c, task, num_batches=a.eval_batches, split=a.split)
        batches = [parallel.global_batch(b, mesh) for b in pipeline.as_numpy(held_out)]
        return trainer.evaluate(state, batches, ev)[0]

    def row(name, c, runs, steps, minutes):
        """One table row from the evaluations `runs` (one per seed): values, or mean ± std over seeds."""
        import numpy as np

        def cell(key, digits):
            v = np.array([float(r[key]) for r in runs])
            return f"{v.mean():.{digits}f}" + (f" ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else "")

        sums = runs[0]
        gf = ltv.generator_flops(c.ltv.generator, c.ltv.image_size) / 1e9
        warp = "ssim_warp" in sums
        floor = f"{sums['ssim_warp']:.3f} / {sums['psnr_warp']:.2f} / {sums['sharpness_warp']:.2f}" if warp else "–"
        mouth = (f"{cell('psnr_mouth', 2)} ({sums['psnr_mouth_reference']:.2f} / "
                 f"{sums['psnr_mouth_warp']:.2f})" if warp else
                 f"{cell('psnr_mouth', 2)} ({sums['psnr_mouth_reference']:.2f} / –)")
        return (f"| {name} | {gf:.2f} | {steps} | {minutes} | {cell('ssim', 3)} | {cell('psnr', 2)} "
                f"| {sums['ssim_reference']:.3f} / {sums['psnr_reference']:.2f} | {floor} | {mouth} "
                f"| {cell('sharpness', 2)} | {cell('mask_face', 2)} / {cell('mask_background', 2)} |")

    rows = []
    if a.workdir:
        import jax

        from thflax.inference import params

        gen_vars, c = params.load_params(a.workdir, "ltv")
        if a.data_dir:
            c.data.data_dir = a.data_dir
        a.dataset = c.data.name
        task = tasks.get_task(c, "ltv")
        state = task.init_state(jax.random.PRNGKey(0))
        state = state.replace(params={**state.params, "generator": gen_vars["params"]}, ema_params={})
        state = parallel.replicate(state, parallel.make_mesh())
        rows.append(row(f"{c.ltv.generator} ({a.workdir})", c, [evaluate(c, task, state)], c.ltv.num_steps, "–"))
        print(rows[-1], flush=True)
    else:
        if not a.data_dir:
            p.error("--data_dir is required unless --workdir is given")
        pipeline.get_builder(config(a.presets[0], 1).data)  # prepare the corpus outside the timed training
    if a.seconds > 0 and not a.workdir:
        # The process's first training pays one-time costs (TF graph tracing, imports, allocator warm-up)
        # that would make the first variant's 1-step run longer than its 11-step run minus 10 steps.
        train(config(a.presets[0], 1))
    for variant in ([] if a.workdir else a.presets):
        steps = a.steps
        if a.seconds > 0:  # time 20 steps after the compile (a 1-step run measures the compile alone)
            t1 = train(config(variant, 1))[2]
            t21 = train(config(variant, 21))[2]
            per_step = (t21 - t1) / 20
            if per_step <= 0.01:
                raise SystemExit(f"{variant}: could not time a step ({t1:.1f} s for 1 step, {t21:.1f} s for 21): "
                                 "the machine is too busy for --seconds; use --steps")
            steps = max(1, int(a.seconds / per_step))
            print(f"{variant}: {per_step:.3f} {a.clock} s/step -> {steps} steps", flush=True)
        runs, dt, wall = [], 0.0, 0.0
        for seed in range(a.seeds):
            c = config(variant, steps, seed)
            task, state, t, w = train(c)
            runs.append(evaluate(c, task, state))
            dt, wall = dt + t / a.seeds, wall + w / a.seeds
            if a.seeds > 1:
                print(f"{variant} seed {seed}: SSIM {float(runs[-1]['ssim']):.3f}, PSNR {float(runs[-1]['psnr']):.2f}, "
                      f"mouth PSNR {float(runs[-1]['psnr_mouth']):.2f}", flush=True)
        rows.append(row(variant, c, runs, steps, f"{dt / 60:.1f} / {wall / 60:.1f}"))
        print(rows[-1], flush=True)
    budget = f"{a.seconds:g} {a.clock} s of training each" if a.seconds > 0 else "equal steps"
    if a.seeds > 1:
        budget += f"; mean ± std over {a.seeds} training seeds (train minutes: per seed)"
    print(f"\n{a.dataset}, {a.split} split, {budget}")
    print(f"\n| variant | GFLOP/frame | steps | train min, {a.clock} / wall (incl. compile) | SSIM | PSNR dB | copied ref. SSIM / PSNR "
          "| pure warp SSIM / PSNR / sharpness | mouth PSNR dB (copied / pure warp) | sharpness (out / truth) "
          "| mask face / background |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    from thflax.errors import InputError

    try:
        sys.exit(main())
    except InputError as e:  # a bad --workdir / --data_dir: one line, status 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
