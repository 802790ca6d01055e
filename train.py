"""Trains thflax: stage 1 (STL, speech -> landmarks) and/or stage 2 (LTV, landmarks -> video).

    python train.py --config configs/default.py --workdir runs/default [--config.stage=stl]

Each stage writes <workdir>/<stage>/{checkpoints, TensorBoard events}; an interrupted run resumes
from its latest checkpoint. Multi-host: launch the same command on every host with
--multihost (or THFLAX_MULTIHOST=1); `jax.distributed.initialize()` reads the cluster from the
environment (TPU pods, SLURM, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/default.py", "Training configuration.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard logs.")
flags.DEFINE_bool("multihost", os.environ.get("THFLAX_MULTIHOST", "") == "1",
                  "Call jax.distributed.initialize() (one process per host).")
flags.DEFINE_string("coordinator", None, "host:port of process 0 (multihost without a cluster manager).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multihost without a cluster manager).")
flags.DEFINE_integer("process_id", None, "This process's index (multihost without a cluster manager).")
flags.mark_flags_as_required(["workdir"])


class _QuietLibraries:
    """Drops INFO chatter of orbax/absl internals so progress and metrics stay readable."""

    def filter(self, record) -> bool:
        noisy = ("orbax", "xla_bridge", "tensorflow_datasets", "array_metadata", "async_checkpointer")
        return record.levelno >= 30 or not any(n in record.pathname for n in noisy)


def main(argv):
    del argv
    import logging as pylogging

    import jax

    pylogging.getLogger().addFilter(_QuietLibraries())
    for h in pylogging.getLogger().handlers:
        h.addFilter(_QuietLibraries())

    if FLAGS.multihost or FLAGS.coordinator:
        # Cross-process collectives for CPU devices (no effect on GPU/TPU backends). Nothing may touch
        # the XLA backend before initialize().
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
    from thflax import trainer
    from thflax.errors import InputError

    config = FLAGS.config
    logging.info("JAX %s, %d processes, %d devices (%d local): %s", jax.__version__, jax.process_count(),
                 jax.device_count(), jax.local_device_count(), jax.devices()[0].platform)
    stages = ["stl", "ltv"] if config.stage == "all" else [config.stage]
    try:
        for stage in stages:
            trainer.train_stage(config, FLAGS.workdir, trainer.make_task(config, stage))
    except (InputError, trainer.NonFiniteLossError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
