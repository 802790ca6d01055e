"""Reproduces the paper's Table 2 ablation on the synthetic corpus: trains the four configs and evaluates.

    python reproduce.py --workdir runs/reproduce        (what `make reproduce` runs)

Rows: Baseline (configs/baseline.py), w/o Splitnet (no_split.py), w/o Attention (no_attention.py),
Full (full.py), plus the floors "Reference frame (copied)" and "Template landmarks (no speech)".
The four rows need only two STL nets (split / not split) and two LTV nets (attention / not): each is
trained once and each row's workdir links the two it uses, e.g. runs/reproduce/full/stl ->
../_stages/stl_split/stl. Every checkpoint is checked against its row's config when loaded.
Writes <workdir>/table2.md, summary.json, per_utterance.json and timing.json.

For GRID: the same with `--data_name grid/crop64 --manual_dir ~/grid` (and the configs' sizes raised
for a GPU), or train the four configs with train.py and run evaluate.py with --config per row.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

ROWS = (("Baseline", "baseline"), ("w/o Splitnet", "no_split"), ("w/o Attention", "no_attention"),
        ("Full", "full"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/reproduce")
    p.add_argument("--data_dir", default=None, help="TFDS data_dir (default: <workdir>/tfds)")
    p.add_argument("--data_name", default=None)
    p.add_argument("--manual_dir", default=None)
    p.add_argument("--max_utterances", type=int, default=None)
    p.add_argument("--steps_scale", type=float, default=1.0, help="multiply every config's step counts")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    from input_pipeline import pipeline
    from thflax import evaluation, generation, trainer

    workdir = os.path.abspath(a.workdir)
    timing: dict[str, float] = {}
    t_all = time.time()
    configs = {}
    for _, mod in ROWS:
        c = importlib.import_module(f"configs.{mod}").get_config()
        c.data.data_dir = a.data_dir or os.path.join(workdir, "tfds")
        if a.data_name:
            c.data.name = a.data_name
        if a.manual_dir:
            c.data.manual_dir = a.manual_dir
        for stage in ("stl", "ltv"):
            c[stage].num_steps = max(1, int(round(c[stage].num_steps * a.steps_scale)))
        configs[mod] = c
    t0 = time.time()
    builder = pipeline.get_builder(configs["full"].data)
    timing["data"] = time.time() - t0
    for c in configs.values():
        c.data.prepare = False

    stage_dirs = {}
    for _, mod in ROWS:
        c = configs[mod]
        for stage, key in (("stl", f"stl_{'split' if c.stl.split else 'nosplit'}"),
                           ("ltv", f"ltv_{'attn' if c.ltv.attention else 'noattn'}")):
            src = os.path.join(workdir, "_stages", key)
            if key not in stage_dirs:
                print(f"== training {key} ({c[stage].num_steps} steps)", flush=True)
                t0 = time.time()
                trainer.train_stage(c, src, trainer.make_task(c, stage), builder=builder)
                timing[key] = time.time() - t0
                stage_dirs[key] = src
            row_dir = os.path.join(workdir, mod)
            os.makedirs(row_dir, exist_ok=True)
            link = os.path.join(row_dir, stage)
            if not os.path.islink(link):
                os.symlink(os.path.relpath(os.path.join(src, stage), row_dir), link)

    print("== evaluating", flush=True)
    t0 = time.time()
    first = generation.load_models(os.path.join(workdir, "full"), configs["full"])
    rows = [evaluation.Row("Reference frame (copied)", kind="reference"),
            evaluation.Row("Template landmarks (no speech)", first, kind="template")]
    for name, mod in ROWS:
        models = first if mod == "full" else generation.load_models(os.path.join(workdir, mod), configs[mod])
        rows.append(evaluation.Row(name, models))
    results = evaluation.evaluate(rows, pipeline.utterances(configs["full"], "test", builder=builder),
                                  a.max_utterances)
    timing["evaluation"] = time.time() - t0
    timing["total"] = time.time() - t_all
    summary = evaluation.summarize(results)
    table = evaluation.markdown_table(summary)
    paths = evaluation.write_results(workdir, results, summary, table)
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
    sys.exit(main())
