"""Reproduces the paper's Table 2 ablation on the synthetic corpus: trains the four configs and evaluates.

    python reproduce.py --workdir runs/reproduce        (what `make reproduce` runs)

Rows: Baseline (configs/baseline.py), w/o Splitnet (no_split.py), w/o Attention (no_attention.py),
Full (full.py), plus the floors "Reference frame (copied)" and "Template landmarks (no speech)" and the
lip-sync ceiling "Real video (ceiling)".
The four rows need only two STL nets (split / not split) and two LTV nets (attention / not): each is
trained once and each row's workdir links the two it uses, e.g. runs/reproduce/full/stl ->
../_stages/stl_split/stl. Every checkpoint is checked against its row's config when loaded.
`--config.x=y` overrides apply to every row's config (e.g. --config.data.name=grid/crop64
--config.data.manual_dir=~/grid for GRID, with the sizes raised for a GPU). Writes
<workdir>/table2.md, summary.json, per_utterance.json and timing.json.

Splits: training-time metrics read `validation` (config.data.eval_split; input_pipeline.pipeline
refuses `test` there), the table is computed on `test` alone with thflax/evaluation.py's protocol
(reference = first frame framed on its own + its unsmoothed landmarks, as generation does).
"""

from __future__ import annotations

import importlib
import json
import os
import time

from absl import flags

from thflax import cli

ROWS = (("Baseline", "baseline"), ("w/o Splitnet", "no_split"), ("w/o Attention", "no_attention"),
        ("Full", "full"))

FLAGS = flags.FLAGS
cli.define_config(os.path.join(os.path.dirname(cli.DEFAULT_CONFIG), "full.py"),
                  "Only its --config.x=y overrides are used: they apply to every row's config.")
flags.DEFINE_string("workdir", "runs/reproduce", "Where the corpus, the four models and the table go.")
flags.DEFINE_integer("max_utterances", None, "Evaluate on the first N held-out utterances only.", lower_bound=1)
flags.DEFINE_float("steps_scale", 1.0, "Multiply every config's step counts.", lower_bound=0.0)


def row_configs(workdir: str) -> dict:
    """Each row's config with the command line's overrides and the shared data folder."""
    configs = {}
    for _, mod in ROWS:
        c = importlib.import_module(f"configs.{mod}").get_config()
        c.data.data_dir = os.path.join(workdir, "tfds")
        cli.apply_overrides(c)
        for stage in ("stl", "ltv"):
            c[stage].num_steps = max(1, int(round(c[stage].num_steps * FLAGS.steps_scale)))
        configs[mod] = c
    return configs


def main(argv) -> int:
    del argv
    from input_pipeline import pipeline
    from thflax import evaluation, inference, tasks, trainer

    workdir = os.path.abspath(FLAGS.workdir)
    timing: dict[str, float] = {}
    t_all = time.time()
    configs = row_configs(workdir)
    t0 = time.time()
    builder = pipeline.get_builder(configs["full"].data)
    timing["data"] = time.time() - t0

    stage_dirs = {}
    for _, mod in ROWS:
        c = configs[mod]
        for stage, key in (("stl", f"stl_{'split' if c.stl.split else 'nosplit'}"),
                           ("ltv", f"ltv_{'attn' if c.ltv.attention else 'noattn'}")):
            src = os.path.join(workdir, "_stages", key)
            if key not in stage_dirs:
                print(f"== training {key} ({c[stage].num_steps} steps)", flush=True)
                t0 = time.time()
                task = tasks.get_task(c, stage)
                trainer.train_stage(c, src, task, pipeline.StageData(c, task, builder))
                timing[key] = time.time() - t0
                stage_dirs[key] = src
            row_dir = os.path.join(workdir, mod)
            os.makedirs(row_dir, exist_ok=True)
            link = os.path.join(row_dir, stage)
            if not os.path.islink(link):
                os.symlink(os.path.relpath(os.path.join(src, stage), row_dir), link)

    print("== evaluating", flush=True)
    t0 = time.time()
    models = [(name, inference.load_models(os.path.join(workdir, mod), configs[mod])) for name, mod in ROWS]
    test = pipeline.utterances(configs["full"], pipeline.TEST_SPLIT, builder=builder)
    summary, table, paths = evaluation.run_table(models, test, workdir, FLAGS.max_utterances,
                                                 template_models=models[-1][1])
    timing["evaluation"] = time.time() - t0
    timing["total"] = time.time() - t_all
    with open(os.path.join(workdir, "timing.json"), "w") as f:
        json.dump(timing, f, indent=1)
    print(table)
    full, others = summary["Full"], [summary[n] for n, m in ROWS if m != "full"]
    best_lmd = all(full["lmd"] <= o["lmd"] for o in others)
    best_ssim = all(full["ssim"] >= o["ssim"] for o in others)
    print(f"\nFull best on LMD: {best_lmd}; best on SSIM: {best_ssim} (the paper's ordering holds if both)")
    print(f"total {timing['total'] / 60:.1f} min; results in {paths['table']}")
    return 0


if __name__ == "__main__":
    cli.run(main)
