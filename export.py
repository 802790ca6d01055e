"""A trained workdir -> a small parameters-only bundle for generation (no optimiser, no discriminator).

    python export.py --workdir runs/demo --out runs/demo_export
    python generate.py --checkpoint runs/demo_export --image face.jpg --audio speech.wav --out talking.mp4

The bundle holds the config, the STL net's parameters and statistics and the generator's parameters,
with a checksum that generation verifies (`thflax/inference/params.py`).
"""

from __future__ import annotations

import os

from absl import flags

from thflax import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Trained workdir (stl/ and ltv/ checkpoints).")
flags.DEFINE_string("out", None, "Folder to write the bundle to (must not exist, unless --overwrite).")
flags.DEFINE_bool("overwrite", False, "Replace an existing export bundle at --out.")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv) -> int:
    del argv
    from thflax.inference import params

    info = params.export(FLAGS.workdir, FLAGS.out, overwrite=FLAGS.overwrite)
    print(f"wrote {os.path.abspath(FLAGS.out)} ({info['bytes'] / 2**20:.1f} MiB of parameters)")
    return 0


if __name__ == "__main__":
    cli.run(main)
