"""Does a trained model keep the person, move the lips with the speech and stay sharp on new photos?

    python benchmarks/identity.py --checkpoint runs/demo --out_dir runs/demo/identity
    python benchmarks/identity.py --out_dir runs/shipped_identity     (the shipped model: its MODEL_CARD.md figures)
    python benchmarks/identity.py --checkpoint runs/demo/export --photos a.jpg,b.jpg --out_dir DIR \\
        [--voice VOICE --rate WORDS_PER_MIN --pitch 0..100] [--text "..."]

For each photo, the sentence --text is spoken offline with eSpeak NG, the video is generated from the
whole photo (`thflax.inference.generation.generate`) and measured against the photo and the speech
(`thflax.measures.face_measures.measure_video`, dlib only):
  identity distance   dlib face descriptor distance photo vs frames, median (goal < 0.6, dlib's
                      same-person threshold);
  lip-sync r, offset  Pearson r of the mouth opening with the speech energy at the best shift within
                      ±--max_offset frames (goal > 0.3), the shift (+ = the video lags the audio) and
                      r at no shift;
  opening std         spread of the inner-mouth opening / mouth width over time (goal > 0.02);
  sharpness ratio     variance of the Laplacian in the face vs the photo's, at one face size
                      (goal >= 0.35);
  CPBD, CPBD ratio    the face's CPBD sharpness (the `cpbd` package, as papers report it; median of 12
                      frames) and its ratio to the photo's;
  LSE-D, LSE-C        SyncNet's distance and confidence (±15 frames) and its offset, with the lip-sync
                      expert --syncnet names (default: the checkpoint's own, <checkpoint>/syncnet, which
                      demo.py trains; blank without one). An expert trained here is not the public
                      weights: its figures compare the rows, not papers' (the line under the table says
                      which expert);
  mouth contrast      std of the luminance (0-255) inside the inner lips, mouth scaled to 64 px wide,
                      median over the open-mouth frames (top quarter of the openings); no goal yet;
  teeth               99th percentile of that luminance minus the outer lips' median: white teeth
                      ~100+, a pink smear ~0 or below. Both "n/a" when the mouth never opens; the
                      photo's own values (its mouth as one frame; n/a when closed) are printed under
                      the table.
  head motion         std of the nose tip's position over the video, % of the inter-ocular distance
                      (outer eye corners); ~0 for the copied photo.
  blinks / min,       blinks dlib's eye aspect ratio finds (under 0.6 of the video's median), per
  blink frames        minute, and the median blink's length in frames (n/a without one); generation
                      plans 15 a minute by default, fewer on a short clip by chance.
Each photo also gets a "copied photo" row: a still video of the photo with the same speech, which
keeps the identity (distance ~0) and the sharpness (~1) but has no mouth motion (opening std ~0,
r undefined or chance): the scale the model's row is read against. Read the lip-sync r with the
opening std: dlib's jitter on a still mouth correlates with the speech by chance, more so on short
clips (the copied-photo row shows how much).

Default photos: those of the identity the many-person corpus holds out of training ("biden", from
`thflax.synthetic.portraits.builtin_portraits`, fetched with pip on first use). Default speech: a
voice, rate and pitch the synthetic corpus never uses — its speakers draw from
`thflax.io.speech.VOICES` at 130..210 words per minute and pitch 26..74; the default here is
the Welsh-English voice en-gb-x-gbcwmd at 125 words per minute and pitch 80.

Writes to --out_dir: NAME.mp4 (the generated video of each photo), NAME.json (its measures and the
copied-photo floor's; strict JSON, undefined values null) and identity.md (the table, also printed).
Bad inputs (a missing photo, a photo without a face, a bad checkpoint) print one line and exit 2.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from thflax import cli  # noqa: E402
from thflax.errors import InputError, OutputError  # noqa: E402

#: The identity the many-person corpus holds out of training (input_pipeline/synthetic.py, PeopleConfig).
HELD_OUT = "biden"
#: What the synthetic corpus speaks with (thflax/synthetic/speakers.py make_speaker, corpus.py): every voice
#: of speech.VOICES, rates 140..200 ±8 clipped to 130..210, pitches 30..70 ±4.
TRAIN_RATES = (130, 210)
TRAIN_PITCHES = (26, 74)
DEFAULT_VOICE, DEFAULT_RATE, DEFAULT_PITCH = "en-gb-x-gbcwmd", 125, 80
DEFAULT_TEXT = "Please call Stella. Ask her to bring these things with her from the store."

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Training workdir or export bundle (default: the shipped model, "
                    "thflax/assets/model, whose MODEL_CARD.md holds this benchmark's figures).")
flags.DEFINE_list("photos", None, f"Photos to animate (comma-separated). Default: the held-out identity's "
                  f"({HELD_OUT}) photos of the built-in portraits.")
flags.DEFINE_string("out_dir", None, "Where to write the videos, NAME.json and identity.md.")
flags.DEFINE_string("text", DEFAULT_TEXT, "The sentence to speak.")
flags.DEFINE_string("voice", DEFAULT_VOICE, "eSpeak NG voice. The default (Welsh English) is not among the "
                    "training corpus's voices (thflax.io.speech.VOICES).")
flags.DEFINE_integer("rate", DEFAULT_RATE, f"Words per minute (80..450). The default is below the corpus's "
                     f"{TRAIN_RATES[0]}..{TRAIN_RATES[1]}.")
flags.DEFINE_integer("pitch", DEFAULT_PITCH, f"Base pitch (0..100). The default is above the corpus's "
                     f"{TRAIN_PITCHES[0]}..{TRAIN_PITCHES[1]}.")
flags.DEFINE_integer("every", 5, "Identity and sharpness use every N-th frame.", lower_bound=1)
flags.DEFINE_integer("max_offset", 5, "Lip-sync shifts tried, in frames (±).", lower_bound=0)
flags.DEFINE_bool("floor", True, "Add a 'copied photo' row per photo (a still video of the photo).")
flags.DEFINE_string("syncnet", None, "Lip-sync expert for the LSE columns: a workdir or bundle with one, or converted "
                    "public SyncNet weights (default: --checkpoint's own, if it has one).")
flags.DEFINE_bool("compilation_cache", True, "Keep compiled programs in $THFLAX_CACHE_DIR (as generate.py).")
flags.mark_flags_as_required(["out_dir"])

#: Table columns: (header, key in measure_video's result, format).
COLUMNS = (
    ("identity distance (< 0.6)", "identity_distance", "{:.3f}"),
    ("lip-sync r (> 0.3)", "lip_sync_corr", "{:.3f}"),
    ("offset (frames)", "lip_sync_offset", "{:+d}"),
    ("r at 0", "lip_sync_corr_at_0", "{:.3f}"),
    ("opening std (> 0.02)", "opening_std", "{:.4f}"),
    ("sharpness ratio (>= 0.35)", "sharpness_ratio", "{:.2f}"),
    ("CPBD", "cpbd", "{:.3f}"),
    ("CPBD ratio", "cpbd_ratio", "{:.2f}"),
    ("LSE-D", "lse_d", "{:.2f}"),
    ("LSE-C", "lse_c", "{:.2f}"),
    ("LSE offset", "lse_offset", "{:+.0f}"),
    ("mouth contrast", "mouth_contrast", "{:.1f}"),
    ("teeth", "teeth_brightness", "{:.1f}"),
    ("head motion (% IOD)", "head_motion_percent", "{:.1f}"),
    ("blinks / min", "blinks_per_minute", "{:.0f}"),
    ("blink frames", "blink_frames", "{:.0f}"),
)


def default_photos() -> list[str]:
    """The held-out identity's photos of the built-in portraits; InputError when they cannot be had."""
    from thflax.synthetic import portraits

    found = [p.path for p in portraits.builtin_portraits() if p.identity == HELD_OUT and p.path]
    if not found:
        raise InputError(f"the held-out identity's photos ({HELD_OUT}) could not be fetched "
                         f"({portraits.FACE_RECOGNITION_SPEC} via pip); give --photos")
    return found


def speech_seen_in_training(voice: str, rate: int, pitch: int) -> list[str]:
    """Which of voice, rate and pitch the synthetic corpus also uses (empty: all new)."""
    from thflax.io import speech

    seen = []
    if voice.split("+")[0].lower() in {v.split("+")[0] for v in speech.VOICES}:
        seen.append(f"voice {voice}")
    if TRAIN_RATES[0] <= rate <= TRAIN_RATES[1]:
        seen.append(f"rate {rate}")
    if TRAIN_PITCHES[0] <= pitch <= TRAIN_PITCHES[1]:
        seen.append(f"pitch {pitch}")
    return seen


def row_names(photos: list[str]) -> list[str]:
    """A distinct file-name stem per photo (a repeated stem gets _2, _3 ...)."""
    names, used = [], set()
    for path in photos:
        stem = os.path.splitext(os.path.basename(path))[0] or "photo"
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        names.append(name)
    return names


def _cell(value, fmt: str) -> str:
    import math

    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return fmt.format(value)


def markdown_table(rows: list[tuple[str, str, dict]]) -> str:
    """Rows (photo, video kind, measures) as a markdown table with a 'goals met' column."""
    from thflax.measures import face_measures

    lines = ["| photo | video | " + " | ".join(h for h, _, _ in COLUMNS) + " | frames with face | goals met |",
             "|---|---|" + "---:|" * (len(COLUMNS) + 2)]
    for photo, kind, m in rows:
        cells = [_cell(m.get(key), fmt) for _, key, fmt in COLUMNS]  # LSE only with an expert
        met = [face_measures.meets_goal(k, m[k]) for k in face_measures.GOALS]
        goals = f"{sum(bool(x) for x in met)}/{len(met)}" if kind == "generated" else "-"
        faces = f"{m['frames_with_face']}/{m['frames']}"
        lines.append(f"| {photo} | {kind} | " + " | ".join(cells) + f" | {faces} | {goals} |")
    return "\n".join(lines)


def photo_mouth_lines(rows: list[tuple[str, str, dict]]) -> str:
    """One line per photo: its own mouth contrast and teeth (the photo as one frame), what a video of it
    keeps at best, or why there is none (a closed mouth)."""
    lines, seen = [], set()
    for photo, _, m in rows:
        if photo in seen:
            continue
        seen.add(photo)
        if m.get("photo_mouth_reason"):
            lines.append(f"{photo} itself: mouth contrast and teeth n/a ({m['photo_mouth_reason']})")
        else:
            lines.append(f"{photo} itself: mouth contrast {_cell(m['photo_mouth_contrast'], '{:.1f}')}, "
                         f"teeth {_cell(m['photo_teeth_brightness'], '{:.1f}')}")
    return "\n".join(lines)


def still_video(photo_path: str, like_video: str, audio_path: str, out: str) -> None:
    """A still video of the photo, at `like_video`'s size, frame rate and length, with the speech."""
    import cv2

    from thflax.io import video

    fps, n, w, h = video.video_info(like_video)
    image = cv2.resize(video.read_image(photo_path), (w, h), interpolation=cv2.INTER_AREA)
    video.write_video(out, (image for _ in range(n)), fps=fps, audio_path=audio_path)


def main(argv) -> int:
    del argv
    import tempfile

    from thflax.measures import evaluation, face_measures, lip_sync_expert
    from thflax.inference import caches, generation, networks, shipped_model, text_to_speech
    from thflax.io import video

    photos = FLAGS.photos or default_photos()
    # Every photo readable and with a face before any slow work; the faces are measured against.
    faces = [face_measures.find_face(video.read_image(path), path) for path in photos]
    try:
        os.makedirs(FLAGS.out_dir, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create --out_dir {FLAGS.out_dir}: {e.strerror or e}") from e
    seen = speech_seen_in_training(FLAGS.voice, FLAGS.rate, FLAGS.pitch)
    speech_note = (f"voice {FLAGS.voice}, {FLAGS.rate} words/min, pitch {FLAGS.pitch} ("
                   + (f"used in training: {', '.join(seen)}" if seen else "none of them used in training") + ")")
    if FLAGS.compilation_cache:
        caches.enable_caches()
    checkpoint = shipped_model.checkpoint_or_shipped(FLAGS.checkpoint)
    models = networks.load_models(checkpoint)  # once for every photo
    expert = (lip_sync_expert.load_expert(FLAGS.syncnet) if FLAGS.syncnet
              else lip_sync_expert.find_expert(checkpoint))
    rows = []
    with tempfile.TemporaryDirectory(prefix="thflax-identity-") as tmp:
        wav = os.path.join(tmp, "speech.wav")
        seconds = text_to_speech.speak_to_wav(FLAGS.text, wav, FLAGS.voice, FLAGS.rate, FLAGS.pitch)
        for name, photo, face in zip(row_names(photos), photos, faces):
            out = os.path.join(FLAGS.out_dir, f"{name}.mp4")
            generation.generate(checkpoint, photo, wav, out, models=models, progress=False)
            result = {"photo": os.path.abspath(photo), "video": os.path.abspath(out), "speech": speech_note,
                      "text": FLAGS.text, "goals": {k: f"{op} {v}" for k, (op, v) in face_measures.GOALS.items()},
                      "lip_sync_expert": lip_sync_expert.note(expert),
                      "generated": face_measures.measure_video(photo, out, wav, FLAGS.every, FLAGS.max_offset, face,
                                                               expert)}
            rows.append((os.path.basename(photo), "generated", result["generated"]))
            if FLAGS.floor:
                still = os.path.join(tmp, f"{name}_copied.mp4")
                still_video(photo, out, wav, still)
                result["copied_photo"] = face_measures.measure_video(photo, still, wav, FLAGS.every,
                                                                      FLAGS.max_offset, face, expert)
                rows.append((os.path.basename(photo), "copied photo", result["copied_photo"]))
            evaluation.write_json(os.path.join(FLAGS.out_dir, f"{name}.json"), result)
    table = markdown_table(rows) + "\n\n" + photo_mouth_lines(rows) + "\n\n" + lip_sync_expert.note(expert)
    header = (f"Identity, lip sync and sharpness of {checkpoint} on {len(photos)} photo"
              f"{'s' if len(photos) > 1 else ''}; speech: {seconds:.1f} s, {speech_note}.")
    md = os.path.join(FLAGS.out_dir, "identity.md")
    with open(md + ".part", "w") as f:  # renamed into place: never a half-written table
        f.write(header + "\n\n" + table + "\n")
    os.replace(md + ".part", md)
    print(header + "\n")
    print(table)
    print(f"\nresults in {md} and NAME.json beside it")
    return 0


if __name__ == "__main__":
    cli.run(main)
