"""Generates a synthetic talking-head corpus in GRID's on-disk layout.

Layout under ``out_dir``::

  s{k}/{utt_id}.mp4                   video, H.264 yuv420p, ``fps`` frames/s, no audio
  audio/s{k}/{utt_id}.wav             16 kHz mono PCM16, exactly T / fps seconds
  alignments/s{k}/{utt_id}.align      GRID word alignment, times in 1/25000 s
  synthetic_truth/s{k}/{utt_id}.npz   renderer ground truth (for measuring the
                                      landmarker only; pipelines must not read it)
  corpus.json                         seed, sizes, speakers, counts

Speakers blink (`thflax.synthetic.blinks`: 10–25 a minute each, more often in pauses; the truth
holds the eyelid closure per frame, `eye_closure`).

Every utterance is a pure function of (seed, speaker index, utterance index), so
the corpus is identical whatever the number of worker processes.

Faces: by default every speaker is a variant of the astronaut photo. With ``portraits`` (the
built-in set "builtin": the astronaut plus face_recognition's photos of Obama and Biden, see
`thflax.synthetic.portraits`; or a folder of the user's own portraits) speakers are real photos,
landmark-aligned morphs of two different people and mirror images, with colour, illumination,
scale and background changes (`plan_people`). ``corpus.json`` then records each speaker's source
photos and identities, and, with ``holdout``, which identities and speakers are held out: held-out
speakers are made of held-out identities only, and no other speaker involves them, so a split by
identity is clean.

CLI::

  python -m thflax.synthetic.corpus --out DIR --speakers N --utterances M --seed S [--workers K]
      [--portraits builtin|DIR [--holdout IDENTITY ...]] [--head_motion_scale 0.25]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import os
import time
from unittest import mock
from pathlib import Path

import numpy as np

from thflax.errors import InputError
from thflax.synthetic import grammar, head_motion, renderer
from thflax.synthetic import portraits as portraits_lib
from thflax.synthetic import speakers as speakers_lib
from thflax.io import speech

ALIGN_UNITS_PER_SECOND = 25000  # GRID .align files count in 1/25000 s (1000 per video frame).
FORMAT_VERSION = 1


def speaker_seed(seed: int, index: int) -> int:
    """The seed of speaker ``index`` (1-based) in a corpus with ``seed``."""
    return int(np.random.SeedSequence([seed, index, 0x5B]).generate_state(1)[0])


def plan_utterances(seed: int, index: int, count: int) -> list[tuple[list[str], str]]:
    """The sentences of speaker ``index``: [(words, unique utt_id)] * count.

    A repeated sentence keeps its words and gets a suffix ("bbaf2n_2").
    """
    out, seen = [], {}
    for j in range(count):
        rng = np.random.default_rng([seed, index, j, 0x5E])
        words, uid = grammar.sample_sentence(rng)
        seen[uid] = seen.get(uid, 0) + 1
        if seen[uid] > 1:
            uid = f"{uid}_{seen[uid]}"
        out.append((words, uid))
    return out


def align_lines(words: list[tuple[float, float, str]], total_s: float) -> list[tuple[int, int, str]]:
    """GRID alignment segments covering [0, total_s].

    Leading/trailing silence is ``sil``; a gap between words is ``sp`` (as in
    GRID). Times are integers in 1/25000 s, contiguous and non-decreasing.
    """
    u = ALIGN_UNITS_PER_SECOND
    total = int(round(total_s * u))
    segs: list[tuple[int, int, str]] = []
    cur = 0
    for i, (start, end, word) in enumerate(words):
        s = min(max(int(round(start * u)), cur), total)
        e = min(max(int(round(end * u)), s), total)
        if s > cur:
            segs.append((cur, s, "sil" if i == 0 else "sp"))
        segs.append((s, e, word))
        cur = e
    if cur < total or not segs:
        segs.append((cur, total, "sil"))
    return segs


# Not thflax.io.video.VideoWriter: its ffmpeg options (quality=8, i.e. CRF 10, default preset and threads)
# would change every corpus file; the corpus needs CRF 18, "-preset fast" and one encoder thread.
def mp4_writer(path: Path, size: tuple[int, int], fps: float, crf: int = 18):
    """A started imageio-ffmpeg generator: ``send`` uint8 RGB [H, W, 3] frames, then ``close``.

    H.264 (libx264, CRF ``crf``), yuv420p, exactly W x H (no macro-block resize).
    """
    import imageio_ffmpeg

    w, h = size
    if w % 2 or h % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {w}x{h}")
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), pix_fmt_in="rgb24", pix_fmt_out="yuv420p", fps=fps,
        codec="libx264", quality=None, macro_block_size=2,  # 2: no resizing of 360x288
        ffmpeg_log_level="error",
        # One encoder thread: deterministic output, and workers do not oversubscribe.
        output_params=["-crf", str(crf), "-preset", "fast", "-threads", "1"],
    )
    # write_frames starts ffmpeg with preexec_fn=os.setpgrp, and a preexec_fn makes CPython really fork the
    # process (with JAX's threads in it: "os.fork() was called ... deadlock") before exec. Its documented
    # switch IMAGEIO_FFMPEG_NO_PREVENT_SIGINT drops the preexec_fn (ffmpeg then gets Ctrl-C too, which is
    # fine: an interrupted corpus build is discarded); it is read when ffmpeg starts, at the first send.
    with mock.patch.dict(os.environ, {"IMAGEIO_FFMPEG_NO_PREVENT_SIGINT": "1"}):
        writer.send(None)  # start the generator (launches ffmpeg)
    return writer


def _init_worker() -> None:
    """Worker processes: one OpenCV thread each, so K workers use ~K cores."""
    import cv2

    cv2.setNumThreads(1)


def _utterance_job(args: tuple) -> dict:
    """Synthesises, renders and writes one utterance; returns its metadata."""
    import soundfile

    out_dir, seed, k, j, words, uid, spk_dict, size, fps, head_motion_scale = args
    speaker = speakers_lib.speaker_from_dict(spk_dict)
    rng = np.random.default_rng([seed, k, j, 0x07])
    lead, trail = rng.uniform(0.3, 0.5, 2)
    # Small per-utterance variation around the speaker's habitual rate and pitch.
    rate = int(np.clip(speaker.rate + rng.integers(-8, 9), 130, 210))
    pitch = int(np.clip(speaker.pitch + rng.integers(-4, 5), 0, 100))
    utt = speech.synthesize(
        grammar.spoken_text(words), speaker.voice, rate, pitch,
        labels=words, leading_silence=float(lead), trailing_silence=float(trail),
    )
    spk = f"s{k}"
    out = Path(out_dir)
    paths = {
        "video": out / spk / f"{uid}.mp4",
        "audio": out / "audio" / spk / f"{uid}.wav",
        "align": out / "alignments" / spk / f"{uid}.align",
        "truth": out / "synthetic_truth" / spk / f"{uid}.npz",
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    # ffmpeg encodes in its own process while the next frames render.
    writer = mp4_writer(paths["video"], tuple(size), fps)
    try:
        # Blinks draw from a stream of their own: `rng`'s draws (head motion) are as before blinks.
        clip = renderer.render_clip(speaker, utt, fps=fps, size=tuple(size), rng=rng,
                                on_frame=writer.send, head_motion_scale=head_motion_scale,
                                blink_rng=np.random.default_rng([seed, k, j, 0xB1]))
    finally:
        writer.close()
    t = len(clip.frames)
    soundfile.write(str(paths["audio"]), np.clip(clip.audio, -1.0, 1.0), clip.sample_rate,
                    subtype="PCM_16")
    total_s = t / fps
    lines = align_lines(utt.words, total_s)
    paths["align"].write_text("".join(f"{a} {b} {w}\n" for a, b, w in lines))
    ph = utt.phonemes
    np.savez_compressed(
        paths["truth"],
        landmarks=clip.landmarks, poses=clip.poses, pose_names=np.array(head_motion.POSE_NAMES),
        mouth_opening=clip.mouth_opening, articulation=clip.articulation, eye_closure=clip.eye_closure,
        phoneme_start=np.array([p[0] for p in ph], np.float32),
        phoneme_end=np.array([p[1] for p in ph], np.float32),
        phoneme=np.array([p[2] for p in ph]),
        word_start=np.array([w[0] for w in utt.words], np.float32),
        word_end=np.array([w[1] for w in utt.words], np.float32),
        word=np.array([w[2] for w in utt.words]),
        fps=np.float32(fps), size=np.array(size, np.int32),
    )
    return {"speaker": spk, "utt_id": uid, "words": words, "frames": t, "rate": rate,
            "pitch": pitch, "duration_s": total_s}


MORPH_PROBABILITY = 0.6  # share of portrait speakers that are morphs of two people (when possible)


def plan_people(
    seed: int,
    num_speakers: int,
    identities: dict[str, list[str]],
    holdout: tuple[str, ...] = (),
    test_fraction: float = 0.25,
) -> list[dict]:
    """Which photos each portrait speaker is made of: a pure function of its arguments.

    Args:
      seed: master seed.
      num_speakers: N.
      identities: {identity: [portrait keys of that person]}.
      holdout: identities kept for testing. Speakers in the held-out group (ceil(test_fraction * N)
        of them, at seeded positions) are made of held-out identities only; the others of the
        remaining identities only. No speaker mixes the two, so a split by identity loses nothing.
      test_fraction: the held-out group's share of the speakers.
    Returns:
      One recipe per speaker s1..sN: {"sources": (key,) or (key, partner key), "identities": (...),
      "mix": partner weight (0.3..0.5; 0 for one photo), "mirror": bool, "heldout": bool}. Each
      group cycles through its identities as the main photo, each identity through its photos;
      the first round is the photos themselves, later a main photo is
      morphed with a photo of a different person of the same group with probability
      `MORPH_PROBABILITY`, and mirrored with probability 1/2.
    """
    ids = sorted(identities)
    if not ids:
        raise InputError("no portraits to make speakers from")
    holdout = tuple(dict.fromkeys(holdout))
    unknown = [h for h in holdout if h not in identities]
    if unknown:
        raise InputError(f"held-out identit{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)} "
                         f"not among the portraits' identities ({', '.join(ids)})")
    rng = np.random.default_rng([seed, num_speakers, 0x9E0])
    heldout = np.zeros(num_speakers, bool)
    if holdout:
        train_ids = [i for i in ids if i not in holdout]
        if not train_ids:
            raise InputError(f"holding out {', '.join(holdout)} leaves no identity to train on")
        if num_speakers < 2:
            raise InputError("a held-out identity needs at least 2 speakers (one to train, one to test)")
        n_test = min(num_speakers - 1, max(1, int(np.ceil(test_fraction * num_speakers))))
        heldout[rng.permutation(num_speakers)[:n_test]] = True
        groups = {False: train_ids, True: sorted(holdout)}
    else:
        groups = {False: ids}
    offsets = {g: int(rng.integers(len(v))) for g, v in groups.items()}
    counts = {g: 0 for g in groups}
    photo_offsets = {i: int(rng.integers(len(identities[i]))) for i in ids}
    photo_counts = {i: 0 for i in ids}

    def photo(who: str) -> str:  # cycles through the person's photos
        keys = sorted(identities[who])
        key = keys[(photo_counts[who] + photo_offsets[who]) % len(keys)]
        photo_counts[who] += 1
        return str(key)

    plans = []
    for k in range(num_speakers):
        g = bool(heldout[k])
        pool = groups[g]
        main = pool[(counts[g] + offsets[g]) % len(pool)]
        counts[g] += 1
        keys = [photo(main)]
        who = [main]
        mix = 0.0
        others = [i for i in pool if i != main]
        if others and counts[g] > len(pool) and rng.random() < MORPH_PROBABILITY:
            partner = str(rng.choice(others))
            keys.append(photo(partner))
            who.append(partner)
            mix = float(rng.uniform(0.3, 0.5))
        plans.append({"sources": tuple(keys), "identities": tuple(who), "mix": mix,
                      "mirror": bool(rng.random() < 0.5), "heldout": g})
    return plans


def _portrait_speakers(seed: int, num_speakers: int, portraits, holdout, test_fraction):
    """(speakers, manifest fields) of a corpus made from portraits."""
    found = portraits_lib.find_portraits(portraits)
    name = portraits_lib.BUILTIN if portraits is None or str(portraits) == portraits_lib.BUILTIN \
        else str(Path(portraits).resolve())
    for p in found:  # fails early, in one line, on a photo without a face
        portraits_lib.prepare(p)
    identities: dict[str, list[str]] = {}
    for p in found:
        identities.setdefault(p.identity, []).append(p.key)
    plans = plan_people(seed, num_speakers, identities, tuple(holdout), test_fraction)
    speakers = [speakers_lib.make_portrait_speaker(speaker_seed(seed, k), pl["sources"], pl["identities"],
                                           pl["mix"], pl["mirror"], name)
                for k, pl in enumerate(plans, start=1)]
    fields = {
        "portraits": name,
        "portrait_identities": {p.key: p.identity for p in found},
        "holdout_identities": sorted(set(holdout)),
        "heldout_speakers": [f"s{k}" for k, pl in enumerate(plans, start=1) if pl["heldout"]],
    }
    return speakers, fields


def identity_split(manifest: dict, holdout: tuple[str, ...] | None = None) -> tuple[list[str], list[str]]:
    """(train speakers, test speakers) of a portrait corpus, split by identity.

    Test speakers are those made only of held-out identities (``holdout``, default the manifest's
    ``holdout_identities``), train speakers those with none of them; a speaker mixing both (possible
    in a corpus made without ``holdout``) is in neither, so no test identity is ever trained on.
    """
    if holdout is None:
        holdout = tuple(manifest.get("holdout_identities") or ())
    hold = set(holdout)
    if not hold:
        raise InputError("no held-out identity given or recorded in the corpus manifest")
    train, test = [], []
    for spk, d in sorted(manifest["speakers"].items(), key=lambda kv: int(kv[0][1:])):
        ids = set(d.get("identities") or ())
        if not ids:
            raise InputError(f"speaker {spk} of the corpus records no source identities "
                             f"(not made from portraits)")
        if ids <= hold:
            test.append(spk)
        elif not ids & hold:
            train.append(spk)
        else:
            logging.info("speaker %s (%s) mixes held-out and training identities: left out",
                         spk, ", ".join(sorted(ids)))
    return train, test


def generate_corpus(
    out_dir: str | os.PathLike,
    num_speakers: int,
    utterances_per_speaker: int,
    seed: int,
    size: tuple[int, int] = (360, 288),
    fps: float = 25.0,
    num_workers: int = 1,
    progress: bool = True,
    portraits: str | os.PathLike | None = None,
    holdout: tuple[str, ...] = (),
    test_fraction: float = 0.25,
    head_motion_scale: float = 1.0,
) -> dict:
    """Generates the corpus (see the module docstring for the layout).

    Args:
      out_dir: output folder (created; existing files are overwritten).
      num_speakers: N, speakers are s1..sN.
      utterances_per_speaker: M.
      seed: master seed; the output is a function of it alone.
      size: (W, H) of the video frames (even numbers).
      fps: video frame rate.
      num_workers: processes rendering utterances in parallel.
      progress: show a tqdm progress bar.
      portraits: None (every speaker a variant of the astronaut photo), "builtin" (the astronaut
        and face_recognition's photos, fetched on first use) or a folder of portraits: speakers
        are then photos, morphs and mirror images of those people (`plan_people`).
      holdout: identities (with ``portraits``) whose speakers are kept apart for testing;
        ``corpus.json`` lists them and their speakers (see `identity_split`).
      test_fraction: share of the speakers made of held-out identities.
      head_motion_scale: amplitude of all head motion (`head_motion.head_poses`): 1 = the default lively
        heads, < 1 stiller and more frontal ones (GRID-like). Recorded in ``corpus.json`` only when
        not 1, so that default corpora stay byte-identical to those made before it existed.
    Returns:
      The manifest written to ``corpus.json``.
    """
    from tqdm import tqdm

    if not head_motion_scale >= 0:
        raise InputError(f"head_motion_scale must be >= 0, got {head_motion_scale}")
    extra: dict = {}
    if portraits is not None:
        people, extra = _portrait_speakers(seed, num_speakers, portraits, holdout, test_fraction)
    elif holdout:
        raise InputError("holdout identities need portraits (e.g. portraits='builtin')")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = (int(size[0]), int(size[1]))
    speakers, jobs = {}, []
    for k in range(1, num_speakers + 1):
        spk = people[k - 1] if portraits is not None else speakers_lib.make_speaker(speaker_seed(seed, k))
        plan = plan_utterances(seed, k, utterances_per_speaker)
        speakers[f"s{k}"] = {**spk.to_dict(), "utterances": [uid for _, uid in plan]}
        for j, (words, uid) in enumerate(plan):
            jobs.append((str(out), seed, k, j, words, uid, spk.to_dict(), size, fps, float(head_motion_scale)))

    start = time.time()
    bar = tqdm(total=len(jobs), desc="synthetic corpus", unit="utt",
               disable=None if progress else True)  # None: off when not a terminal (a log file)
    results = []
    if num_workers <= 1:
        for job in jobs:
            results.append(_utterance_job(job))
            bar.update(1)
    else:
        # spawn: a clean interpreter per worker (no forked eSpeak/dlib/JAX state).
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            num_workers, mp_context=ctx, initializer=_init_worker
        ) as pool:
            for res in pool.map(_utterance_job, jobs, chunksize=1):
                results.append(res)
                bar.update(1)
    bar.close()
    elapsed = time.time() - start

    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": "thflax.synthetic.corpus",
        "seed": seed,
        "size": list(size),
        "fps": fps,
        "sample_rate": speech.SAMPLE_RATE,
        "align_units_per_second": ALIGN_UNITS_PER_SECOND,
        "num_speakers": num_speakers,
        "utterances_per_speaker": utterances_per_speaker,
        "num_utterances": len(results),
        "num_frames": int(sum(r["frames"] for r in results)),
        "pose_names": list(head_motion.POSE_NAMES),
        **extra,
        **({"head_motion_scale": float(head_motion_scale)} if head_motion_scale != 1.0 else {}),
        "speakers": speakers,
        "utterances": results,
    }
    (out / "corpus.json").write_text(json.dumps(manifest, indent=1))
    if progress:
        print(f"{len(results)} utterances, {manifest['num_frames']} frames in {elapsed:.1f} s "
              f"-> {out}")
    return manifest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--speakers", type=int, required=True)
    p.add_argument("--utterances", type=int, required=True, help="utterances per speaker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--size", default="360x288", help="WxH of the video frames")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--portraits", default=None,
                   help='"builtin" (astronaut + face_recognition\'s photos) or a folder of portraits, '
                        "one clear face each (identity = subfolder, or file name without trailing "
                        "digits); default: astronaut variants only")
    p.add_argument("--holdout", nargs="*", default=(), metavar="IDENTITY",
                   help="identities whose speakers are held out for testing (needs --portraits)")
    p.add_argument("--test_fraction", type=float, default=0.25,
                   help="share of the speakers made of held-out identities")
    p.add_argument("--head_motion_scale", type=float, default=1.0,
                   help="amplitude of all head motion: 1 = default, 0.25 = GRID-like (frontal, nearly still)")
    a = p.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    try:
        generate_corpus(a.out, a.speakers, a.utterances, a.seed, size=(w, h), fps=a.fps,
                        num_workers=a.workers, portraits=a.portraits, holdout=tuple(a.holdout),
                        test_fraction=a.test_fraction, head_motion_scale=a.head_motion_scale)
    except InputError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
