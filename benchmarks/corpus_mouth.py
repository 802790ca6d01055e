"""The synthetic corpus's mouth interior and mattes: what the truth shows, and what drawing it costs.

    python benchmarks/corpus_mouth.py measures DIR [DIR ...] [--dlib]
    python benchmarks/corpus_mouth.py speed [--frames 200] [--repeats 3]
    python benchmarks/corpus_mouth.py crops DIR OUT.png

`measures`: every video of a corpus made with `python -m thflax.synthetic.corpus` (decoded from its
mp4, i.e. after H.264) is measured with `thflax.measures.face_measures.mouth_interior` at the renderer's
own landmarks (`synthetic_truth/*.npz`; with --dlib, at dlib's, as `thflax.measures.evaluation` measures a
video): inner-mouth contrast and teeth brightness over the video's open-mouth frames; per speaker, the
median over its utterances, and the range over all of them.

`speed`: `Renderer.render_frame` at 360x288 for an astronaut speaker and a portrait speaker over
mouth openings 0..1, the mouth interior alone (`Renderer._draw_mouth` on a wide-open mouth), and
`portraits.person_matte` per built-in photo; best of `--repeats` runs of `--frames` calls (one for the
matte), as frames/s by the wall clock and as this process's CPU time per call (comparable on a
machine shared with other jobs, where the wall clock is not).

`crops`: the widest-open frame of each speaker's first video, mouth crops at 3x side by side, to a PNG.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _videos(folder: str):
    for path in sorted(glob.glob(os.path.join(folder, "s*", "*.mp4")), key=lambda p: (len(p), p)):
        spk, name = path.split(os.sep)[-2:]
        yield spk, path, os.path.join(folder, "synthetic_truth", spk, name.replace(".mp4", ".npz"))


def measures(folders: list[str], use_dlib: bool = False) -> None:
    from thflax.face.landmarks import FaceLandmarker
    from thflax.io import video
    from thflax.measures import face_measures

    landmarker = FaceLandmarker() if use_dlib else None

    for folder in folders:
        per_spk: dict[str, list[tuple[float, float]]] = {}
        for spk, path, truth in _videos(folder):
            frames, _ = video.read_video(path)
            lm = np.load(truth)["landmarks"].astype(np.float64)
            if landmarker is not None:
                lm = landmarker.track(frames).astype(np.float64)
            m = face_measures.mouth_interior(frames, lm)
            per_spk.setdefault(spk, []).append((m["mouth_contrast"], m["teeth_brightness"]))
        print(f"\n{folder} ({'dlib' if use_dlib else 'truth'} landmarks)\n\n| speaker | utterances | mouth contrast | teeth |\n|---|---:|---:|---:|")
        allv = []
        for spk, vals in per_spk.items():
            v = np.array(vals, np.float64)
            allv.append(v)
            print(f"| {spk} | {len(v)} | {np.nanmedian(v[:, 0]):.1f} | {np.nanmedian(v[:, 1]):.1f} |")
        v = np.concatenate(allv)
        print(f"| all | {len(v)} | {np.nanmedian(v[:, 0]):.1f} ({np.nanmin(v[:, 0]):.1f}–{np.nanmax(v[:, 0]):.1f}) | "
              f"{np.nanmedian(v[:, 1]):.1f} ({np.nanmin(v[:, 1]):.1f}–{np.nanmax(v[:, 1]):.1f}) |")


def speed(frames: int, repeats: int) -> None:
    from thflax.synthetic import portraits, renderer, speakers, visemes

    def timed(fn, n):
        """Best of `repeats` runs of n calls: (calls/s by the wall clock, ms of this process's CPU per call).
        The CPU time stays meaningful on a machine shared with other jobs; the wall clock does not."""
        wall, cpu = 0.0, float("inf")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(n):
                fn(i)
            wall = max(wall, n / (time.perf_counter() - t0))
            cpu = min(cpu, (time.process_time() - c0) / n * 1e3)
        return wall, cpu

    rows = []
    cases = [("astronaut speaker (seed 1234)", speakers.make_speaker(1234))]
    if len(portraits.builtin_portraits()) > 1:
        cases.append(("portrait speaker (obama)", speakers.make_portrait_speaker(5, ("obama",), ("obama",))))
    for name, spk in cases:
        r = renderer.get_renderer(spk)
        shapes = [visemes.deform_mouth(r.neutral, o, 0.2, 1.0) for o in np.linspace(0, 1, 10)]
        pose = np.array([3.0, 2.0, 1.0, 2.0, 1.0, 1.0])
        fps, cpu = timed(lambda i: r.render_frame(shapes[i % 10], pose), frames)
        rows.append((f"render_frame, {name}", f"{fps:.0f} frames/s", f"{cpu:.2f} ms/frame"))
        frame, lm = r.render_frame(shapes[-1], pose)
        lm = lm.astype(np.float64)
        _, cpu = timed(lambda i: r._draw_mouth(frame.copy(), lm), frames)
        rows.append((f"_draw_mouth wide open (and a frame copy), {name}", "", f"{cpu:.2f} ms/call"))
    for p in portraits.builtin_portraits():
        src = portraits.prepare(p)
        _, cpu = timed(lambda i: portraits.person_matte(src.photo, src.landmarks), 1)
        rows.append((f"person_matte, {p.key}", "", f"{cpu:.0f} ms/call"))
    print("| what | wall clock | CPU time |\n|---|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def crops(folder: str, out: str) -> None:
    import cv2

    from thflax.io import video

    tiles, seen = [], set()
    for spk, path, truth in _videos(folder):
        if spk in seen:
            continue
        seen.add(spk)
        frames, _ = video.read_video(path)
        t = np.load(truth)
        k = int(np.argmax(t["mouth_opening"]))
        c = t["landmarks"][k, 48:68].mean(0).astype(int)
        crop = frames[k, max(c[1] - 20, 0):c[1] + 20, max(c[0] - 32, 0):c[0] + 32]
        tiles.append(cv2.resize(crop, (192, 120), interpolation=cv2.INTER_NEAREST))
    cv2.imwrite(out, cv2.cvtColor(np.concatenate(tiles, 1), cv2.COLOR_RGB2BGR))
    print(f"{len(tiles)} speakers -> {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measures")
    m.add_argument("folders", nargs="+")
    m.add_argument("--dlib", action="store_true", help="measure at dlib's landmarks, not the truth's")
    s = sub.add_parser("speed")
    s.add_argument("--frames", type=int, default=200)
    s.add_argument("--repeats", type=int, default=3)
    c = sub.add_parser("crops")
    c.add_argument("folder")
    c.add_argument("out")
    a = p.parse_args()
    if a.cmd == "measures":
        measures(a.folders, a.dlib)
    elif a.cmd == "speed":
        speed(a.frames, a.repeats)
    else:
        crops(a.folder, a.out)


if __name__ == "__main__":
    main()
