"""Evaluates trained models end to end on held-out utterances and prints the paper's Table 2.

    python evaluate.py --checkpoint runs/demo                       # one model + the trivial rows
    python evaluate.py --checkpoint Full=runs/full --checkpoint "w/o Attention=runs/no_attention" ...

Each --checkpoint is a training workdir (stl/ and ltv/ checkpoints), optionally named NAME=DIR; the
dataset is the one the first checkpoint was trained on (override with --data_name / --data_dir /
--manual_dir). Rows "Reference frame (copied)" and "Template landmarks (no speech)" are added as
floors (disable with --no_trivial_rows). Writes table2.md, summary.json and per_utterance.json to
--workdir and prints the table. Protocol: see thflax/evaluation.py.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True, help="[NAME=]training workdir (repeatable)")
    p.add_argument("--workdir", default=None, help="where to write the results (default: first checkpoint/eval)")
    p.add_argument("--config", default=None, help="config file the checkpoints must match (default: saved ones)")
    p.add_argument("--data_name", default=None)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--manual_dir", default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--max_utterances", type=int, default=None)
    p.add_argument("--no_trivial_rows", action="store_true")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from thflax import configlib, evaluation, generation
    from thflax.errors import InputError

    try:
        config = configlib.load_config_file(a.config) if a.config else None
        rows = []
        for spec_ in a.checkpoint:
            name, _, path = spec_.rpartition("=")
            name = name or os.path.basename(os.path.normpath(path))
            rows.append(evaluation.Row(name, generation.load_models(path, config)))
        first = rows[0].models.config
        data = first.data
        if a.data_name:
            data.name = a.data_name
        if a.data_dir is not None:
            data.data_dir = a.data_dir
        if a.manual_dir is not None:
            data.manual_dir = a.manual_dir
        if not a.no_trivial_rows:
            rows = [evaluation.Row("Reference frame (copied)", kind="reference"),
                    evaluation.Row("Template landmarks (no speech)", rows[0].models, kind="template")] + rows
        from input_pipeline import pipeline

        utts = pipeline.utterances(first, a.split)
        results = evaluation.evaluate(rows, utts, a.max_utterances, progress=not a.quiet)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = evaluation.summarize(results)
    table = evaluation.markdown_table(summary)
    workdir = a.workdir or os.path.join(a.checkpoint[0].rpartition("=")[2], "eval")
    paths = evaluation.write_results(workdir, results, summary, table)
    print(table)
    print(f"\n{summary[rows[-1].name]['utterances']} held-out utterances; results in {paths['table']}, "
          f"{paths['per_utterance']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
