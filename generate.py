"""Speech + one photo -> talking-head mp4.

    python generate.py --checkpoint runs/demo --image face.jpg --audio speech.wav --out talking.mp4

--checkpoint is a training workdir (holding stl/ and ltv/ checkpoints). Bad inputs print one line
and exit with status 2; the output file is only created when generation succeeded.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="training workdir with stl/ and ltv/ checkpoints")
    p.add_argument("--image", required=True, help="photo of a face (the largest face is used)")
    p.add_argument("--audio", required=True, help="speech (wav/flac/mp3/mp4..., any sample rate)")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--config", default=None, help="config file the checkpoint must match (default: the saved one)")
    p.add_argument("--still", action="store_true", help="no head motion: animate the lips only")
    p.add_argument("--landmarks-video", action="store_true", help="show the predicted landmarks beside the video")
    p.add_argument("--crop-only", action="store_true", help="write the face crop instead of the whole photo")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--size", type=int, default=None, help="output height in pixels")
    p.add_argument("--batch", type=int, default=16, help="frames per generator call")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from thflax import configlib, generation
    from thflax.errors import InputError

    config = None
    try:
        if a.config:
            config = configlib.load_config_file(a.config)
        for path, what in ((a.image, "image"), (a.audio, "audio")):
            if not os.path.isfile(path):
                raise InputError(f"{what} file not found: {path}")
        summary = generation.generate(a.checkpoint, a.image, a.audio, a.out, still=a.still,
                                      landmarks_video=a.landmarks_video, crop_only=a.crop_only, fps=a.fps,
                                      size=a.size, batch=a.batch, progress=not a.quiet, config=config)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {summary['out']} ({summary['frames']} frames, {summary['seconds']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
