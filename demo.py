"""The main job: synthetic corpus -> train STL and LTV -> Table-2 metrics -> talking-head mp4.

    python demo.py --workdir runs/demo        (what `make demo` runs; --config.data.data_dir=DIR to
                                              keep the prepared corpus elsewhere)

1. generates the small synthetic corpus (eSpeak NG speech, the bundled real photo animated, GRID
   layout) and prepares it with dlib into a TFDS dataset, printing its statistics;
2. trains STL (speech -> landmarks) and LTV (landmarks -> video) with configs/cpu.py;
3. evaluates end to end on held-out utterances and prints the Table-2-style metrics;
4. makes the bundled photo (`skimage.data.astronaut()`) speak a sentence that is not in the corpus,
   writes the mp4 with the audio muxed in, and a PNG grid of some of its frames.

The log holds our progress and metrics (training progress as steps/s and ETA lines when the output is
not a terminal); --verbose adds the libraries' chatter (orbax, TFDS, TensorFlow).
"""

from __future__ import annotations

import json
import os
import time

from absl import flags

from thflax import cli

FLAGS = flags.FLAGS
cli.define_config(os.path.join(os.path.dirname(cli.DEFAULT_CONFIG), "cpu.py"), "Demo configuration.")
flags.DEFINE_string("workdir", "runs/demo", "Where the corpus, checkpoints and outputs go.")
flags.DEFINE_integer("eval_utterances", 8, "Held-out utterances to evaluate on.", lower_bound=1)


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


def main(argv) -> int:
    del argv
    t_start = time.time()
    workdir = os.path.abspath(FLAGS.workdir)
    os.makedirs(workdir, exist_ok=True)

    import cv2
    import numpy as np
    import skimage.data
    import soundfile as sf
    config = FLAGS.config
    if not config.data.data_dir:
        config.data.data_dir = os.path.join(workdir, "tfds")

    # 1. Data.
    _say(f"1/4 synthetic corpus + dlib preparation ({config.data.name})")
    from input_pipeline import pipeline

    t0 = time.time()
    builder = pipeline.get_builder(config.data)
    corpus_dir = os.path.join(config.data.data_dir, "downloads", "synthetic_corpus", builder.builder_config.name)
    manifest = json.load(open(os.path.join(corpus_dir, "corpus.json")))
    reports = [json.load(open(os.path.join(str(builder.data_path), f"build_report_{s}.json"))) for s in ("train", "test")]
    frames = sum(u["frames"] for u in manifest["utterances"])
    print(f"corpus: {manifest['num_speakers']} speakers, {manifest['num_utterances']} utterances, {frames} frames "
          f"({frames / 25:.0f} s of video) in {corpus_dir}")
    print(f"dataset: train {builder.info.splits['train'].num_examples}, test {builder.info.splits['test'].num_examples} "
          f"utterances at {builder.info.metadata['crop_size']}x{builder.info.metadata['crop_size']}; "
          f"build report: {[r['counts'] for r in reports]}  ({time.time() - t0:.0f} s)")

    # 2. Training.
    from thflax import tasks, trainer

    for stage in tasks.stage_names("all"):
        _say(f"2/4 training {stage.upper()} ({config[stage].num_steps} steps) -> {workdir}/{stage}")
        t0 = time.time()
        task = tasks.get_task(config, stage)
        trainer.train_stage(config, workdir, task, pipeline.StageData(config, task, builder))
        print(f"{stage}: {time.time() - t0:.0f} s")

    # 3. Evaluation.
    _say(f"3/4 end-to-end evaluation on {FLAGS.eval_utterances} held-out utterances")
    from thflax import evaluation, generation, inference, params

    t0 = time.time()
    models = inference.load_models(workdir)
    _, table, paths = evaluation.run_table([("thflax (Full)", models)],
                                           pipeline.utterances(config, "test", builder=builder),
                                           os.path.join(workdir, "eval"), FLAGS.eval_utterances)
    print(table)
    print(f"({time.time() - t0:.0f} s)")

    # 4. Generation for an unseen sentence and the bundled photo.
    from thflax.synthetic import grammar, speech

    words, uid = unseen_sentence(corpus_dir)
    text = grammar.spoken_text(words)
    _say(f"4/4 generating: the bundled photo says \"{' '.join(words)}\" (not in the corpus)")
    t0 = time.time()
    photo = os.path.join(workdir, "astronaut.png")
    cv2.imwrite(photo, cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    utt = speech.synthesize(text, voice="en-us", rate=160, pitch=50, leading_silence=0.3, trailing_silence=0.4)
    wav = os.path.join(workdir, f"speech_{uid}.wav")
    sf.write(wav, utt.audio, utt.sample_rate)
    out = os.path.join(workdir, "talking_head.mp4")
    export_dir = os.path.join(workdir, "export")
    info = params.export(workdir, export_dir, overwrite=True)
    print(f"exported the trained parameters to {export_dir} ({info['bytes'] / 2**20:.1f} MiB)")
    summary_gen = generation.generate(export_dir, photo, wav, out)
    side = os.path.join(workdir, "talking_head_landmarks.mp4")
    generation.generate(workdir, photo, wav, side, models=models, crop_only=True, landmarks_video=True, progress=False)
    from thflax import video

    clip, _ = video.read_video(side)
    picks = np.linspace(0, len(clip) - 1, 6).astype(int)
    h = clip.shape[1]
    tiles = [cv2.resize(clip[i], (clip.shape[2] * 192 // h, 192), interpolation=cv2.INTER_CUBIC) for i in picks]
    grid = np.concatenate([np.concatenate(tiles[:3], axis=1), np.concatenate(tiles[3:], axis=1)], axis=0)
    still = os.path.join(workdir, "talking_head_frames.png")
    video.write_image(still, grid)
    print(f"{summary_gen['frames']} frames in {time.time() - t0:.0f} s")

    _say(f"done in {(time.time() - t_start) / 60:.1f} min")
    print(f"export bundle:    {export_dir}")
    print(f"video:            {out}")
    print(f"video + landmarks: {side}")
    print(f"frames grid:      {still}")
    print(f"metrics:          {paths['table']} (per utterance: {paths['per_utterance']})")
    print(f"TensorBoard:      tensorboard --logdir {workdir}")
    return 0


if __name__ == "__main__":
    cli.run(main)
