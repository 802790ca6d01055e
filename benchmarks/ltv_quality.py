"""Quality cost of the fast generator: trains the LTV net with each preset for the same steps on the
synthetic corpus and prints held-out SSIM/PSNR (vs the copied reference frame), the attention mask's
mean inside / outside the face, and the training time.

    python benchmarks/ltv_quality.py --data_dir DIR [--presets fast paper] [--steps 300]

The corpus synthetic_talking_heads/small is prepared in DIR on first use (reused after), outside the
timed training. Uses configs/cpu.py (64x64) so that it runs on a CPU; this is a measurement, not a test.
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
    p.add_argument("--data_dir", required=True)
    p.add_argument("--presets", nargs="+", default=["fast", "paper"])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval_batches", type=int, default=4, help="held-out batches of config.ltv.eval_batch_size")
    p.add_argument("--config", default="cpu", help="configs/<name>.py to start from (cpu: 64x64; tiny for a smoke run)")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    import importlib

    from input_pipeline import pipeline
    from thflax import parallel, tasks, trainer
    from thflax.models import ltv

    def config(preset):
        c = importlib.import_module(f"configs.{a.config}").get_config()
        c.data.data_dir = a.data_dir
        c.ltv.generator = preset
        c.ltv.num_steps = a.steps
        c.train.eval_every = 10**9
        return c

    pipeline.get_builder(config(a.presets[0]).data)  # prepare the corpus outside the timed training
    rows = []
    for preset in a.presets:
        c = config(preset)
        task = tasks.get_task(c, "ltv")
        with tempfile.TemporaryDirectory() as wd:
            t0 = time.time()
            state = trainer.train_stage(c, wd, task, pipeline.StageData(c, task))
            dt = time.time() - t0
        mesh = parallel.make_mesh()
        ev = parallel.data_parallel_eval(task.eval_step, mesh)
        held_out = pipeline.eval_dataset(c, task, num_batches=a.eval_batches)
        batches = [parallel.global_batch(b, mesh) for b in pipeline.as_numpy(held_out)]
        sums, _ = trainer.evaluate(state, batches, ev)
        gf = ltv.generator_flops(preset, 64) / 1e9
        rows.append(f"| {preset} | {gf:.2f} | {a.steps} | {dt / 60:.1f} | {sums['ssim']:.3f} ({sums['ssim_reference']:.3f}) "
                    f"| {sums['psnr']:.2f} ({sums['psnr_reference']:.2f}) | {sums['mask_face']:.2f} / {sums['mask_background']:.2f} |")
        print(rows[-1], flush=True)
    print("\n| preset | GFLOP/frame @64 | steps | train min (incl. compile) | SSIM (copied ref.) | PSNR dB (copied ref.) | mask face / background |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
