"""End-to-end evaluation as in the paper (§4, Table 2): speech + a reference frame -> video vs the real one.

Protocol, per held-out utterance (the dataset's `test` split; `validation` for tuning):
  1. reference = the utterance's first frame and its unsmoothed dlib landmarks (`landmarks_raw[0]`,
     the template), the crop framed from that frame alone: exactly what generation makes of a photo
     (`thflax.inference.photo.prepare_reference`). Nothing of frames 1… reaches the model: the stored
     `landmarks` are smoothed over time (frame 0's would be ~11 % frames 1–4), and a box over the
     whole clip would encode its future head motion; `check_reference_framing` refuses such examples
     (e.g. of the `train` split, whose crops use one box per clip);
  2. STL predicts landmarks for every frame from the utterance's MFCC windows (GRU over the whole
     utterance); LTV renders every frame from the reference and the predicted landmarks;
  3. frame by frame against the real crops, leaving out frame 0 (the reference itself):
     * SSIM and PSNR on colour frames at the dataset's crop size (`thflax.measures.metrics`; SSIM with
       Wang et al.'s Gaussian window), averaged over frames, then over utterances;
     * LMD: dlib's 68 landmarks are tracked on the generated frames and on the real frames, both
       resized to `eval_size` (256) px; mouth points 48–67, each shape mean-centred, mean point
       distance in pixels at 256 (`lmd`), and ATVGnet's variant that sums over the 20 points
       (`lmd_sum`). Frames where dlib finds no face are left out and counted (`detected`);
     * head motion: LMD over the non-mouth points 0–47 without centring (`lmd_head`, position
       matters), and the ratio of the mean frame-to-frame speed of those points in the generated
       video to the real one (`head_speed_ratio`: 1 = as lively as the real head, 0 = frozen);
     * `lmd_stl`: mouth LMD of the STL landmarks themselves against the real frames' dlib
       landmarks (no rendering involved), also at 256 px;
     * `psnr_lips`: PSNR inside the real frame's outer-lip polygon (dlib's 48–59 on the real frame), where
       a warp of the reference cannot show what an open mouth holds;
  4. lip sync, since LMD alone misses timing (a mouth that moves right but late scores a middling
     LMD): the inner-mouth opening per frame measured by dlib on the generated video
     (`face_measures.mouth_openings`: inner-lip gap over mouth width, frames without a face
     interpolated) against the speech energy per frame (`face_measures.speech_energy`: RMS in dB) of
     the utterance's audio, over the same frames 1… as above. `sync_offset` is the shift within ±5
     frames that maximises their Pearson correlation (positive: the video lags the audio), `sync_r`
     that correlation and `sync_r0` the one at no shift (`face_measures.lip_sync`); all three are
     undefined (NaN) for a still mouth. Next to it, with a lip-sync expert (`expert`: SyncNet,
     `thflax.measures.lip_sync_expert`), LSE-D, LSE-C and the expert's offset (±15 frames) over the same
     frames 1… of the crops: the field's measures, computed as syncnet_python does. The expert trained
     here (`thflax.training.syncnet_stage`) is named under the table (`lip_sync_expert.note`); its
     figures are comparable within a table, not with papers, which use the public weights (loadable
     where a user has them: `thflax.inference.syncnet_weights`).
  5. the inside of the mouth (`face_measures.mouth_interior`, frames 1…, dlib's landmarks on each video):
     inner-mouth contrast (luminance std inside the inner lips) and teeth brightness (99th percentile there
     minus the outer lips' median), with the mouth scaled to 64 px wide, median over the video's own
     open-mouth frames (top quarter of its openings, at least 0.05 of the mouth width). The table shows
     them over the real video's: `mouth_contrast_ratio`, `teeth_ratio` (1 for the real row by
     construction; NaN, a blank cell, when either video's mouth never opens, e.g. a copied closed mouth);
     per utterance the absolute values and the reason for a NaN are kept (`mouth_contrast`,
     `teeth_brightness`, `…_truth`, `mouth_reason`, `mouth_reason_truth`).
Rows with `kind="reference"` copy the reference frame to every frame; `kind="template"` feeds the
template landmarks (no speech) through the model's LTV: floors every number can be read against.
Their lip-sync r is usually not NaN but chance: dlib's tracking jitters on a still face (on 30 copies of
one 256 px face the points alternate by a pixel, opening std ~0.02 of the mouth width), and the best of
11 shifts of that noise can correlate with the speech. Rows with `kind="real"` measure the real video
itself: the ceiling of the lip-sync columns and of `detected` (dlib on the real frames, tracked once
per utterance for the LMDs anyway); their SSIM, PSNR, LMD and head cells are blank, as comparisons of
the real video with itself would be trivially perfect.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from thflax.measures import face_measures, metrics
from thflax.errors import InputError

EVAL_SIZE = 256

#: The rows `run_table` adds before the models': the ceiling, then the floors (the orderings over seeds
#: find the floors by these names).
REAL_ROW = "Real video (ceiling)"
FLOOR_ROWS = ("Reference frame (copied)", "Template landmarks (no speech)")


@dataclasses.dataclass
class Row:
    name: str
    models: Any = None  # thflax.inference.networks.Models
    kind: str = "model"  # "model" | "reference" | "template" | "real" (see the module docstring)


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frames.shape[1] == size:
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in frames])


def _track(frames: np.ndarray, landmarker) -> np.ndarray:
    """dlib landmarks [T, 68, 2] (NaN where no face) in pixels of the given frames."""
    return landmarker.track(frames)


def _masked_lmd(pred, true, **kw) -> float:
    ok = np.all(np.isfinite(pred), axis=(1, 2)) & np.all(np.isfinite(true), axis=(1, 2))
    if not ok.any():
        return float("nan")
    return float(metrics.lmd(pred[ok], true[ok], **kw))


def head_speed(lm: np.ndarray) -> float:
    """Mean frame-to-frame speed of the non-mouth points 0–47 of landmarks [T, 68, 2] (their units per
    frame; pairs with a NaN frame left out); NaN with no such pair."""
    pts = lm[:, metrics.NON_MOUTH]
    d = np.linalg.norm(np.diff(pts, axis=0), axis=-1).mean(-1)
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


def _sample_rate(ex: dict[str, Any]) -> int:
    """The audio's sample rate: an example's audio is cut to exactly its T frames, T·rate/fps samples."""
    return int(round(ex["audio"].shape[0] * float(ex["fps"]) / ex["frames"].shape[0]))


def _to_frame_px(lm256: np.ndarray, eval_size: int, size: int) -> np.ndarray:
    """Landmarks tracked on frames resized to `eval_size` -> pixels of the `size`-px frames (`_resize`'s
    cv2.resize maps a pixel centre x to (x + 0.5)·scale - 0.5)."""
    return (np.asarray(lm256, np.float64) + 0.5) * (size / eval_size) - 0.5


def mouth_figures(frames: np.ndarray, lm256: np.ndarray, eval_size: int = EVAL_SIZE, first: int = 1) -> dict[str, Any]:
    """Inner-mouth contrast and teeth brightness of a video (`face_measures.mouth_interior`) over frames
    `first`…, from its dlib landmarks at `eval_size` px.

    Args:
      frames: [T, S, S, 3] uint8; lm256: [T, 68, 2] at `eval_size` px, NaN where no face.

    Returns:
      {"mouth_contrast", "teeth_brightness", "mouth_open_frames", "mouth_reason"} (NaN and a reason when
      the mouth never opens or no face is found).
    """
    lm = _to_frame_px(lm256[first:], eval_size, frames.shape[1])
    return face_measures.mouth_interior(frames[first:], lm)


def _ratio(a: float, b: float) -> float:
    return a / b if np.isfinite(a) and np.isfinite(b) and b != 0 else float("nan")


def _mouth_columns(gen: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    """The generated video's mouth figures, the real video's, and their ratios (the table's columns)."""
    return {"mouth_contrast": gen["mouth_contrast"], "teeth_brightness": gen["teeth_brightness"],
            "mouth_reason": gen["mouth_reason"],
            "mouth_contrast_truth": truth["mouth_contrast"], "teeth_brightness_truth": truth["teeth_brightness"],
            "mouth_reason_truth": truth["mouth_reason"],
            "mouth_contrast_ratio": _ratio(gen["mouth_contrast"], truth["mouth_contrast"]),
            "teeth_ratio": _ratio(gen["teeth_brightness"], truth["teeth_brightness"])}


def lips_psnr(gen: np.ndarray, true: np.ndarray, true_lm256: np.ndarray, eval_size: int = EVAL_SIZE) -> float:
    """PSNR inside the real frames' outer-lip polygon (dlib's points 48–59), mean over the frames where dlib
    found the real face; NaN when none. Frames [T, S, S, 3], landmarks [T, 68, 2] at `eval_size` px."""
    ok = np.all(np.isfinite(true_lm256), axis=(1, 2))
    if not ok.any():
        return float("nan")
    size = true.shape[1]
    # polygon_mask takes coordinates over the image's side with pixel centres at (i + 0.5) / size.
    lips = (_to_frame_px(true_lm256[ok][:, metrics.OUTER_LIP], eval_size, size) + 0.5) / size
    mask = metrics.polygon_mask(lips, size)[..., None]
    return float(np.mean(metrics.masked_psnr(gen[ok].astype(np.float32), true[ok].astype(np.float32), mask)))


def lip_sync_figures(landmarks: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int, first: int = 1,
                     max_offset: int = 5) -> dict[str, float]:
    """How well and how late the mouth follows the speech: opening of the landmarks vs speech energy.

    Args:
      landmarks: [T, 68, 2] dlib landmarks of the video (any pixel scale: the opening is over the mouth
        width), NaN where no face; frames without one are interpolated (`face_measures.fill_missing`).
      audio: [T·sample_rate/fps] the speech of the same T frames, int16 or float.
      first: frames before it are left out (1: frame 0, the reference, as the other metrics do); the
        energy is computed on the whole audio first, so frame t keeps its own energy.
      max_offset: shifts tried, in frames.

    Returns:
      {"sync_r": r at the best offset, "sync_offset": that offset in frames (+ = the video lags the
      audio), "sync_r0": r at offset 0}; all NaN when the opening or the energy is constant (a still
      mouth, silence) or no frame has a face.
    """
    t = landmarks.shape[0]
    speech = np.asarray(audio)
    if speech.dtype == np.int16:
        speech = speech.astype(np.float32) / 32768.0
    energy = face_measures.speech_energy(speech, sample_rate, fps, t)[first:]
    opening = face_measures.fill_missing(face_measures.mouth_openings(landmarks[first:]))
    offset, r, r0 = face_measures.lip_sync(opening, energy, max_offset)
    # lip_sync reports offset 0 when no correlation is defined: NaN here, so that a still mouth does not
    # count as "in sync" in the summary.
    return {"sync_r": r, "sync_offset": offset if np.isfinite(r) else float("nan"), "sync_r0": r0}


def check_reference_framing(ex: dict[str, Any], atol: float = 1e-3) -> None:
    """InputError unless `ex` is framed as generation frames a photo: its crop box is
    `crop.clip_box` of frame 0's raw landmarks alone (dataset version 2.0.0+, validation/test splits).

    The box is recovered from the example itself: frame 0's raw landmarks back in frame pixels
    (`landmarks_raw[0]` ∘ `crop_box`) must give `crop_box` again, to `atol` × its side.
    """
    from thflax.face import crop

    name = f"{ex.get('speaker', '?')}/{ex.get('utterance', '?')}"
    if "landmarks_raw" not in ex:
        raise InputError(f"utterance {name} has no unsmoothed landmarks (landmarks_raw): the dataset was "
                         f"prepared by an older version; prepare it again")
    x0, y0, side = (float(v) for v in ex["crop_box"])
    box = crop.CropBox(x0, y0, side)
    again = crop.clip_box(box.to_frame(ex["landmarks_raw"][0]))
    if not np.allclose([again.x0, again.y0, again.side], [x0, y0, side], rtol=0, atol=atol * side):
        raise InputError(f"utterance {name} is not framed from its first frame alone (a training-split "
                         f"example?): evaluate on 'test' or 'validation'")


def expert_figures(expert, frames: np.ndarray, ex: dict[str, Any], first: int = 1) -> dict[str, float]:
    """LSE-D, LSE-C and the offset of crops [T, S, S, 3] (a row's video of utterance `ex`) from frame `first`
    on, with the utterance's MFCC windows and samples from that frame on; NaN without an expert."""
    if expert is None:
        return {"lse_d": float("nan"), "lse_c": float("nan"), "lse_offset": float("nan")}
    spf = ex["audio"].shape[0] // frames.shape[0]  # samples per frame (the audio is cut to the T frames)
    return expert.measure(frames[first:], mfcc=ex["mfcc"][first:], audio=ex["audio"][first * spf:],
                          sample_rate=_sample_rate(ex), fps=float(ex["fps"]))


def evaluate_utterance(row: Row, ex: dict[str, Any], landmarker, true_lm256: np.ndarray | None = None,
                       eval_size: int = EVAL_SIZE, batch: int = 16, expert=None) -> dict[str, Any]:
    """Metrics of one row on one utterance (see the module docstring).

    `true_lm256`: [T, 68, 2] dlib landmarks of the real frames at `eval_size` px (tracked when None).
    `expert`: a `lip_sync_expert.Expert` for the LSE columns (NaN without one).
    """
    from thflax.inference import networks

    frames = ex["frames"]  # [T, S, S, 3] uint8
    t = frames.shape[0]
    if true_lm256 is None:
        true_lm256 = _track(_resize(frames, eval_size), landmarker)
    true_mouth = mouth_figures(frames, true_lm256, eval_size)
    if row.kind == "real":
        # The ceiling: the real video's own lip sync, face detection and mouth (ratios 1 by construction);
        # comparisons with itself are left out (blank cells) rather than reported as perfect.
        return {"utterance": f"{ex['speaker']}/{ex['utterance']}", "frames": int(t),
                "detected": float(np.mean(np.all(np.isfinite(true_lm256[1:]), axis=(1, 2)))),
                **lip_sync_figures(true_lm256, ex["audio"], float(ex["fps"]), _sample_rate(ex)),
                **expert_figures(expert, frames, ex), **_mouth_columns(true_mouth, true_mouth)}
    template = ex["landmarks_raw"][0]  # [68, 2]: dlib's, as generation takes it from a photo
    pred_lm = None
    if row.kind == "reference":
        gen = np.repeat(frames[:1], t, 0)
    else:
        if row.kind == "template":
            pred_lm = np.repeat(template[None], t, 0)
            chunks = [pred_lm]
        else:
            chunks = list(networks.predict_landmarks(row.models, ex["mfcc"], template))
            pred_lm = np.concatenate(chunks)
        gen = np.stack([img for img, _ in networks.render_frames(row.models, frames[0], template, chunks, batch)])
    # Frame 0 is the reference itself: it is generated but left out of every average (PSNR of a copied
    # frame would be infinite).
    gen_f, true_f = gen[1:].astype(np.float32), frames[1:].astype(np.float32)
    ssim = float(np.mean(metrics.ssim(gen_f, true_f)))
    psnr = float(np.mean(metrics.psnr(gen_f, true_f)))
    gen_lm = _track(_resize(gen, eval_size), landmarker)
    sync = lip_sync_figures(gen_lm, ex["audio"], float(ex["fps"]), _sample_rate(ex))  # leaves out frame 0 itself
    mouth = _mouth_columns(mouth_figures(gen, gen_lm, eval_size), true_mouth)
    psnr_lips = lips_psnr(gen[1:], frames[1:], true_lm256[1:], eval_size)
    gen_lm, true_lm256 = gen_lm[1:], true_lm256[1:]
    detected = float(np.mean(np.all(np.isfinite(gen_lm), axis=(1, 2))))
    out = {"utterance": f"{ex['speaker']}/{ex['utterance']}", "frames": int(t), "ssim": ssim, "psnr": psnr,
           "psnr_lips": psnr_lips,
           "lmd": _masked_lmd(gen_lm, true_lm256), "lmd_sum": _masked_lmd(gen_lm, true_lm256, reduce="sum"),
           "lmd_head": _masked_lmd(gen_lm, true_lm256, points=metrics.NON_MOUTH, center=False),
           "head_speed_ratio": head_speed(gen_lm) / max(head_speed(true_lm256), 1e-6),
           "detected": detected, **sync, **expert_figures(expert, gen, ex), **mouth}
    if pred_lm is not None:
        out["lmd_stl"] = _masked_lmd(pred_lm[1:] * eval_size, true_lm256)
    return out


def evaluate(rows: list[Row], utterances, max_utterances: int | None = None, eval_size: int = EVAL_SIZE,
             progress: bool = True, expert=None) -> dict[str, list[dict[str, Any]]]:
    """Per-utterance results for every row: {row name: [per-utterance dict, ...]} (LSE columns with `expert`)."""
    from tqdm import tqdm

    from thflax.face import landmarks

    landmarker = landmarks.FaceLandmarker()
    results: dict[str, list] = {r.name: [] for r in rows}
    exs = list(utterances)[:max_utterances] if max_utterances else list(utterances)
    for ex in exs:  # before any work
        check_reference_framing(ex)
    for ex in tqdm(exs, desc="evaluating", unit="utt", disable=None if progress else True):  # None: off when not a terminal
        true_lm = _track(_resize(ex["frames"], eval_size), landmarker)
        for r in rows:
            results[r.name].append(evaluate_utterance(r, ex, landmarker, true_lm, eval_size, expert=expert))
    return results


COLUMNS = (("LMD", "lmd", 2), ("SSIM", "ssim", 3), ("PSNR", "psnr", 2), ("lips PSNR", "psnr_lips", 2),
           ("LMD (sum, ATVGnet)", "lmd_sum", 1),
           ("head LMD", "lmd_head", 2), ("head speed ratio", "head_speed_ratio", 2), ("STL mouth LMD", "lmd_stl", 2),
           ("sync r", "sync_r", 2), ("sync offset", "sync_offset", 1), ("sync r @0", "sync_r0", 2),
           ("LSE-D", "lse_d", 2), ("LSE-C", "lse_c", 2), ("LSE offset", "lse_offset", 1),
           ("mouth contrast / truth", "mouth_contrast_ratio", 2), ("teeth / truth", "teeth_ratio", 2),
           ("dlib found face", "detected", 2))

#: Summarised (summary.json) but not printed: the absolute mouth figures behind the two ratio columns.
EXTRA_KEYS = ("mouth_contrast", "teeth_brightness", "mouth_contrast_truth", "teeth_brightness_truth")

#: Summarised by the median over utterances, not the mean: the best of 11 shifts on a short clip can land
#: on ±5 by chance, and one such utterance would drag a mean of whole-frame offsets.
MEDIAN_KEYS = frozenset({"sync_offset", "lse_offset"})


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Mean over utterances of each metric (median for `MEDIAN_KEYS`), per row; NaNs (no face found in any
    frame, a still mouth) and nulls skipped, NaN when nothing is left."""
    out = {}
    for name, utts in results.items():
        row = {}
        for key in [k for _, k, _ in COLUMNS] + list(EXTRA_KEYS):
            vals = [u[key] for u in utts if u.get(key) is not None and np.isfinite(u[key])]
            reduce = np.median if key in MEDIAN_KEYS else np.mean
            row[key] = float(reduce(vals)) if vals else float("nan")
        row["utterances"] = len(utts)
        out[name] = row
    return out


def markdown_table(summary: dict[str, dict[str, float]]) -> str:
    """The paper's Table 2 layout (Method | LMD | SSIM | PSNR) plus our extra columns."""
    def cell(v, digits: int) -> str:
        return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"

    return markdown_rows(summary, cell)


def markdown_rows(rows: dict[str, dict[str, Any]], cell: Callable[[Any, int], str]) -> str:
    """Method | one column per `COLUMNS` entry; `cell(row[key], digits)` writes each cell (the layout
    `markdown_table` and the tables over seeds share)."""
    head = "| Method | " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    sep = "|---|" + "|".join("---:" for _ in COLUMNS) + "|"
    lines = [head, sep]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(row.get(key), digits) for _, key, digits in COLUMNS) + " |")
    return "\n".join(lines)


def _strict(x):
    """`x` with every non-finite float (an undefined metric: NaN) as None, i.e. JSON null."""
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _nan_for_null(x):
    if isinstance(x, dict):
        return {k: _nan_for_null(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_for_null(v) for v in x]
    return float("nan") if x is None else x


def write_json(path: str, obj) -> None:
    """Strict JSON (RFC 8259: no bare NaN/Infinity): undefined metrics are written as null."""
    with open(path, "w") as f:
        json.dump(_strict(obj), f, indent=1, allow_nan=False)


def read_json(path: str):
    """summary.json / per_utterance.json as written, with null metrics back as NaN (files from
    before null was used, with bare NaN, read the same)."""
    with open(path) as f:
        return _nan_for_null(json.load(f))


def write_results(workdir: str, results, summary, table: str) -> dict[str, str]:
    """table2.md, per_utterance.json and summary.json in `workdir` (JSON: undefined metrics are null)."""
    os.makedirs(workdir, exist_ok=True)
    paths = {"table": os.path.join(workdir, "table2.md"), "per_utterance": os.path.join(workdir, "per_utterance.json"),
             "summary": os.path.join(workdir, "summary.json")}
    with open(paths["table"], "w") as f:
        f.write(table + "\n")
    write_json(paths["per_utterance"], results)
    write_json(paths["summary"], summary)
    return paths


def run_table(models: list[tuple[str, Any]], utterances, out_dir: str, max_utterances: int | None = None,
              trivial_rows: bool = True, progress: bool = True, template_models: Any = None,
              expert=None) -> tuple[dict[str, dict[str, float]], str, dict[str, str]]:
    """Table 2 for (name, `networks.Models`) rows, with the ceiling and floor rows first unless
    `trivial_rows` is off.

    The ceiling: the real video (lip-sync and face-detection columns only). The floors: the reference
    frame copied to every frame, and an LTV on the template landmarks (no speech): `template_models`',
    default the first row's. `expert` (a `lip_sync_expert.Expert`) fills the LSE columns; the table ends
    with the line saying which expert that was. Writes table2.md, summary.json and per_utterance.json to
    `out_dir`; returns (summary, markdown table, paths).
    """
    from thflax.measures import lip_sync_expert

    rows = [Row(name, m) for name, m in models]
    if trivial_rows:
        rows = [Row(REAL_ROW, kind="real"), Row(FLOOR_ROWS[0], kind="reference"),
                Row(FLOOR_ROWS[1], template_models or models[0][1], kind="template")] + rows
    results = evaluate(rows, utterances, max_utterances, progress=progress, expert=expert)
    summary = summarize(results)
    table = markdown_table(summary) + "\n\n" + lip_sync_expert.note(expert)
    return summary, table, write_results(out_dir, results, summary, table)
