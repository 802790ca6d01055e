"""A trained workdir -> a small parameters-only bundle for generation (no optimiser, no discriminator).

    python export.py --workdir runs/demo --out runs/demo_export [--head_gain 1.6]
    python generate.py --checkpoint runs/demo_export --image face.jpg --audio speech.wav --out talking.mp4

The bundle holds the config, the STL net's parameters and statistics and the generator's parameters,
with a checksum that generation verifies (`thflax/inference/params.py`).

    python export.py --workdir runs/demo --out runs/demo_onnx --format onnx

writes ONNX files that onnxruntime runs without JAX (`thflax/inference/onnx_export.py`: the STL chunk
step, the generator's reference encoding and per-batch decoding, and `thflax_onnx.json`); --workdir may
also be a parameters bundle. Needs the `onnx` extra (pip install -e '.[onnx]').
"""

from __future__ import annotations

import os

from absl import flags

from thflax import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Trained workdir (stl/ and ltv/ checkpoints).")
flags.DEFINE_string("out", None, "Folder to write the bundle to (must not exist, unless --overwrite).")
flags.DEFINE_bool("overwrite", False, "Replace an existing export bundle at --out.")
flags.DEFINE_enum("format", "params", ["params", "onnx"],
                  "params: the parameters-only bundle for generate.py; onnx: ONNX files for onnxruntime.")
flags.DEFINE_integer("onnx_chunk", 250, "--format onnx: the STL graph's fixed chunk of video frames (T).")
flags.DEFINE_integer("onnx_batch", 16, "--format onnx: the generator decoder's fixed batch of frames (B).")
flags.DEFINE_float("head_gain", None, "Store this head gain (`stl.head_gain`, chosen on validation with "
                   "benchmarks/head_gain.py) in the bundle instead of the workdir's (default: keep it).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv) -> int:
    del argv
    from thflax.inference import params

    if FLAGS.format == "onnx":
        if FLAGS.head_gain is not None:
            cli.fail("--head_gain is for a parameters bundle: export one with it, then --format onnx from that bundle")
        try:
            from thflax.inference import onnx_export
            import jax2onnx, onnxruntime  # noqa: F401, E401 - a missing extra fails here, in one line
        except ImportError as e:
            cli.fail(f"--format onnx needs the onnx extra (pip install -e '.[onnx]'): {e}")
        info = onnx_export.export_onnx(FLAGS.workdir, FLAGS.out, overwrite=FLAGS.overwrite,
                                       chunk=FLAGS.onnx_chunk, batch=FLAGS.onnx_batch)
        print(f"wrote {os.path.abspath(FLAGS.out)} ({info['bytes'] / 2**20:.1f} MiB of ONNX; largest |ONNX - JAX| "
              f"{max(info['max_abs_diff'].values()):.2g})")
        return 0
    info = params.export(FLAGS.workdir, FLAGS.out, overwrite=FLAGS.overwrite, head_gain=FLAGS.head_gain)
    print(f"wrote {os.path.abspath(FLAGS.out)} ({info['bytes'] / 2**20:.1f} MiB of parameters)")
    return 0


if __name__ == "__main__":
    cli.run(main)
