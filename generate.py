"""Speech (or text) + one photo -> talking-head mp4; a video dubbed with new speech; or many videos
from a jobs file.

    python generate.py --image face.jpg --text "Hello there." --out hello.mp4     (the shipped model)
    python generate.py --checkpoint runs/demo --image face.jpg --audio speech.wav --out talking.mp4
    python generate.py --checkpoint runs/demo --image face.jpg --text "Hello there." --out hello.mp4
    python generate.py --checkpoint runs/demo --video interview.mp4 --audio speech.wav --out dubbed.mp4
    python generate.py --checkpoint runs/demo --jobs jobs.csv

--checkpoint is a training workdir (stl/ and ltv/ checkpoints) or an export bundle (export.py); without
it, the model that ships in the package (thflax/assets/model, described by its MODEL_CARD.md). The
model's config is the saved one; --config FILE requires the checkpoint to match that file, and
--config.x=y overrides change it. Bad inputs print one line and exit with status 2; the output file
is only created when generation succeeded.

--text speaks the words offline with eSpeak NG (--voice, --rate, --pitch) and uses that speech as the
audio (the video's audio track is the synthesised speech).

--video FILE instead of --image dubs a video (as Wav2Lip does): every frame of the video is kept (its
background, body and own head motion, tracked with dlib) and only the mouth and lower face are
re-animated from the speech; the reference face is one of its frames (the most closed mouth in its
first seconds). The output has the video's frame rate (--fps must be left out or equal it) and the
speech as its only audio. When the speech is longer than the video, the video plays forward, then
backward, then forward again (ping-pong) until the speech ends; when it is shorter, the video is cut.
--still and --head_motion change nothing there (the head moves as in the video; the speech drives only
the mouth), and --face_index/--face_box are refused (they choose a face in a photo; a video's face is tracked).

--jobs FILE.csv makes many videos with one model load and one compilation. The CSV has a header line;
columns (paths relative to the CSV's folder):
  image   the photo, or
  video   a video to dub (exactly one of image and video per row)
  audio   the speech file, or
  text    words to speak (exactly one of audio and text per row)
  out     the output .mp4 (required)
  voice, rate, pitch   optional, for text rows (default: the --voice/--rate/--pitch flags)
  still   optional: 1/true/yes for no head motion (default: the --still flag)
  face_index  optional: which face of the photo (default: the highest detection score)
  blink_rate  optional: blinks per minute, 0..60 (default: the --blink_rate flag)
  head_motion optional: how far the head moves, 0..3 (default: the --head_motion flag)
Other flags (--fps, --size, --crop_only, ...) apply to every row. A bad row is reported on one line
naming its row number (rows count the non-blank lines after the header) and its line, and skipped;
the others are made. The last line says "N of M videos written"; the exit status is 0 when every
row made its video, 2 otherwise. A jobs file whose rows collide is refused whole before anything is
written (one line naming the rows and the path, exit status 2): an out that is any row's image, video
or audio (a later row would read the new video instead of the user's file, or an earlier one's input
would be destroyed), or an out two rows write. Paths are compared as files: ./x.mp4, d/../x.mp4,
symlinks and hard links to one file are the same.

Numeric flags and columns have ranges (checked before any work; out of range: one line, exit 2):
--fps 1..120, --size 16..4096 (frames of at most 4096x8192 pixels), --batch 1..256, --rate
80..450, --pitch 0..100, --face_index 0 or more, --face_box x0 < x1 and y0 < y1, --blink_rate 0..60,
--head_motion 0..3.

--live animates the photo as the speech arrives (thflax/inference/live.py): audio from --live_in (- for
16 kHz mono s16le PCM on stdin, e.g. `ffmpeg -i talk.wav -f s16le -ac 1 -ar 16000 - |` or
`arecord -f S16_LE -c 1 -r 16000 -t raw |`; default: the default input device, through the
sounddevice package or ffmpeg's PulseAudio capture), frames out as MJPEG (one JPEG per frame) on
stdout with --live_mjpeg - (`| ffplay -f mjpeg -`) or over HTTP with --live_port (open
http://127.0.0.1:PORT/ in a browser), and/or recorded with the audio into --live_out FILE.mp4
(written when the stream ends: end of stdin, --live_seconds, Ctrl-C). Each frame waits for 126 ms of
audio past its start (at 25 fps), then for its compute. --image, --still, --blink_rate, --crop_only,
--landmarks_video, --size, --fps, --face_index, --face_box apply; --audio, --text, --video, --out and
--jobs do not.

Start-up caches (compiled programs, and the face found in each photo) live in $THFLAX_CACHE_DIR,
default ~/.cache/thflax: the second and later runs skip compilation (--nocompilation_cache: off).
"""

from __future__ import annotations

import atexit
import os
import sys
import time

_START = time.perf_counter()
_EXIT_STATUS: int | None = None


@atexit.register  # registered first, so it runs after every other exit handler
def _skip_teardown() -> None:
    """Ends a finished run without tearing the interpreter down (freeing JAX's and XLA's objects
    one by one takes seconds). Exit handlers have run and the output is flushed; this runs only when
    `main` returned (a crash exits normally, with its traceback)."""
    if _EXIT_STATUS is not None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(_EXIT_STATUS)


from absl import flags  # noqa: E402

from thflax import cli  # noqa: E402
from thflax.inference import caches, generation, jobs, networks, options, shipped_model  # noqa: E402
from thflax.errors import InputError  # noqa: E402

FLAGS = flags.FLAGS
cli.define_config(help_text="Config file the checkpoint must match (default: the one saved with it).")
flags.DEFINE_string("checkpoint", None, "Training workdir (stl/ and ltv/ checkpoints) or export bundle (default: "
                    "the model that ships in the package, thflax/assets/model).")
flags.DEFINE_string("image", None, "Photo of a face.")
flags.DEFINE_string("video", None, "A video to dub instead of a photo: keeps its frames, replaces the mouth; "
                    "longer speech plays it forward and backward (ping-pong), shorter speech cuts it.")
flags.DEFINE_string("audio", None, "Speech (wav/flac/mp3/mp4..., any sample rate). Or give --text.")
flags.DEFINE_string("text", None, "Words to speak (offline, eSpeak NG) instead of --audio.")
flags.DEFINE_string("voice", options.DEFAULT_VOICE, "eSpeak NG voice for --text, e.g. en-us, en-gb-x-rp, en-us+f3.")
# Ranges are generation's (checked there, in one place, for the flags, each jobs row and the web page).
flags.DEFINE_integer("rate", options.DEFAULT_RATE, "Speaking rate for --text, words per minute "
                     "({}..{}).".format(*options.RATE_RANGE))
flags.DEFINE_integer("pitch", options.DEFAULT_PITCH,
                     "Base pitch for --text ({}..{}).".format(*options.PITCH_RANGE))
flags.DEFINE_string("out", None, "Output .mp4.")
flags.DEFINE_string("jobs", None, "CSV of many videos (columns image or video, audio or text, out; optional voice, "
                    "rate, pitch, still, face_index, blink_rate, head_motion; paths relative to the CSV): described "
                    "at the top of --help.")
flags.DEFINE_bool("still", False, "No head motion: animate the lips only (as --head_motion 0).")
flags.DEFINE_float("head_motion", options.DEFAULT_HEAD_MOTION, "How far a photo's head moves, {:g}..{:g}: the "
                   "predicted head's displacement from the photo's pose times this (0: still, as --still; 1: the "
                   "model's own motion, its head gain (stl.head_gain) applied; 2: twice as far). The lips keep "
                   "their motion."
                   .format(*options.HEAD_MOTION_RANGE))
flags.DEFINE_float("blink_rate", options.DEFAULT_BLINK_RATE, "Blinks per minute added to a photo's video, "
                   "{:g}..{:g} (0: none; likelier in the speech's pauses; a dubbed video keeps its own)."
                   .format(*options.BLINK_RATE_RANGE))
flags.DEFINE_bool("landmarks_video", False, "Show the predicted landmarks beside the video.")
flags.DEFINE_bool("crop_only", False, "Write the face crop instead of the whole photo.")
flags.DEFINE_float("fps", 25.0, "Output frame rate, {:g}..{:g} (with --video: the video's own)."
                   .format(*options.FPS_RANGE))
flags.DEFINE_integer("size", None, "Output height in pixels, {}..{}, for frames of at most {:,} pixels (default: "
                     "the photo's, at most {} on its longer side).".format(
                         *options.SIZE_RANGE, options.MAX_FRAME_PIXELS, options.MAX_SIDE))
flags.DEFINE_integer("batch", 16, "Frames per generator call, {}..{} (more: faster, more accelerator memory)."
                     .format(*options.BATCH_RANGE))
flags.DEFINE_integer("face_index", None, "Which face of the photo: 0 = the highest detection score (0 or more).")
flags.DEFINE_list("face_box", None, "Which face of the photo: the one inside x0,y0,x1,y1 (pixels, x0 < x1, y0 < y1).")
flags.DEFINE_bool("compilation_cache", True, "Keep compiled programs and detected faces in $THFLAX_CACHE_DIR "
                  "(default ~/.cache/thflax) so later runs start faster.")
flags.DEFINE_bool("timings", False, "Print the seconds each step took, and what the caches did.")
flags.DEFINE_bool("quiet", False, "No progress bar.")
flags.DEFINE_bool("live", False, "Animate the photo as speech arrives (--live_in), frames out as they are made "
                  "(--live_mjpeg, --live_port, --live_out): described at the top of --help.")
flags.DEFINE_string("live_in", "default", "--live's audio: - (16 kHz mono s16le PCM on stdin) or default (the "
                    "default input device).")
flags.DEFINE_string("live_out", None, "--live: record the frames and the audio into this mp4 (written when the "
                    "stream ends).")
flags.DEFINE_string("live_mjpeg", None, "--live: write the frames as MJPEG (one JPEG each) to this file or FIFO, "
                    "or - for stdout (e.g. | ffplay -f mjpeg -).")
flags.DEFINE_integer("live_port", None, "--live: serve the frames as MJPEG over HTTP on this port (0: any free one).",
                     lower_bound=0, upper_bound=65535)
flags.DEFINE_string("live_host", "127.0.0.1", "--live_port's address (0.0.0.0: every network interface).")
flags.DEFINE_float("live_seconds", None, "--live: stop after this many seconds of audio (default: when it ends).")
flags.DEFINE_float("live_sway", 1.0, "--live: amount of idle head sway, 0..5 (the STL net's head stands still in "
                   "silence; 0: none, as with --still).")

_LIVE_ONLY = ("live_out", "live_mjpeg", "live_port", "live_seconds", "live_sway")

def _face_box() -> tuple[int, int, int, int] | None:
    if FLAGS.face_box is None:
        return None
    try:
        box = tuple(int(v) for v in FLAGS.face_box)
    except ValueError:
        box = ()
    if len(box) != 4:
        raise InputError(f"--face_box takes four whole numbers x0,y0,x1,y1, not {','.join(FLAGS.face_box)}")
    return box


def _check_flags() -> None:
    """One line for a command line that names no job or two contradicting ones."""
    if FLAGS.live:
        given = [f"--{n}" for n in ("video", "audio", "text", "out", "jobs") if FLAGS[n].value is not None]
        if given:
            raise InputError(f"--live takes its speech from --live_in and writes --live_out: drop {', '.join(given)}")
        if FLAGS.image is None:
            raise InputError("--live needs --image (the photo to animate)")
        return
    stray = [f"--{n}" for n in _LIVE_ONLY + ("live_in",) if FLAGS[n].present]
    if stray:
        raise InputError(f"{', '.join(stray)} need --live")
    if FLAGS.jobs is not None:
        given = [f"--{n}" for n in ("image", "video", "audio", "text", "out") if FLAGS[n].value is not None]
        if given:
            raise InputError(f"--jobs takes the inputs from the CSV: drop {', '.join(given)}")
        return
    if FLAGS.audio is not None and FLAGS.text is not None:
        raise InputError("give --audio or --text, not both")
    if FLAGS.image is not None and FLAGS.video is not None:
        raise InputError("give --image or --video, not both")
    missing = [] if FLAGS.image is not None or FLAGS.video is not None else ["--image or --video"]
    missing += ["--out"] if FLAGS.out is None else []
    if FLAGS.audio is None and FLAGS.text is None:
        missing.append("--audio or --text")
    if missing:
        raise InputError(f"missing {', '.join(missing)} (or give --jobs FILE.csv)")


def _print_timings(summary: dict, prefix: str = "") -> None:
    from thflax.inference import caches

    steps = " ".join(f"{k}={v:.2f}" for k, v in summary.get("timings", {}).items())
    stats = " ".join(f"{k}={v}" for k, v in caches.cache_stats.items())
    print(f"{prefix}timings: startup={summary.get('startup', 0.0):.2f} {steps} | {stats}", flush=True)


def _run_jobs(generation, checkpoint: str, common: dict, config) -> int:
    """Every row of --jobs with one model load: 0 when all rows made their video, 2 otherwise."""
    rows = jobs.read_jobs(FLAGS.jobs)
    jobs.check_job_paths(rows)  # the whole file, before the models load and anything is written

    def report(job: jobs.Job, e: InputError) -> None:
        print(f"error: {job.file} row {job.number} (line {job.line}): {' '.join(str(e).split())}", file=sys.stderr,
              flush=True)

    # Empty or missing columns get the flags' values.
    defaults = dict(still=FLAGS.still, face_index=FLAGS.face_index, voice=FLAGS.voice, rate=FLAGS.rate,
                    pitch=FLAGS.pitch, blink_rate=FLAGS.blink_rate, head_motion=FLAGS.head_motion)
    good = []
    for job in rows:  # every row's values checked (and reported) before the slow model load
        try:
            good.append((job, job.arguments(**defaults)))
        except InputError as e:
            report(job, e)
    # No good row: nothing to load the models for.
    models = networks.load_models(checkpoint, config) if good else None
    written = 0
    for job, kwargs in good:
        try:
            summary = generation.generate(checkpoint, models=models, **common, **kwargs)
        except InputError as e:
            report(job, e)
            continue
        written += 1
        print(f"row {job.number}: wrote {summary['out']} ({summary['frames']} frames, {summary['seconds']:.2f} s)",
              flush=True)
        if FLAGS.timings:
            _print_timings(summary, f"row {job.number} ")
    print(f"{written} of {len(rows)} videos written", flush=True)
    return 0 if written == len(rows) else 2


def main(argv) -> int:
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _check_flags()
    face_box = _face_box()
    # Every numeric flag against its range before any work (jobs rows are checked in Job.arguments).
    options.check_options(fps=FLAGS.fps, size=FLAGS.size, batch=FLAGS.batch, rate=FLAGS.rate, pitch=FLAGS.pitch,
                             face_index=FLAGS.face_index, face_box=face_box, blink_rate=FLAGS.blink_rate,
                             head_motion=FLAGS.head_motion, prefix="--")

    checkpoint = shipped_model.checkpoint_or_shipped(FLAGS.checkpoint)
    if FLAGS.compilation_cache:
        caches.enable_caches()  # before any JAX work
    config = cli.checkpoint_config(checkpoint) if cli.config_given() else None
    # A video keeps its own frame rate unless --fps is given (then they must agree); photos get --fps.
    fps = FLAGS.fps if FLAGS["fps"].present or FLAGS.video is None and FLAGS.jobs is None else None
    common = dict(landmarks_video=FLAGS.landmarks_video, crop_only=FLAGS.crop_only, fps=fps, size=FLAGS.size,
                  batch=FLAGS.batch, progress=not FLAGS.quiet, config=config, face_box=face_box)
    if FLAGS.jobs is not None:
        return _run_jobs(generation, checkpoint, common, config)
    if FLAGS.live:
        from thflax.inference import live_io

        live_io.live_generate(checkpoint, FLAGS.image, live_in=FLAGS.live_in, live_out=FLAGS.live_out,
                              mjpeg=FLAGS.live_mjpeg, port=FLAGS.live_port, host=FLAGS.live_host,
                              max_seconds=FLAGS.live_seconds, config=config, fps=FLAGS.fps, still=FLAGS.still,
                              blink_rate=FLAGS.blink_rate, sway=FLAGS.live_sway, crop_only=FLAGS.crop_only,
                              landmarks_video=FLAGS.landmarks_video, size=FLAGS.size,
                              max_batch=FLAGS.batch if FLAGS["batch"].present else 4, face_index=FLAGS.face_index,
                              face_box=face_box)
        return 0
    startup = time.perf_counter() - _START
    summary = generation.generate(checkpoint, FLAGS.image, FLAGS.audio, FLAGS.out, video=FLAGS.video,
                                  text=FLAGS.text,
                                  voice=FLAGS.voice, rate=FLAGS.rate, pitch=FLAGS.pitch, still=FLAGS.still,
                                  face_index=FLAGS.face_index, blink_rate=FLAGS.blink_rate,
                                  head_motion=FLAGS.head_motion, **common)
    print(f"wrote {summary['out']} ({summary['frames']} frames, {summary['seconds']:.2f} s)")
    if FLAGS.timings:
        _print_timings({**summary, "startup": startup})
    return 0


if __name__ == "__main__":
    try:
        cli.run(main)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            _EXIT_STATUS = e.code or 0
        raise
