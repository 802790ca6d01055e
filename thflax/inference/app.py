"""A web page for generation: a photo + speech (recorded, uploaded or typed) -> a talking-head video.

    pip install -e '.[app]'
    python -m thflax.app                                          # the shipped model; open http://127.0.0.1:7860
    python -m thflax.app --checkpoint runs/demo/export            # a model of your own

The page (Gradio) takes a photo of a face (or, in its "Video (dubbing)" tab, a video of a face, whose
frames and head motion are kept while the mouth follows the new speech: `thflax.inference.dubbing`), and either
speech (uploaded or recorded in the browser) or text that eSpeak NG speaks offline (voice, rate,
pitch), how far a photo's head moves (0: still), and blinks. It shows the rendering's progress, then
the mp4 in a player with a download button. A bad input (no face, an unreadable image, video or audio, empty
text) is shown on the page as one line; nothing else of the error.

The models are loaded once at start-up (`thflax.inference.networks.load_models`; a bad checkpoint prints one
line and exits with status 2, as every CLI does) and requests run one at a time. Uploads, renders and
Gradio's own copies live in one temporary folder of the app (under $TMPDIR), removed when it exits
(Ctrl-C or SIGTERM). Inference only: nothing here imports training code.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from absl import flags

from thflax import cli
from thflax.errors import InputError
from thflax.inference import options

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line's flags (only when run as a program: importing the module defines none)."""
    cli.define_config(help_text="Config file the checkpoint must match (default: the one saved with it).")
    flags.DEFINE_string("checkpoint", None, "Training workdir (stl/ and ltv/ checkpoints) or export bundle (default: "
                        "the model that ships in the package, thflax/assets/model).")
    flags.DEFINE_string("host", "127.0.0.1", "Address to serve on (0.0.0.0: every network interface).")
    flags.DEFINE_integer("port", 7860, "Port to serve on.", lower_bound=1, upper_bound=65535)
    flags.DEFINE_bool("compilation_cache", True, "Keep compiled programs and detected faces in $THFLAX_CACHE_DIR "
                      "(default ~/.cache/thflax) so later starts are faster.")
    flags.DEFINE_bool("open_browser", False, "Open the page in a browser once it is served.")


_log = logging.getLogger(__name__)

#: Voices offered in the page's dropdown (any eSpeak NG voice works in the library); it starts on
#: generation's default, `options.DEFAULT_VOICE`, which must be among them.
VOICES = ("en-us", "en-gb-x-rp", "en-us+f3", "en+f5", "en-us+m3", "en-gb-scotland", "en-029")
#: Seconds between two progress updates sent to the page (one per frame would flood the queue).
PROGRESS_INTERVAL = 0.25
#: Files in Gradio's cache older than this many seconds are deleted (checked as often).
CACHE_MAX_AGE = 3600


def _one_line(err: BaseException, uploads: dict[str, str]) -> str:
    """The error as one line for the page, the server's temporary paths replaced by the uploaded names."""
    text = " ".join(str(err).split())
    for path, name in uploads.items():
        if path:
            text = text.replace(path, name)
    return text


def make_video(models: Any, checkpoint: str, out_dir: str, photo: str | None, audio: str | None, text: str | None,
               voice: str = options.DEFAULT_VOICE, rate: int = options.DEFAULT_RATE,
               pitch: int = options.DEFAULT_PITCH, still: bool = False,
               report: Callable[[int, int], None] | None = None, *,
               source: str | None = None,
               blink_rate: float = options.DEFAULT_BLINK_RATE,
               head_motion: float = options.DEFAULT_HEAD_MOTION) -> tuple[str, dict[str, Any]]:
    """One request of the page: (path of the new mp4 in `out_dir`, generation's summary).

    The face is the `photo`, or with `source` (a video path, instead of the photo) that video is dubbed
    (`thflax.inference.dubbing`: its frames and head motion kept, the mouth re-animated). Speech comes from
    `audio` when given, else `text` is spoken. The previous renders in `out_dir` are deleted first
    (the page already holds its own copies; requests run one at a time). Raises InputError with one
    line for a missing or bad input.
    """
    from thflax.inference import generation

    if source is None and not photo:
        raise InputError("upload a photo of a face first")
    if source is not None and not source:
        raise InputError("upload a video of a face first")
    if not audio and not (text or "").strip():
        raise InputError("record or upload speech, or type the words to speak")
    for old in os.listdir(out_dir):
        try:
            os.remove(os.path.join(out_dir, old))
        except OSError:
            pass
    out = os.path.join(out_dir, f"talking-{uuid.uuid4().hex[:8]}.mp4")
    # The sliders' numbers go to generation as they are (whole floats as ints): generation checks their
    # ranges (check_options), so a forged request's nan or 1e9 is refused in one line like any bad input.
    speech = dict(audio=audio) if audio else dict(text=text, voice=voice, rate=_whole(rate), pitch=_whole(pitch))
    face = (dict(video=source) if source is not None
            else dict(image=photo, still=bool(still), blink_rate=_whole(blink_rate), head_motion=head_motion))
    summary = generation.generate(checkpoint, out=out, models=models, progress=report or False, **face, **speech)
    return out, summary


def _whole(value: Any) -> Any:
    """A number the page sent as a float (Gradio's sliders do) as an int when it is whole; anything else
    unchanged, for `options.check_options` to refuse."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _lenient(preprocess: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """gr.Image's `preprocess`, handing over an upload Pillow cannot open as it is (its path) instead of
    failing the request with Pillow's exception: generation then refuses it with one line, and only when
    the photo is used (not in the video tab). (Wrapped on the instance: a subclass of a Gradio component
    would make Gradio write a .pyi file beside this module.)"""

    def lenient(payload):
        try:
            return preprocess(payload)
        except (OSError, ValueError, SyntaxError):  # PIL.UnidentifiedImageError is an OSError
            return str(payload.path)

    return lenient


def build(models: Any, checkpoint: str, out_dir: str, rtc: Any = None):
    """The page (a `gr.Blocks`), generating with the loaded `models` into `out_dir`; its Live tab streams
    through `rtc` (a `thflax.inference.live_rtc.LiveRtc`; None: the tab says aiortc is missing)."""
    import gradio as gr

    def run(mode, photo, source, audio, text, voice, rate, pitch, still, blinks, head, progress=gr.Progress()):
        names = {p: os.path.basename(p) for p in (photo, source, audio) if p}  # uploads keep their own names
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if done == total or now - last[0] >= PROGRESS_INTERVAL:
                last[0] = now
                progress((done, total), desc="Rendering", unit="frames")

        progress(0.0, desc="Preparing (the first video also compiles the networks)")
        try:
            out, summary = make_video(models, checkpoint, out_dir, photo, audio, text, voice, rate, pitch, still,
                                      report=report, source=(source or "") if mode == "video" else None,
                                      blink_rate=blinks, head_motion=head)
        except InputError as e:
            raise gr.Error(html.escape(_one_line(e, names)), print_exception=False) from None
        except Exception:  # noqa: BLE001 - the page gets one line; the server log the traceback
            _log.exception("generation failed")
            raise gr.Error("generation failed (the server's log has the details)", print_exception=False) from None
        return out, f"{summary['frames']} frames, {summary['seconds']:.1f} s"

    with gr.Blocks(title="thflax talking head", delete_cache=(CACHE_MAX_AGE, CACHE_MAX_AGE)) as page:
        gr.Markdown("# Talking head\nA photo of a face and some speech make a video of that face speaking; "
                    "or a video of a face is dubbed with new speech; or, live, your microphone drives the photo.")
        mode = gr.State("photo")  # which tab is shown: that input is used
        with gr.Tab("Make a video", elem_id="make-tab"), gr.Row():
            with gr.Column():
                with gr.Tabs():
                    with gr.Tab("Photo", elem_id="photo-tab") as photo_tab:
                        photo = gr.Image(label="Photo of a face", type="filepath", sources=["upload", "clipboard"],
                                         height=280, elem_id="photo")
                        photo.preprocess = _lenient(photo.preprocess)
                    with gr.Tab("Video (dubbing)", elem_id="source-tab") as source_tab:
                        source = gr.Video(label="Video of a face: its frames and head motion are kept, the "
                                          "mouth follows the new speech", sources=["upload"], format=None,
                                          height=280, elem_id="source")
                text = gr.Textbox(label="Text to speak", placeholder="Hello there.", lines=2, elem_id="text")
                with gr.Row():
                    voice = gr.Dropdown(list(VOICES), value=options.DEFAULT_VOICE, label="Voice", elem_id="voice")
                    rate = gr.Slider(*options.RATE_RANGE, value=options.DEFAULT_RATE, step=5,
                                     label="Rate (words/min)", elem_id="rate")
                    pitch = gr.Slider(*options.PITCH_RANGE, value=options.DEFAULT_PITCH, step=1,
                                      label="Pitch", elem_id="pitch")
                audio = gr.Audio(label="Or speech: upload or record it (used instead of the text)",
                                 type="filepath", sources=["upload", "microphone"], elem_id="audio")
                still = gr.Checkbox(label="Still head (a photo's lips only; a video keeps its own motion)",
                                    elem_id="still")
                head = gr.Slider(*options.HEAD_MOTION_RANGE, value=options.DEFAULT_HEAD_MOTION, step=0.1,
                                 label="Head motion (a photo's; 0: still, 1: the model's own)", elem_id="head_motion")
                blinks = gr.Slider(*options.BLINK_RATE_RANGE, value=options.DEFAULT_BLINK_RATE, step=1,
                                   label="Blinks per minute (a photo's; 0: none)", elem_id="blinks")
                go = gr.Button("Make the video", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="Talking head", format=None, interactive=False, buttons=["download"],
                                 height=420, elem_id="result")
                info = gr.Markdown(elem_id="info")
        with gr.Tab("Live", elem_id="live-tab"):
            from thflax.inference import live_page

            live_page.build_tab(gr, rtc, options.BLINK_RATE_RANGE, options.DEFAULT_BLINK_RATE, _one_line)
        # Outside the queue: a tab switch must not wait behind a render.
        photo_tab.select(lambda: "photo", None, mode, queue=False)
        source_tab.select(lambda: "video", None, mode, queue=False)
        go.click(run, [mode, photo, source, audio, text, voice, rate, pitch, still, blinks, head], [video, info],
                 concurrency_limit=1)
    return page


def _theme():
    """Gradio's default look with the system's fonts (its default fetches web fonts, which an offline
    machine cannot reach and a browser would wait for)."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "Consolas", "monospace"])


def main(argv) -> int:
    del argv
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline; nothing to report to anyone
    root = tempfile.mkdtemp(prefix="thflax-app-")
    # Gradio reads its upload/cache folder from the environment: inside ours, so one rmtree cleans all.
    os.environ["GRADIO_TEMP_DIR"] = os.path.join(root, "gradio")
    out_dir = os.path.join(root, "renders")
    os.makedirs(out_dir)
    # SIGTERM (a service manager, a test) ends the server like Ctrl-C, so the folder is removed: cli.run
    # makes both raise cli.Interrupted, a KeyboardInterrupt (while starting: one line, 143 or 130).
    try:
        from thflax.inference import caches, networks, shipped_model

        checkpoint = shipped_model.checkpoint_or_shipped(FLAGS.checkpoint)
        if FLAGS.compilation_cache:
            caches.enable_caches()  # before any JAX work
        live_rtc = None
        if importlib.util.find_spec("aiortc") is not None:
            # Before anything could import TensorFlow: aiortc's SRTP library crashes in its init after it.
            from thflax.inference import live_rtc
        config = cli.checkpoint_config(checkpoint) if cli.config_given() else None
        models = networks.load_models(checkpoint, config)  # before the slow import: fails fast
        if importlib.util.find_spec("gradio") is None:
            raise InputError("the app needs Gradio: pip install -e '.[app]'")
        rtc = live_rtc.LiveRtc(models) if live_rtc is not None else None
        from thflax.inference import live_page

        page = build(models, checkpoint, out_dir, rtc)
        page.queue(default_concurrency_limit=1)
        try:
            page.launch(server_name=FLAGS.host, server_port=FLAGS.port, inbrowser=FLAGS.open_browser,
                        theme=_theme(), ssr_mode=False, quiet=True, allowed_paths=[out_dir],
                        prevent_thread_lock=True, head=live_page.HEAD_SCRIPT)
        except OSError as e:  # the port is taken, or the address is not this machine's
            reason = ("the port is in use (give another with --port)" if "empty port" in str(e)
                      else " ".join(str(e).split()))
            raise InputError(f"cannot serve on {FLAGS.host}:{FLAGS.port}: {reason}") from None
        print(f"serving on {page.local_url} (Ctrl-C stops it)", flush=True)
        try:
            while page.is_running:  # until Ctrl-C or SIGTERM
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("stopping", flush=True)
        finally:
            page.close()
            if rtc is not None:
                rtc.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def run_cli() -> None:
    """The command `python -m thflax.app`: flags, the server until it is stopped, then an immediate exit."""
    define_flags()
    try:
        cli.run(main)
    except SystemExit as e:
        if e.code is not None and not isinstance(e.code, int):
            raise
        # main has cleaned up after itself; tearing JAX's and Gradio's objects down one by one would take
        # seconds more, so a stopped server ends at once (as generate.py does).
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(e.code or 0)


if __name__ == "__main__":
    run_cli()
