"""Speech + one photo -> talking-head mp4.

    python generate.py --checkpoint runs/demo --image face.jpg --audio speech.wav --out talking.mp4

--checkpoint is a training workdir (stl/ and ltv/ checkpoints) or an export bundle (export.py). The
model's config is the saved one; --config FILE requires the checkpoint to match that file, and
--config.x=y overrides change it. Bad inputs print one line and exit with status 2; the output file
is only created when generation succeeded.
"""

from __future__ import annotations

import os

from absl import flags

from thflax import cli

FLAGS = flags.FLAGS
cli.define_config(help_text="Config file the checkpoint must match (default: the one saved with it).")
flags.DEFINE_string("checkpoint", None, "Training workdir (stl/ and ltv/ checkpoints) or export bundle.")
flags.DEFINE_string("image", None, "Photo of a face.")
flags.DEFINE_string("audio", None, "Speech (wav/flac/mp3/mp4..., any sample rate).")
flags.DEFINE_string("out", None, "Output .mp4.")
flags.DEFINE_bool("still", False, "No head motion: animate the lips only.")
flags.DEFINE_bool("landmarks_video", False, "Show the predicted landmarks beside the video.")
flags.DEFINE_bool("crop_only", False, "Write the face crop instead of the whole photo.")
flags.DEFINE_float("fps", 25.0, "Output frame rate.", lower_bound=1.0)
flags.DEFINE_integer("size", None, "Output height in pixels (default: the photo's).", lower_bound=16)
flags.DEFINE_integer("batch", 16, "Frames per generator call.", lower_bound=1)
flags.DEFINE_integer("face_index", None, "Which face of the photo: 0 = the highest detection score.", lower_bound=0)
flags.DEFINE_list("face_box", None, "Which face of the photo: the one inside x0,y0,x1,y1 (pixels).")
flags.DEFINE_bool("quiet", False, "No progress bar.")
flags.mark_flags_as_required(["checkpoint", "image", "audio", "out"])


def main(argv) -> int:
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from thflax import generation

    from thflax.errors import InputError

    face_box = None
    if FLAGS.face_box is not None:
        try:
            face_box = tuple(int(v) for v in FLAGS.face_box)
        except ValueError:
            face_box = ()
        if len(face_box) != 4:
            raise InputError(f"--face_box takes four whole numbers x0,y0,x1,y1, not {','.join(FLAGS.face_box)}")
    config = cli.checkpoint_config(FLAGS.checkpoint) if cli.config_given() else None
    summary = generation.generate(FLAGS.checkpoint, FLAGS.image, FLAGS.audio, FLAGS.out, still=FLAGS.still,
                                  landmarks_video=FLAGS.landmarks_video, crop_only=FLAGS.crop_only, fps=FLAGS.fps,
                                  size=FLAGS.size, batch=FLAGS.batch, progress=not FLAGS.quiet, config=config,
                                  face_index=FLAGS.face_index, face_box=face_box)
    print(f"wrote {summary['out']} ({summary['frames']} frames, {summary['seconds']:.2f} s)")
    return 0


if __name__ == "__main__":
    cli.run(main)
