"""Do the blinks show, to dlib? In a synthetic corpus (rendered lids) and in a generated video.

    python benchmarks/blinks.py corpus DIR
    python benchmarks/blinks.py video VIDEO.mp4 SPEECH.wav RATE [--seed 0] [--png_dir DIR]

`corpus`: every video of a corpus made with `python -m thflax.synthetic.corpus` is landmarked by
dlib (`thflax.measures.face_measures.video_blinks`: runs of frames whose eye aspect ratio is under
0.6 x the video's median) and compared with the renderer's truth (`synthetic_truth/*.npz`,
`eye_closure`): blinks rendered, blinks dlib finds, how many of the rendered ones it finds (a dlib
blink starting within 2 frames before to the end of a rendered one), and dlib's EAR / median at the
frame of full closure vs at open frames.

`video`: a video made by generate.py with `--blink_rate RATE` from SPEECH.wav (blink seed `--seed`,
generate's default 0): the blinks generation planned (`thflax.inference.blinks.blink_closure`) vs
what dlib reads in the frames; with --png_dir, the first planned full closure and an open frame
near it are written as PNGs.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _summary(ear: np.ndarray, closure: np.ndarray) -> tuple[list[float], list[float]]:
    from thflax.face import eyes

    med = float(np.median(ear))
    peaks = [s + int(np.argmax(closure[s:s + n])) for s, n in eyes.closure_runs(closure)]
    return list(ear[peaks] / med), list(ear[closure == 0] / med)


def corpus(folder: str) -> None:
    from thflax.face import eyes
    from thflax.measures.face_measures import video_blinks

    rendered = found = matched = 0
    closed, opened, frames = [], [], 0
    for path in sorted(glob.glob(os.path.join(folder, "s*", "*.mp4"))):
        spk, name = path.split(os.sep)[-2:]
        truth = np.load(os.path.join(folder, "synthetic_truth", spk, name.replace(".mp4", ".npz")))
        c = truth["eye_closure"]
        r = video_blinks(path)
        runs = eyes.closure_runs(c)
        rendered += len(runs)
        found += r["blinks"]
        matched += sum(any(s - 2 <= f <= s + n for f in r["starts"]) for s, n in runs)
        a, b = _summary(r["ear"], c)
        closed += a
        opened += b
        frames += len(c)
    minutes = frames / 25.0 / 60.0
    print(f"{folder}: {frames} frames ({minutes * 60:.0f} s); rendered blinks {rendered} ({rendered / minutes:.1f}/min), "
          f"dlib finds {found}, of the rendered ones {matched}")
    print(f"dlib EAR / median at full closure: mean {np.mean(closed):.2f} (min {np.min(closed):.2f}, "
          f"max {np.max(closed):.2f}); open frames: mean {np.mean(opened):.2f}, 5th percentile "
          f"{np.percentile(opened, 5):.2f}")


def video(path: str, wav: str, rate: float, seed: int, png_dir: str | None) -> None:
    import cv2

    from thflax.face import eyes
    from thflax.inference.blinks import blink_closure
    from thflax.io import audio as audio_lib
    from thflax.io import video as video_lib
    from thflax.measures.face_measures import video_blinks

    r = video_blinks(path)
    c = blink_closure(audio_lib.load_audio(wav), r["frames"], r["fps"], rate, seed)
    runs = eyes.closure_runs(c)
    closed, opened = _summary(r["ear"], c)
    print(f"{path}: {r['frames']} frames; planned blinks (start, frames) {runs}; dlib blinks "
          f"{list(zip(r['starts'], r['durations']))}")
    if closed:
        print(f"dlib EAR / median at planned full closure: {np.round(closed, 2).tolist()}; open frames: mean "
              f"{np.mean(opened):.2f}, 5th percentile {np.percentile(opened, 5):.2f}")
    if png_dir and runs:
        os.makedirs(png_dir, exist_ok=True)
        frames = list(video_lib.iter_frames(path))
        s, n = runs[0]
        i = s + int(np.argmax(c[s:s + n]))
        j = next(k for k in (s - 4, s + n + 4, 0) if 0 <= k < len(frames) and c[k] == 0)
        base = os.path.splitext(os.path.basename(path))[0]
        for tag, k in (("closed", i), ("open", j)):
            out = os.path.join(png_dir, f"{base}_{tag}_{k}.png")
            cv2.imwrite(out, cv2.cvtColor(frames[k], cv2.COLOR_RGB2BGR))
            print("wrote", out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("folder")
    v = sub.add_parser("video")
    v.add_argument("video")
    v.add_argument("speech")
    v.add_argument("rate", type=float)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--png_dir", default=None)
    a = p.parse_args()
    if a.what == "corpus":
        corpus(a.folder)
    else:
        video(a.video, a.speech, a.rate, a.seed, a.png_dir)


if __name__ == "__main__":
    main()
