"""Evaluates trained models end to end on held-out utterances and prints the paper's Table 2.

    python evaluate.py --checkpoint runs/demo                       # one model + the trivial rows
    python evaluate.py --checkpoint Full=runs/full --checkpoint "w/o Attention=runs/no_attention" ...

Each --checkpoint is a training workdir or an export bundle, optionally named NAME=PATH. The config
(and so the dataset) is the one the first checkpoint was trained with; --config FILE makes every
checkpoint match that file; overrides such as --config.data.data_dir=DIR or
--config.data.name=grid/crop256 change it, or, without a file, each checkpoint's own saved config. Rows "Reference frame (copied)" and "Template landmarks
(no speech)" are added as floors and "Real video (ceiling)" as the lip-sync ceiling (--notrivial_rows
drops them). LSE-D / LSE-C / LSE offset are computed with the lip-sync expert --syncnet names: a workdir
or bundle holding one (`python -m thflax.training.syncnet_stage`), or the public SyncNet's weights converted
with `python -m thflax.inference.syncnet_weights`; by default the first checkpoint's own (`<workdir>/syncnet`,
as the demo trains it) when it has one, else the columns stay blank. The line under the table names it.
Writes table2.md, summary.json and per_utterance.json to --out_dir and prints the table. Protocol: see thflax/measures/evaluation.py: each utterance's first frame, framed on its own, and its
unsmoothed landmarks are the reference, as generation takes a photo. The numbers reported are on
`test` (the default), which nothing during training reads; `--split=validation` is for tuning.
"""

from __future__ import annotations

import os

from absl import flags

from thflax import cli

FLAGS = flags.FLAGS
cli.define_config(help_text="Config file the checkpoints must match (default: the saved ones).")
flags.DEFINE_multi_string("checkpoint", None, "[NAME=]training workdir or export bundle (repeatable).")
flags.DEFINE_string("out_dir", None, "Where to write the results (default: <first checkpoint>/eval).")
flags.DEFINE_enum("split", "test", ["test", "validation"],
                  "Dataset split to evaluate on: test (report) or validation (tuning). The train split's "
                  "crops are framed over whole clips, which the protocol refuses.")
flags.DEFINE_integer("max_utterances", None, "Evaluate on the first N utterances only.", lower_bound=1)
flags.DEFINE_bool("trivial_rows", True,
                  "Add the copied-reference and template floor rows and the real-video ceiling row.")
flags.DEFINE_string("syncnet", None, "Lip-sync expert for the LSE columns: a workdir or bundle with one, or converted "
                    "public SyncNet weights (default: the first checkpoint's own, if any).")
flags.DEFINE_bool("quiet", False, "No progress bar.")
flags.mark_flags_as_required(["checkpoint"])


def _row_config(i: int, path: str, first):
    """The config checkpoint `i` is loaded with: --config FILE for all; else each one's own saved config with
    the `--config.x=y` overrides applied (a data_dir override must not give a later checkpoint the first's
    networks); None (its saved config) without either."""
    if i == 0 or flags.FLAGS["config"].present:
        return first
    return cli.checkpoint_config(path) if cli.config_given() else None


def main(argv) -> int:
    del argv
    from input_pipeline import pipeline
    from thflax.measures import evaluation, lip_sync_expert
    from thflax.inference import networks

    specs = [s.rpartition("=") for s in FLAGS.checkpoint]
    specs = [(name or os.path.basename(os.path.normpath(path)), path) for name, _, path in specs]
    config = cli.checkpoint_config(specs[0][1])
    models = [(name, networks.load_models(path, _row_config(i, path, config))) for i, (name, path) in enumerate(specs)]
    expert = (lip_sync_expert.load_expert(FLAGS.syncnet) if FLAGS.syncnet
              else lip_sync_expert.find_expert(specs[0][1]))
    utts = pipeline.utterances(config, FLAGS.split)
    out_dir = FLAGS.out_dir or os.path.join(specs[0][1], "eval")
    summary, table, paths = evaluation.run_table(models, utts, out_dir, FLAGS.max_utterances,
                                                 trivial_rows=FLAGS.trivial_rows, progress=not FLAGS.quiet,
                                                 expert=expert)
    print(table)
    print(f"\n{summary[specs[-1][0]]['utterances']} held-out utterances; results in {paths['table']}, "
          f"{paths['per_utterance']}")
    return 0


if __name__ == "__main__":
    cli.run(main)
