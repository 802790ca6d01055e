"""The main job: many-person synthetic corpus -> train STL and LTV -> Table-2 metrics -> talking-head mp4.

    python demo.py --workdir runs/demo        (what `make demo` runs; --config.data.data_dir=DIR to
                                              keep the prepared corpus elsewhere)

1. generates the many-person synthetic corpus (configs/demo.py: `synthetic_talking_heads/people`,
   eSpeak NG speech, speakers made of real portraits and morphs between them, one identity held out
   for testing) and prepares it with dlib into a TFDS dataset, printing its statistics;
2. trains STL (speech -> landmarks) and LTV (landmarks -> video, the warp generator at 128x128), then the
   lip-sync expert (SyncNet, into <workdir>/syncnet) that LSE-C / LSE-D are measured with;
3. evaluates end to end on utterances of the held-out identity and prints the Table-2-style metrics (LSE
   columns with the expert trained here: comparable within the table, not with papers);
4. makes a synthetic person never seen in training (a morph of the held-out identity and the
   astronaut; the astronaut alone when the portraits could not be fetched) speak a sentence that is
   not in the corpus, writes the mp4 with the audio muxed in, a PNG of the photo next to some
   frames, and prints the identity, lip-sync and sharpness measures of that video.

The log holds our progress and metrics (training progress as steps/s and ETA lines when the output is
not a terminal); --verbose adds the libraries' chatter (orbax, TFDS, TensorFlow).
"""

from __future__ import annotations

import json
import os
import time

from absl import flags

from thflax import cli
from thflax.inference import shipped_model

FLAGS = flags.FLAGS
cli.define_config(os.path.join(os.path.dirname(cli.DEFAULT_CONFIG), "demo.py"), "Demo configuration.")
flags.DEFINE_string("workdir", "runs/demo", "Where the corpus, checkpoints and outputs go.")
flags.DEFINE_integer("eval_utterances", 8, "Held-out utterances to evaluate on.", lower_bound=1)

#: Words per minute of the demo's sentence: inside the corpus speakers' 140..200 (`synthetic.speakers`), a
#: little slower than generation's default (`options.DEFAULT_RATE`); voice, pitch and padding are the defaults.
SPEECH_RATE = 160
#: The evaluation table's row of the model that ships in the package.
SHIPPED_ROW = "shipped model"


def mouth_line(m: dict) -> str:
    """The video's inner-mouth contrast and teeth (`face_measures.mouth_interior`) next to the photo's own,
    or the reasons they are undefined."""
    def pair(contrast: float, teeth: float, reason: str | None) -> str:
        return f"n/a ({reason})" if reason else f"contrast {contrast:.1f}, teeth {teeth:.1f}"

    return (pair(m["mouth_contrast"], m["teeth_brightness"], m["mouth_reason"]) + " (photo: "
            + pair(m["photo_mouth_contrast"], m["photo_teeth_brightness"], m["photo_mouth_reason"]) + ")")


def _say(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def unseen_sentence(corpus_dir: str, seed: int = 7) -> tuple[list[str], str]:
    """A GRID-grammar sentence none of the corpus's utterances uses."""
    import numpy as np

    from thflax.synthetic import grammar

    seen = set()
    for root, _, files in os.walk(os.path.join(corpus_dir, "alignments")):
        seen |= {f.split(".")[0].split("_")[0] for f in files}
    rng = np.random.default_rng(seed)
    while True:
        words, uid = grammar.sample_sentence(rng)
        if uid not in seen:
            return words, uid


def unseen_person(workdir: str, heldout: str) -> tuple[str, str]:
    """A photo of a synthetic person no training speaker is made of: (png path, description).

    A landmark-aligned morph (50 %) of the held-out identity and the astronaut, with the astronaut's
    hair and clothes: the held-out identity is in no training speaker, so neither is this face. The
    demo shows no real public figure saying words they did not say. Without the fetched portraits,
    the astronaut (then a training identity: said so).
    """
    import cv2

    from thflax.synthetic import portraits

    keys = sorted(p.key for p in portraits.builtin_portraits(fetch=False) if p.identity == heldout)
    if keys:
        src = portraits.compose((portraits.ASTRONAUT, keys[0]), mix=0.5)
        who = "a synthetic person (morph of the held-out identity and the astronaut, unseen in training)"
    else:
        src = portraits.compose((portraits.ASTRONAUT,))
        who = "the astronaut (the portraits could not be fetched: a training identity)"
    path = os.path.join(workdir, "unseen_person.png")
    cv2.imwrite(path, cv2.cvtColor(src.photo, cv2.COLOR_RGB2BGR))
    return path, who


def shipped_comparable(config) -> tuple[object | None, str | None]:
    """The shipped model's `networks.Models` when it was trained on this corpus (so this corpus's held-out
    person is unseen by it too), else (None, why not)."""
    from thflax.errors import InputError
    from thflax.inference import networks, params

    try:
        path = shipped_model.checkpoint_or_shipped(None)
        trained_on = params.load_config(path).data.name
        if trained_on != config.data.name:
            return None, f"it was trained on {trained_on}, this corpus is {config.data.name}"
        return networks.load_models(path), None
    except InputError as e:  # CheckpointError too: a damaged bundle
        return None, " ".join(str(e).split())


def comparison_table(measured: dict[str, dict]) -> str:
    """Markdown: one row per video's `face_measures.measure_video` measures (the demo's two models)."""
    cols = [("identity distance", "identity_distance", "{:.3f}"), ("lip-sync r", "lip_sync_corr", "{:.3f}"),
            ("opening std", "opening_std", "{:.4f}"), ("sharpness ratio", "sharpness_ratio", "{:.2f}"),
            ("LSE-D", "lse_d", "{:.2f}"), ("LSE-C", "lse_c", "{:.2f}"), ("mouth contrast", "mouth_contrast", "{:.1f}"),
            ("teeth", "teeth_brightness", "{:.1f}"), ("head motion %", "head_motion_percent", "{:.1f}"),
            ("blinks / min", "blinks_per_minute", "{:.0f}"), ("blink frames", "blink_frames", "{:.0f}")]

    def cell(m, key, fmt):
        v = m.get(key)
        return "n/a" if v is None or v != v else fmt.format(v)

    lines = ["| model | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(cell(m, k, f) for _, k, f in cols) + " |" for name, m in measured.items()]
    return "\n".join(lines)


def frame_strip(images, height: int = 192):
    """Images side by side at one height: [height, sum of widths, 3] uint8."""
    import cv2
    import numpy as np

    return np.concatenate([cv2.resize(im, (im.shape[1] * height // im.shape[0], height), interpolation=cv2.INTER_AREA)
                           for im in images], axis=1)


def main(argv) -> int:
    del argv
    t_start = time.time()
    workdir = os.path.abspath(FLAGS.workdir)
    os.makedirs(workdir, exist_ok=True)

    import numpy as np
    config = FLAGS.config
    if not config.data.data_dir:
        config.data.data_dir = os.path.join(workdir, "tfds")

    # 1. Data.
    _say(f"1/4 synthetic corpus + dlib preparation ({config.data.name})")
    from input_pipeline import pipeline

    t0 = time.time()
    builder = pipeline.get_builder(config.data)
    corpus_dir = os.path.join(config.data.data_dir, "downloads", "synthetic_corpus", builder.builder_config.name)
    if config.data.manual_dir and os.path.exists(os.path.join(config.data.manual_dir, "corpus.json")):
        corpus_dir = config.data.manual_dir  # a corpus made beforehand with `python -m thflax.synthetic.corpus`
    manifest = json.load(open(os.path.join(corpus_dir, "corpus.json")))
    splits = builder.info.splits  # a corpus too small for validation utterances has no validation split
    reports = {s: json.load(open(os.path.join(str(builder.data_path), f"build_report_{s}.json")))["counts"]
               for s in splits}
    frames = sum(u["frames"] for u in manifest["utterances"])
    print(f"corpus: {manifest['num_speakers']} speakers, {manifest['num_utterances']} utterances, {frames} frames "
          f"({frames / 25:.0f} s of video) in {corpus_dir}")
    if manifest.get("holdout_identities"):
        print(f"held out of training and validation: identity {', '.join(manifest['holdout_identities'])} "
              f"(speakers {', '.join(manifest['heldout_speakers'])}), the test split")
    print("dataset: " + ", ".join(f"{s} {splits[s].num_examples}" for s in splits) +
          f" utterances at {builder.info.metadata['crop_size']}x{builder.info.metadata['crop_size']}; "
          f"build report: {reports}  ({time.time() - t0:.0f} s)")

    # 2. Training.
    from thflax.training import stages, tasks

    stages.train_stages(
        config, workdir, tasks.stage_names("all"), builder,
        on_start=lambda stage: _say(f"2/4 training {stage.upper()} ({config[stage].num_steps} steps) -> "
                                    f"{workdir}/{stage}"),
        on_done=lambda stage, seconds: print(f"{stage}: {seconds:.0f} s"))
    # The lip-sync expert the LSE columns are measured with (not part of the generation model; trained after
    # it, so the two stages above train exactly as without it).
    from thflax.measures import lip_sync_expert
    from thflax.training import syncnet_stage

    _say(f"2/4 training the lip-sync expert (SyncNet, {config.syncnet.num_steps} steps) -> {workdir}/syncnet")
    t0 = time.time()
    sync_val = syncnet_stage.train_expert(config, workdir, builder)
    print(f"syncnet: {time.time() - t0:.0f} s; " + (
        f"validation ({sync_val['windows']} windows): in-sync audio nearest of {sync_val['candidates']:.0f} offsets "
        f"{sync_val['accuracy']:.3f} (chance {1 / sync_val['candidates']:.2f}), nearer than a shifted one "
        f"{sync_val['rank_accuracy']:.3f} (chance 0.5)" if sync_val else "no validation split: no held-out accuracy"))
    expert = lip_sync_expert.load_expert(workdir)

    # 3. Evaluation.
    _say(f"3/4 end-to-end evaluation on {FLAGS.eval_utterances} held-out utterances")
    from thflax.measures import evaluation
    from thflax.inference import generation, networks, params

    t0 = time.time()
    models = networks.load_models(workdir)
    shipped, why_not = shipped_comparable(config)
    if why_not:
        print(f"the shipped model is not compared: {why_not}")
    _, table, paths = evaluation.run_table([("thflax (Full)", models)] + ([(SHIPPED_ROW, shipped)] if shipped else []),
                                           pipeline.utterances(config, "test", builder=builder),
                                           os.path.join(workdir, "eval"), FLAGS.eval_utterances, expert=expert)
    print(table)
    print(f"({time.time() - t0:.0f} s)")

    # 4. Generation: a person never seen in training says a sentence that is not in the corpus.
    from thflax.inference import text_to_speech
    from thflax.io import video
    from thflax.synthetic import grammar

    words, uid = unseen_sentence(corpus_dir)
    text = grammar.spoken_text(words)
    photo, who = unseen_person(workdir, (getattr(builder.builder_config, "holdout", None) or ("biden",))[0])
    _say(f"4/4 generating: {who} says \"{' '.join(words)}\" (not in the corpus)")
    t0 = time.time()
    wav = os.path.join(workdir, f"speech_{uid}.wav")
    text_to_speech.speak_to_wav(text, wav, rate=SPEECH_RATE)
    out = os.path.join(workdir, "talking_head.mp4")
    export_dir = os.path.join(workdir, "export")
    info = params.export(workdir, export_dir, overwrite=True)
    print(f"exported the trained parameters to {export_dir} ({info['bytes'] / 2**20:.1f} MiB)")
    summary_gen = generation.generate(export_dir, photo, wav, out)
    side = os.path.join(workdir, "talking_head_landmarks.mp4")
    generation.generate(workdir, photo, wav, side, models=models, crop_only=True, landmarks_video=True, progress=False)
    clip, _ = video.read_video(out)
    picks = np.linspace(0, len(clip) - 1, 7).astype(int)[1:-1]  # inner frames: the first and last are silence
    still = os.path.join(workdir, "talking_head_frames.png")
    video.write_image(still, frame_strip([video.read_image(photo)] + [clip[i] for i in picks]))
    print(f"{summary_gen['frames']} frames in {time.time() - t0:.0f} s")
    from thflax.measures import face_measures

    m = face_measures.measure_video(photo, out, wav, expert=expert)
    print("measured with dlib on the video (goal in brackets): " + ", ".join(
        f"{k} {m[k]:.3f} ({op} {goal}{', met' if face_measures.meets_goal(k, m[k]) else ', NOT met'})"
        for k, (op, goal) in face_measures.GOALS.items())
        + "; inside the mouth (open frames, 64-px mouth; no goal yet): "
        + mouth_line(m)
        + f"; head motion (nose-tip std, % of the inter-ocular distance; no goal yet): {m['head_motion_percent']:.1f}"
        + f"; blinks dlib finds: {m['blinks_per_minute']:.0f} a minute, the median "
        + ("n/a" if m["blink_frames"] != m["blink_frames"] else f"{m['blink_frames']:.0f} frames") + " long")
    print(f"CPBD sharpness of the face {m['cpbd']:.3f} ({m['cpbd_ratio']:.2f} of the photo's); lip-sync expert "
          f"(trained here, not the public weights): LSE-D {m['lse_d']:.2f}, LSE-C {m['lse_c']:.2f}, offset "
          f"{m['lse_offset']:+.0f} frames")
    if shipped:
        # The same person and speech through the shipped model: the video-level half of the comparison (the
        # held-out utterances' half is its row in the table above).
        _say(f"the model trained here against the shipped one ({shipped_model.SHIPPED_MODEL}), same person and speech")
        shipped_out = os.path.join(workdir, "talking_head_shipped_model.mp4")
        generation.generate(None, photo, wav, shipped_out, models=shipped, progress=False)
        ms = face_measures.measure_video(photo, shipped_out, wav, expert=expert)
        print(comparison_table({"trained here": m, "shipped model": ms}))
        print(f"evaluation rows \"thflax (Full)\" and \"{SHIPPED_ROW}\" in {paths['table']}; videos {out} and "
              f"{shipped_out}")

    _say(f"done in {(time.time() - t_start) / 60:.1f} min")
    print(f"export bundle:    {export_dir}")
    print(f"video:            {out}")
    print(f"video + landmarks: {side}")
    print(f"photo + frames:   {still}")
    print(f"metrics:          {paths['table']} (per utterance: {paths['per_utterance']})")
    print(f"TensorBoard:      tensorboard --logdir {workdir}")
    return 0


if __name__ == "__main__":
    cli.run(main)
