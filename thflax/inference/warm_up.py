"""`python -m thflax.inference.warm_up`: fills the start-up caches for a model, so its first video is quick.

A first run spends most of its time tracing and compiling the STL and generator programs
(`thflax.inference.caches`). Their shapes are fixed (STL in chunks of 250 frames, the generator in
batches of 16), so one short clip of the bundled astronaut compiles what any later photo and speech
use; only the face detection of a new photo remains. `make setup` runs this for the shipped model.

    python -m thflax.inference.warm_up                        # the shipped model
    python -m thflax.inference.warm_up --checkpoint runs/demo # another model
"""

from __future__ import annotations

import os
import tempfile
import time

from absl import flags

from thflax import cli

#: What the warm-up clip says (a second of speech is enough: every program runs once).
TEXT = "Hello."


def warm_up(checkpoint: str | None = None) -> dict:
    """Makes one short clip of the astronaut with `checkpoint` (None: the shipped model) into a temporary
    folder, with the caches on. Returns {"cache": folder or None, "seconds": wall time}."""
    import cv2
    import skimage.data

    from thflax.inference import caches, generation

    t0 = time.perf_counter()
    root = caches.enable_caches()
    with tempfile.TemporaryDirectory(prefix="thflax-warm-up-") as tmp:
        photo = os.path.join(tmp, "astronaut.png")
        cv2.imwrite(photo, cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
        generation.generate(checkpoint, photo, out=os.path.join(tmp, "warm_up.mp4"), text=TEXT, progress=False)
    return {"cache": root, "seconds": time.perf_counter() - t0}


def main(argv) -> int:
    del argv
    done = warm_up(flags.FLAGS.checkpoint)
    if done["cache"] is None:
        print("warning: no start-up cache folder (see the warning above): nothing kept", flush=True)
        return 0
    print(f"start-up cache ready in {done['cache']} ({done['seconds']:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    flags.DEFINE_string("checkpoint", None, "Training workdir or export bundle (default: the shipped model).")
    cli.run(main)
