"""Trains thflax: stage 1 (STL, speech -> landmarks) and/or stage 2 (LTV, landmarks -> video).

    python train.py --config configs/default.py --workdir runs/default [--config.stage=stl]

Each stage writes <workdir>/<stage>/{checkpoints, TensorBoard events}; an interrupted run resumes
from its newest intact checkpoint. Multi-host: launch the same command on every host with
--multihost (or THFLAX_MULTIHOST=1); `jax.distributed.initialize()` reads the cluster from the
environment (TPU pods, SLURM, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
Progress: a tqdm bar on a terminal, else clu's ReportProgress lines (steps/s, ETA) in the log;
--verbose also shows the libraries' chatter (orbax, TFDS, TensorFlow).
"""

from __future__ import annotations

import os
import sys

from absl import flags, logging

from thflax import cli

FLAGS = flags.FLAGS
cli.define_config(help_text="Training configuration.")
flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard logs.")
flags.DEFINE_bool("multihost", os.environ.get("THFLAX_MULTIHOST", "") == "1",
                  "Call jax.distributed.initialize() (one process per host).")
flags.DEFINE_string("coordinator", None, "host:port of process 0 (multihost without a cluster manager).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multihost without a cluster manager).")
flags.DEFINE_integer("process_id", None, "This process's index (multihost without a cluster manager).")
flags.mark_flags_as_required(["workdir"])


def train_and_evaluate(config, workdir: str) -> None:
    """Trains the stages `config.stage` names, in order, on the dataset `config.data` names (prepared after
    every stage's task is built: a config mistake fails before the slow preparation)."""
    from thflax.training import stages, tasks

    stages.train_stages(config, workdir, tasks.stage_names(config.stage))


def main(argv):
    del argv
    import jax

    if FLAGS.multihost or FLAGS.coordinator:
        # Cross-process collectives for CPU devices (no effect on GPU/TPU backends). Nothing may touch
        # the XLA backend before initialize().
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
    from thflax.training import trainer

    logging.info("JAX %s, %d processes, %d devices (%d local): %s", jax.__version__, jax.process_count(),
                 jax.device_count(), jax.local_device_count(), jax.devices()[0].platform)
    try:
        train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except trainer.NonFiniteLossError as e:  # a failed run, not a bad input: status 1
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
