"""How fast should the generated head move? A sweep of the STL head gain (`stl.head_gain`) end to end.

    python benchmarks/head_gain.py --checkpoint runs/shipped --config.data.data_dir=runs/demo/tfds
    python benchmarks/head_gain.py --checkpoint runs/demo --gains 1,1.4,1.8 --max_utterances 8

The STL net is trained with a per-frame loss, so where the head's motion cannot be predicted from the
speech it learns the average: a damped head, slower than a person's (BENCHMARKS.md "head branch").
`stl.head_gain` multiplies the predicted head's displacement from the photo's pose at inference
(`thflax.inference.networks.head_scale`; the lips keep their own motion). For each gain this renders
the utterances of --split end to end as `evaluate.py` does (first frame as the reference, dlib on the
output) and prints head speed ratio (generated / real, goal 0.8–1.2), head LMD (points 0–47), LMD, SSIM,
PSNR, lips PSNR and sync r, means over the utterances.

Suggested gain: the largest tried whose head LMD is within --max_cost px of gain 1's and whose speed
ratio is at most 1.2 (more motion than a person's is not the aim). It is chosen on `validation` (the
default; the training speakers' other utterances), never on `test`; store it with
`python export.py --workdir W --out B --head_gain G` or in the config (`--config.stl.head_gain`).
"""

from __future__ import annotations

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from thflax import cli  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags; defined when it runs, not on import (tests import `parse_gains` and `suggest`
    beside scripts that define flags of the same names)."""
    cli.define_config(help_text="Config file the checkpoint must match (default: its saved one).")
    flags.DEFINE_string("checkpoint", None, "Training workdir or export bundle.")
    flags.DEFINE_list("gains", ["1", "1.2", "1.4", "1.6", "1.8", "2"], "Head gains to try (comma-separated, > 0).")
    flags.DEFINE_enum("split", "validation", ["validation", "test"],
                      "Where to measure: validation (choosing a gain) or test (reporting the chosen one).")
    flags.DEFINE_integer("max_utterances", 16, "Utterances of --split to use.", lower_bound=1)
    flags.DEFINE_float("max_cost", 0.1, "Head LMD (px at 256) the suggested gain may add to gain 1's.",
                       lower_bound=0)
    flags.DEFINE_bool("quiet", False, "No progress bar.")
    flags.mark_flags_as_required(["checkpoint"])


#: (header, key of `evaluation.evaluate_utterance`'s result, digits).
COLUMNS = (("head speed ratio", "head_speed_ratio", 2), ("head LMD", "lmd_head", 2), ("LMD", "lmd", 2),
           ("SSIM", "ssim", 3), ("PSNR", "psnr", 2), ("lips PSNR", "psnr_lips", 2), ("sync r", "sync_r", 2))
MAX_SPEED = 1.2


def parse_gains(values: list[str]) -> list[float]:
    """The --gains list as floats, 1 first (the reference); InputError for a bad entry."""
    from thflax.errors import InputError

    gains = []
    for v in values:
        try:
            g = float(v)
        except ValueError:
            raise InputError(f"--gains: {v!r} is not a number") from None
        if not 0 < g <= 3:
            raise InputError(f"--gains: {v} is out of range (0, 3]")
        gains.append(g)
    return sorted(set(gains) | {1.0})


def suggest(rows: dict[float, dict[str, float]], max_cost: float) -> float:
    """The largest gain whose head LMD is within `max_cost` of gain 1's and speed ratio <= `MAX_SPEED`
    (rows: {gain: means}); 1 when none is."""
    base = rows[1.0]["lmd_head"]
    ok = [g for g, r in rows.items() if r["lmd_head"] <= base + max_cost and r["head_speed_ratio"] <= MAX_SPEED]
    return max(ok, default=1.0)


def main(argv) -> int:
    del argv
    import copy

    from input_pipeline import pipeline
    from thflax.inference import networks
    from thflax.measures import evaluation

    gains = parse_gains(FLAGS.gains)
    config = cli.checkpoint_config(FLAGS.checkpoint)
    models = networks.load_models(FLAGS.checkpoint, config)
    saved = float(models.config.stl.get("head_gain", 1.0))
    rows = []
    for g in gains:
        c = copy.deepcopy(models.config)
        c.stl.head_gain = g
        # One compiled cache for all: a program's name holds its scale, and the generator is the same.
        rows.append(evaluation.Row(f"{g:g}", dataclasses.replace(models, config=c)))
    utts = pipeline.utterances(config, FLAGS.split)
    results = evaluation.evaluate(rows, utts, FLAGS.max_utterances, progress=not FLAGS.quiet)
    summary = evaluation.summarize(results)  # means over the utterances, NaNs left out
    means = {g: summary[f"{g:g}"] for g in gains}
    print("| head gain | " + " | ".join(h for h, _, _ in COLUMNS) + " |")
    print("|---:|" + "---:|" * len(COLUMNS))
    for g in gains:
        print(f"| {g:g} | " + " | ".join(f"{means[g][k]:.{d}f}" for _, k, d in COLUMNS) + " |")
    n = summary[f"{gains[0]:g}"]["utterances"]
    print(f"\n{n} {FLAGS.split} utterances; the checkpoint's own head gain: {saved:g}; suggested "
          f"(largest within {FLAGS.max_cost:g} px of gain 1's head LMD, speed ratio <= {MAX_SPEED:g}): "
          f"{suggest(means, FLAGS.max_cost):g}")
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run(main)
