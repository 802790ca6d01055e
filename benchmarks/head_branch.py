"""Why does the split STL place the head worse than the joint one? STL-only runs over seeds, per variant.

    nice -n 10 python benchmarks/head_branch.py --workdir runs/head_branch --seeds 3 \\
        --variants joint,split,lip_audio,velocity [--steps 1000] [--parallel 3] [--dataset synthetic_talking_heads/small]

Each variant is configs/full.py as the paper has it (`PAPER`) with a few fields changed (`VARIANTS`),
trained with train.py (`--config.stage=stl`) once per seed into <workdir>/<variant>/seed<k> (a run whose
last step is saved is not trained again), all on one prepared dataset (<workdir>/tfds). Then every
model predicts the landmarks of every held-out utterance of the `validation` split (tuning never reads
`test`), whole, from its MFCC windows and frame 0's unsmoothed landmarks as the template (what
evaluation and generation do), and is scored on frames 1… against the stored (smoothed) landmarks,
the STL's training target, in pixels of a 256-px crop:
  head LMD      points 0–47, not centred (where the head is matters), mean distance;
  floor         the same for the template held still (no speech): what "learning nothing" scores;
  jaw, upper    the head LMD split into the jaw line (0–16: it opens with the mouth, i.e. articulation)
                and the rest (17–47: brows, nose, eyes: pose alone);
  mouth LMD     points 48–67, each shape centred;
  speed ratio   mean frame-to-frame speed of points 0–47, predicted over true, per utterance
                (`thflax.measures.evaluation.head_speed`; 1 = as lively as the real head);
  motion ratio  the nose tip's std in % of the inter-ocular distance (`face_measures.head_motion_percent`),
                predicted over true;
  scale for speed 1   the `--head_motion` scale that makes the predicted head as fast as the real one
                (1 / speed ratio), and the head LMD with it: what matching the speed by scaling costs.
Printed and written to <workdir>/head_branch.md: mean ± std over seeds (ddof 1) per variant, and each
variant's difference from `split` paired by seed (same seed: same data order and initial draw).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from thflax import cli  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The paper's split STL: configs/full.py with the head branch as eq. 5 has it (the default's head also
#: reads the lip GRU's output, `stl.head_lip_state`); every variant starts from it.
PAPER: dict[str, object] = {"stl.head_lip_state": "none"}
#: Variants: config fields changed from `PAPER`.
VARIANTS: dict[str, dict[str, object]] = {
    "joint": {"stl.split": False},  # "w/o Splitnet": one branch for all 68 points
    "split": {},
    "head_weight_4": {"stl.head_weight": 4.0},  # the head's share of the loss
    "template_in_gru": {"stl.head_template_in_gru": True},  # where the template enters
    "lip_audio": {"stl.head_audio": "lip"},  # the lip branch's speech encoder, trained by both losses
    "lip_audio_frozen": {"stl.head_audio": "lip_frozen"},  # ... trained by the lips only
    "lip_state": {"stl.head_lip_state": "lip"},  # the head reads the lip GRU's output (articulation over time)
    "lip_state_frozen": {"stl.head_lip_state": "lip_frozen"},  # ... no gradient from the head to the lips: the default
    "head_gru_256": {"stl.gru_features": 256},  # capacity (both branches' GRUs; cpu.py: 128)
    "velocity": {"stl.velocity_weight": 1.0},  # a loss on the head's frame-to-frame motion
    "lip_audio_velocity": {"stl.head_audio": "lip", "stl.velocity_weight": 1.0},
}
#: Columns: (header, key, digits).
COLUMNS = (("head LMD", "lmd_head", 2), ("floor (template)", "lmd_head_template", 2), ("jaw LMD", "lmd_jaw", 2),
           ("upper LMD", "lmd_upper", 2), ("mouth LMD", "lmd_mouth", 2),
           ("speed ratio", "speed_ratio", 2), ("motion ratio", "motion_ratio", 2),
           ("scale for speed 1", "speed_scale", 2), ("head LMD at that scale", "lmd_head_at_speed_1", 2))

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Where the runs, the prepared dataset and the table go.")
flags.DEFINE_integer("seeds", 3, "Training seeds 0..N-1 per variant.", lower_bound=1)
flags.DEFINE_list("variants", ["joint", "split"], f"Which of: {', '.join(VARIANTS)}.")
flags.DEFINE_integer("steps", 1000, "STL training steps.", lower_bound=1)
flags.DEFINE_string("dataset", "synthetic_talking_heads/small", "TFDS name of the corpus.")
flags.DEFINE_string("split", "validation", "Held-out split scored (validation: tuning never reads test).")
flags.DEFINE_bool("train", True, "Train the runs that are missing (else: score what is there).")
flags.DEFINE_integer("parallel", 1, "Training runs at a time (each a train.py process).", lower_bound=1)
flags.mark_flags_as_required(["workdir"])


def _value(v: object) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _done(workdir: str) -> bool:
    return os.path.isdir(os.path.join(workdir, "stl", "checkpoints", str(FLAGS.steps)))


def train_command(variant: str, seed: int, workdir: str, data_dir: str) -> list[str]:
    """train.py's command line for one STL run of `variant`."""
    args = [sys.executable, "train.py", "--config", "configs/full.py", "--workdir", workdir,
            "--config.stage=stl", f"--config.seed={seed}", f"--config.stl.num_steps={FLAGS.steps}",
            f"--config.data.name={FLAGS.dataset}", f"--config.data.data_dir={data_dir}",
            f"--config.train.checkpoint_every={FLAGS.steps}", f"--config.train.eval_every={FLAGS.steps}"]
    return args + [f"--config.{k}={_value(v)}" for k, v in {**PAPER, **VARIANTS[variant]}.items()]


def train_runs(runs: dict[tuple[str, int], str], data_dir: str, parallel: int) -> None:
    """Trains the runs whose last step is not saved, `parallel` train.py processes at a time (the first
    alone when the dataset is not prepared yet: it prepares it)."""
    todo = [(key, wd) for key, wd in runs.items() if not _done(wd)]
    running: list = []

    def wait_one() -> None:
        (v, s), wd, proc, t0, log = running.pop(0)
        if proc.wait() != 0:
            log.seek(0)
            raise RuntimeError(f"training {v} seed {s} failed:\n{log.read()[-3000:]}")
        log.close()
        print(f"trained {v} seed {s} in {(time.time() - t0) / 60:.1f} min", flush=True)

    prepared = os.path.isdir(os.path.join(data_dir, *FLAGS.dataset.split("/")))
    for key, wd in todo:
        os.makedirs(wd, exist_ok=True)
        log = open(os.path.join(wd, "train.log"), "w+")
        proc = subprocess.Popen(train_command(*key, wd, data_dir), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        running.append((key, wd, proc, time.time(), log))
        if not prepared or len(running) >= parallel:
            wait_one()
            prepared = True
    while running:
        wait_one()


def score_run(workdir: str, utterances: list[dict]) -> dict[str, float]:
    """The STL of `workdir` on whole held-out utterances: the module docstring's figures (means over utterances)."""
    import numpy as np

    from thflax.face.points import JAW
    from thflax.inference import networks, params
    from thflax.measures import evaluation, face_measures, metrics
    from thflax.models import build

    variables, config = params.load_params(workdir, "stl")
    models = networks.Models(config, build.build_stl(config), variables, None, None)
    rows, tracks = [], []
    for ex in utterances:
        template = ex["landmarks_raw"][0]
        pred = np.concatenate(list(networks.predict_landmarks(models, ex["mfcc"], template, chunk=128)))[1:] * 256
        true = np.asarray(ex["landmarks"], np.float64)[1:] * 256
        still = np.broadcast_to(template * 256, true.shape)
        tracks.append((pred, true, still))
        rows.append({
            "lmd_head": float(metrics.lmd(pred, true, metrics.NON_MOUTH, center=False)),
            "lmd_head_template": float(metrics.lmd(still, true, metrics.NON_MOUTH, center=False)),
            "lmd_jaw": float(metrics.lmd(pred, true, JAW, center=False)),
            "lmd_upper": float(metrics.lmd(pred, true, tuple(range(17, 48)), center=False)),
            "lmd_mouth": float(metrics.lmd(pred, true)),
            "speed_ratio": evaluation.head_speed(pred) / evaluation.head_speed(true),
            "motion_ratio": face_measures.head_motion_percent(pred) / face_measures.head_motion_percent(true),
        })
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    # --head_motion's scale that makes the head as fast as the real one (speed is linear in it), and what
    # it costs in head LMD (points 0–47 move exactly by the scale: geometry.scale_head_motion).
    scale = 1.0 / out["speed_ratio"]
    out["speed_scale"] = scale
    out["lmd_head_at_speed_1"] = float(np.mean([
        metrics.lmd(still + scale * (pred - still), true, metrics.NON_MOUTH, center=False)
        for pred, true, still in tracks]))
    return out


def _mean_std(values: list[float]) -> str:
    import numpy as np

    v = np.asarray(values, np.float64)
    return f"{v.mean():.2f}" + (f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else "")


def table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    """Mean ± std over seeds per variant, then the paired differences from `split`."""
    head = "| variant | " + " | ".join(h for h, _, _ in COLUMNS) + " | seeds |"
    rule = "|---|" + "---:|" * (len(COLUMNS) + 1)
    lines = [head, rule]
    for name, by_seed in results.items():
        cells = [_mean_std([r[k] for r in by_seed.values()]) for _, k, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(by_seed)} |")
    base = results.get("split")
    if base:
        lines += ["", "Paired by seed, variant − split (negative LMD: better than the paper's split):", "",
                  "| variant | head LMD | jaw LMD | upper LMD | mouth LMD | speed ratio | per seed (head LMD) |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for name, by_seed in results.items():
            if name == "split":
                continue
            seeds = sorted(set(by_seed) & set(base))
            keys = ("lmd_head", "lmd_jaw", "lmd_upper", "lmd_mouth", "speed_ratio")
            d = {k: [by_seed[s][k] - base[s][k] for s in seeds] for k in keys}
            per = ", ".join(f"{x:+.2f}" for x in d["lmd_head"])
            lines.append(f"| {name} | " + " | ".join(_mean_std(d[k]) for k in keys) + f" | {per} |")
    return "\n".join(lines)


def main(argv) -> int:
    del argv
    unknown = [v for v in FLAGS.variants if v not in VARIANTS]
    if unknown:
        from thflax.errors import InputError

        raise InputError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    os.makedirs(FLAGS.workdir, exist_ok=True)
    data_dir = os.path.abspath(os.path.join(FLAGS.workdir, "tfds"))
    runs = {(v, s): os.path.abspath(os.path.join(FLAGS.workdir, v, f"seed{s}"))
            for v in FLAGS.variants for s in range(FLAGS.seeds)}
    if FLAGS.train:
        train_runs(runs, data_dir, FLAGS.parallel)
    from configs import full
    from input_pipeline import pipeline

    config = full.get_config()
    config.data.name, config.data.data_dir = FLAGS.dataset, data_dir
    utterances = list(pipeline.utterances(config, FLAGS.split, decode_frames=False))
    results: dict[str, dict[int, dict[str, float]]] = {}
    for (v, s), wd in runs.items():
        if _done(wd):
            results.setdefault(v, {})[s] = score_run(wd, utterances)
    md = (f"STL only, {FLAGS.steps} steps, {FLAGS.dataset}, {len(utterances)} {FLAGS.split} utterances "
          f"(px at 256; mean ± std over seeds)\n\n" + table(results))
    with open(os.path.join(FLAGS.workdir, "head_branch.json"), "w") as f:
        json.dump({v: {str(s): r for s, r in by.items()} for v, by in results.items()}, f, indent=1)
    with open(os.path.join(FLAGS.workdir, "head_branch.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    cli.run(main)
