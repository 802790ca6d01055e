"""One utterance (video + speech) -> one dataset example, shared by every TFDS builder.

Steps: decode the video (resampled to the target fps by nearest frame if it differs), track dlib
landmarks, fill gaps of at most `max_gap` frames, keep the longest run of frames with a face, trim to
the frames the audio covers, compute the crop box (`crop_clip`), crop + resize the frames, express
landmarks in normalised crop coordinates, and slice MFCC windows for exactly the kept frames.

Two landmark tracks are stored: `landmarks` (Savitzky–Golay smoothed over the utterance: the training
targets, without dlib's jitter) and `landmarks_raw` (dlib's own, unsmoothed). A template must be
`landmarks_raw`: generation takes it from one photo, and a smoothed frame 0 is ~11 % made of frames
1–4 (the scored future). Both are smoothed here rather than in the tf.data element functions: the
filter then sees the whole utterance (a random training clip smoothed on its own would have filter
edges inside the utterance), and a second [T, 68, 2] float32 track is small next to the JPEG frames.

The crop box (`PrepConfig.box`): `train` examples keep one box over the whole clip (`crop.clip_box`
over all kept frames): training samples clips, templates and reference frames anywhere in the
utterance, so no frame is "the reference", and a box that holds the face in every frame keeps the
head motion the model must learn inside the crop. `validation`/`test` examples are framed as
generation frames a photo: the box from frame 0's raw landmarks alone (`crop.clip_box` of one frame,
as `thflax.inference.photo.prepare_reference`), so neither the reference crop nor the template encodes the
clip's future head motion.

Nothing is silently misaligned: every trim keeps the absolute frame index (`start_frame`) so MFCC
windows and audio are cut at the same instants as the frames, and each skip or trim has a reason that
ends up in the build report.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
from typing import Any

import numpy as np

from thflax.io import audio as audio_lib
from thflax.face import crop as crop_lib
from thflax.errors import InputError

SKIP, TRIM, OK = "skipped", "trimmed", "ok"

#: Crop box kinds (`PrepConfig.box`): one box over the whole clip, or from frame 0 alone.
BOX_CLIP, BOX_REFERENCE = "clip", "reference"
#: The splits every builder writes, and how each is framed (see the module docstring).
SPLITS = ("train", "validation", "test")
SPLIT_BOX = {"train": BOX_CLIP, "validation": BOX_REFERENCE, "test": BOX_REFERENCE}


@dataclasses.dataclass(frozen=True)
class Item:
    """An utterance to prepare: a video, its speech (None = the video's own audio track)."""

    speaker: str
    utterance: str
    video_path: str
    audio_path: str | None = None

    @property
    def key(self) -> str:
        return f"{self.speaker}/{self.utterance}"


@dataclasses.dataclass(frozen=True)
class PrepConfig:
    """Preparation parameters (stored in each builder config)."""

    crop_size: int = 256
    fps: float = 25.0
    mfcc: audio_lib.MfccConfig = audio_lib.MfccConfig()
    margin: float = crop_lib.DEFAULT_MARGIN
    lift: float = crop_lib.DEFAULT_LIFT
    smooth_window: int = 5
    max_gap: int = 2
    min_frames: int = 25
    box: str = BOX_CLIP  # BOX_CLIP (train) or BOX_REFERENCE (validation, test): see the module docstring


def split_items(items: list[Item], by: str = "utterance", test_speakers: tuple[str, ...] = (),
                test_fraction: float = 0.1, validation_fraction: float = 0.1) -> dict[str, list[Item]]:
    """Deterministic train/validation/test split: {"train": [...], "validation": [...], "test": [...]}.

    by="utterance": within each speaker, utterances are ordered by a hash of their id; the first
    ceil(10%) go to test (the paper's 9:1 test share; the same test set as before validation existed),
    the next ceil(10%) to validation, the rest to train, so every speaker has held-out utterances and
    the split does not depend on which other files exist. A speaker keeps at least one training
    utterance: with 2 utterances it gives none to validation, with 1 none to either.
    by="speaker": `test_speakers` (e.g. GRID's s29, as in ATVGnet) are test, else the first ceil(10%)
    speakers by hash; validation is ceil(10%) of each other speaker's utterances (by hash), so no test
    speaker is ever seen in training or validation.
    Each list is sorted by key.
    """
    if by == "speaker":
        speakers = sorted({it.speaker for it in items}, key=_hash)
        test = set(test_speakers) or set(speakers[: max(1, int(np.ceil(test_fraction * len(speakers))))])
        out = _split_within_speakers([it for it in items if it.speaker not in test], 0.0, validation_fraction)
        out["test"] = sorted((it for it in items if it.speaker in test), key=lambda it: it.key)
        return out
    if by != "utterance":
        raise ValueError(f"split must be 'utterance' or 'speaker', got {by!r}")
    return _split_within_speakers(items, test_fraction, validation_fraction)


def _hash(s: str) -> int:
    import zlib

    return zlib.crc32(s.encode())


def _split_within_speakers(items: list[Item], test_fraction: float,
                           validation_fraction: float) -> dict[str, list[Item]]:
    """Each speaker's utterances by hash: the first ceil(test share) to test, the next ceil(validation
    share) to validation, the rest (at least one) to train."""
    per_speaker: dict[str, list[Item]] = collections.defaultdict(list)
    for it in items:
        per_speaker[it.speaker].append(it)
    out: dict[str, list[Item]] = {split: [] for split in SPLITS}
    for spk in sorted(per_speaker):
        utts = sorted(per_speaker[spk], key=lambda it: _hash(it.key))
        n = len(utts)
        n_test = int(np.ceil(test_fraction * n)) if n > 1 else 0
        n_val = int(np.ceil(validation_fraction * n)) if n - n_test > 1 else 0
        out["test"] += utts[:n_test]
        out["validation"] += utts[n_test:n_test + n_val]
        out["train"] += utts[n_test + n_val:]
    return {split: sorted(part, key=lambda it: it.key) for split, part in out.items()}


def _resample_indices(num_frames: int, src_fps: float, dst_fps: float) -> np.ndarray:
    """Nearest source frame for each target frame, covering the same duration."""
    n = int(np.floor(num_frames / src_fps * dst_fps + 1e-6))
    return np.minimum(np.floor((np.arange(n) + 0.5) / dst_fps * src_fps).astype(np.int64), num_frames - 1)


def _load_frames(item: Item, fps: float) -> tuple[np.ndarray, float]:
    from thflax.io import video as video_lib

    frames, src_fps = video_lib.read_video(item.video_path)
    if abs(src_fps - fps) > 1e-3:
        frames = frames[_resample_indices(len(frames), src_fps, fps)]
    return frames, src_fps


def process_item(item: Item, cfg: PrepConfig, cache_dir: str | None = None) -> tuple[dict[str, Any] | None, str, str]:
    """Prepares one utterance.

    Returns:
      (example or None, status in {ok, trimmed, skipped}, reason). The example holds
      mfcc [T, W, n_mfcc] float32, landmarks and landmarks_raw [T, 68, 2] float32 (smoothed and
      unsmoothed, normalised crop coordinates), frames [T, S, S, 3] uint8, audio [T·sr/fps] int16,
      crop_box (`crop_clip`, framed as `cfg.box` says), and metadata.
    """
    from thflax.face import landmarks as lm_lib

    try:
        frames, src_fps = _load_frames(item, cfg.fps)
    except InputError as e:
        return None, SKIP, f"unreadable video: {e}"
    except Exception as e:  # noqa: BLE001 - any decoder failure means a corrupt file, not a crash
        return None, SKIP, f"unreadable video ({type(e).__name__}: {e})"
    try:
        speech = audio_lib.load_audio(item.audio_path or item.video_path, cfg.mfcc.sample_rate)
    except InputError as e:
        return None, SKIP, f"bad audio: {e}"

    raw = None
    cache_file = None
    if cache_dir:
        cache_file = os.path.join(cache_dir, item.speaker, item.utterance + ".npz")
        if os.path.exists(cache_file):
            try:
                cached = np.load(cache_file)
                if cached["raw"].shape[0] == len(frames):
                    raw = cached["raw"]
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
                raw = None
    if raw is None:
        raw = lm_lib.FaceLandmarker().track(frames)
        if cache_file:
            os.makedirs(os.path.dirname(cache_file), exist_ok=True)
            tmp = cache_file + ".tmp.npz"
            np.savez(tmp, raw=raw)
            os.replace(tmp, cache_file)

    reasons = []
    lm, valid = lm_lib.fill_gaps(raw, cfg.max_gap)
    n_missing = int((~valid).sum())
    start, end = lm_lib.longest_valid_run(valid)
    if n_missing:
        reasons.append(f"no face in {n_missing}/{len(frames)} frames")
    audio_frames = audio_lib.num_video_frames(speech.size, cfg.fps, cfg.mfcc.sample_rate)
    if audio_frames < end:
        reasons.append(f"audio covers {audio_frames} of {len(frames)} frames")
        end = min(end, audio_frames)
    if end - start < cfg.min_frames:
        why = "; ".join(reasons) or f"only {len(frames)} frames"
        return None, SKIP, f"{why}: fewer than {cfg.min_frames} usable frames"

    clip = crop_clip(frames[start:end], lm[start:end], cfg)
    feats = audio_lib.mfcc(speech, cfg.mfcc)
    windows = audio_lib.frame_windows(feats, end - start, cfg.fps, cfg.mfcc, start_frame=start)
    spf = cfg.mfcc.sample_rate / cfg.fps
    a0, a1 = int(round(start * spf)), int(round(end * spf))
    pcm = np.clip(np.round(speech[a0:a1] * 32767), -32768, 32767).astype(np.int16)
    example = {
        "mfcc": windows.astype(np.float32),
        **clip,
        "audio": pcm,
        "fps": np.float32(cfg.fps),
        "speaker": item.speaker,
        "utterance": item.utterance,
        "start_frame": np.int32(start),
    }
    if reasons:
        return example, TRIM, "; ".join(reasons)
    return example, OK, ""


def crop_clip(frames: np.ndarray, landmarks: np.ndarray, cfg: PrepConfig) -> dict[str, np.ndarray]:
    """The crops and landmark tracks of a clip's kept frames, framed as `cfg.box` says.

    Args:
      frames: [T, H, W, 3] uint8 video frames.
      landmarks: [T, 68, 2] dlib landmarks in frame pixels (gaps filled), unsmoothed; frame 0 is a
        detected face (a kept run starts at one).
    Returns:
      frames [T, S, S, 3] uint8; landmarks (smoothed) and landmarks_raw [T, 68, 2] float32 in
      normalised crop coordinates; crop_box [3] float32 (x0, y0, side) in frame pixels. With
      BOX_REFERENCE, crop_box, frames[0] and landmarks_raw[0] depend on frame 0 alone.
    """
    from thflax.face import landmarks as lm_lib

    raw = np.asarray(landmarks, np.float32)
    smoothed = lm_lib.smooth(raw, cfg.smooth_window)
    if cfg.box == BOX_REFERENCE:
        # As thflax.inference.photo.prepare_reference frames a photo: the same function on one face's landmarks.
        box = crop_lib.clip_box(raw[0], cfg.margin, cfg.lift)
    elif cfg.box == BOX_CLIP:
        box = crop_lib.clip_box(smoothed, cfg.margin, cfg.lift)
    else:
        raise ValueError(f"PrepConfig.box must be {BOX_CLIP!r} or {BOX_REFERENCE!r}, got {cfg.box!r}")
    return {
        "frames": np.stack([crop_lib.crop(f, box, cfg.crop_size) for f in frames]),
        "landmarks": box.to_crop(smoothed).astype(np.float32),
        "landmarks_raw": box.to_crop(raw).astype(np.float32),
        "crop_box": np.array([box.x0, box.y0, box.side], np.float32),
    }


def process_job(job: tuple[Item, PrepConfig, str | None]):
    """`process_item` for a worker pool: job = (item, config, cache_dir) -> (item, result)."""
    item, cfg, cache_dir = job
    return item, process_item(item, cfg, cache_dir)


class BuildReport:
    """Counts and reasons for one split, written as JSON next to the prepared data."""

    def __init__(self, split: str):
        self.split = split
        self.counts: collections.Counter = collections.Counter()
        self.reasons: dict[str, str] = {}

    def add(self, item: Item, status: str, reason: str) -> None:
        self.counts[status] += 1
        if status != OK:
            self.reasons[item.key] = f"{status}: {reason}"
            log = logging.warning if status == SKIP else logging.info
            log("%s %s: %s", status, item.key, reason)

    def as_dict(self) -> dict[str, Any]:
        return {"split": self.split, "counts": dict(self.counts), "reasons": self.reasons}

    def write(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(self.as_dict(), f, indent=1, sort_keys=True)
