"""What every command-line entry point shares: absl flags, the `--config` flag, one-line errors.

Every CLI takes `--config` (a config file) with `--config.a.b=value` overrides, as `train.py` does
(ml_collections' config_flags), and flags spelled with underscores. A mistake on the command line or
in the inputs prints one line `error: ...` and exits with status 2 (never a traceback).

SIGTERM and Ctrl-C (SIGINT) stop a run the same way: `Interrupted` is raised in the main thread, so
every `finally` and context manager on the way up cleans up (temporary outputs, ffmpeg children,
temporary files), and the run ends with one line `error: interrupted (SIGTERM)` and exit status
128 + the signal's number (143, 130), as a shell reports a process killed by it.

The console is quiet by default (`setup_logging`): our own log lines, metrics, progress and warnings that
concern the user; library chatter (INFO logs of orbax/TFDS/JAX, their known harmless warnings,
deprecation warnings, TensorFlow's C++ log such as the oneDNN banner) only with `--verbose`.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import NoReturn

from absl import app, flags

from thflax.errors import InputError

#: The schema every config extends (configs/default.py), as a path that works from any folder.
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "default.py")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TensorFlow reads its C++ log level once, when first imported (which the CLIs do only inside `main`):
# quiet unless --verbose; a level the user set is left alone.
_TF_LOG_LEVEL_GIVEN = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# OpenCV's log ("[ERROR:0@0.009] global loadsave.cpp:577 imread_ ...") and that of the ffmpeg inside
# OpenCV ("[mov,mp4,...] moov atom not found"), both read when OpenCV first needs them: quiet unless
# --verbose (our reads report their failures as one line, with the cause: thflax.io.video); levels the
# user set are left alone. -8 is ffmpeg's AV_LOG_QUIET.
_OPENCV_QUIET = {"OPENCV_LOG_LEVEL": "FATAL", "OPENCV_FFMPEG_LOGLEVEL": "-8"}
_OPENCV_GIVEN = {k for k in _OPENCV_QUIET if k in os.environ}
for _key, _level in _OPENCV_QUIET.items():
    os.environ.setdefault(_key, _level)

#: Library warnings that say nothing a user can act on (hidden unless --verbose).
_LIBRARY_NOISE = re.compile("|".join((
    r"CheckpointManagerOptions\.read_only=True",  # orbax, on every read-only restore
    r"Given directory is read only",  # orbax, idem
    r"`\w+\.dtype` is deprecated",  # TFDS decoding its own features
    r"is deprecated and will be removed",  # TensorFlow's deprecation notices for calls made inside libraries
)))
#: Library INFO lines that are ours to show: clu's metric writer (metrics) and ReportProgress (steps/s, ETA).
_LIBRARY_INFO = (os.path.join("clu", "metric_writers", ""), os.path.join("clu", "platform", ""))


_INSTALLED = re.compile(re.escape(os.sep) + r"(?:site|dist)-packages" + re.escape(os.sep))


def _is_ours(path: str) -> bool:
    """Whether a log record comes from this project's code (checked out or installed)."""
    parts = _INSTALLED.split(path)
    if len(parts) > 1:
        return parts[-1].split(os.sep, 1)[0] in ("thflax", "input_pipeline", "configs")
    return path.startswith(_ROOT + os.sep)


class QuietLibraries(logging.Filter):
    """Keeps our log records; of the libraries' only warnings and errors, without the known harmless ones."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname or ""
        if _is_ours(path) or record.levelno >= logging.ERROR:
            return True
        if record.levelno < logging.WARNING:
            return any(p in path for p in _LIBRARY_INFO)
        return not _LIBRARY_NOISE.search(record.getMessage())


_QUIET = QuietLibraries()


def define_verbose() -> None:
    """`--verbose`: show the libraries' chatter too (every CLI has it; `run` defines it)."""
    if "verbose" not in flags.FLAGS:
        flags.DEFINE_bool("verbose", False, "Show library chatter: INFO logs of orbax/TFDS/JAX, their deprecation "
                          "warnings and TensorFlow's C++ log (e.g. the oneDNN banner).")


def setup_logging(verbose: bool = False) -> None:
    """The console of every CLI: quiet (see the module docstring) unless `verbose`.

    Call it before TensorFlow is imported for its C++ log level to apply; `run` does.
    """
    root = logging.getLogger()
    handlers = [h for lg in (root, logging.getLogger("absl"), logging.getLogger("tensorflow")) for h in lg.handlers]
    if verbose:
        if not _TF_LOG_LEVEL_GIVEN:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        for key in set(_OPENCV_QUIET) - _OPENCV_GIVEN:
            os.environ.pop(key, None)
        if "cv2" in sys.modules and "OPENCV_LOG_LEVEL" not in _OPENCV_GIVEN:  # read already: set it directly
            import cv2.utils.logging

            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)  # OpenCV's default
        for h in handlers:
            h.removeFilter(_QUIET)
        if not sys.warnoptions:
            warnings.simplefilter("default")  # every warning, once per place
        return
    for h in handlers:
        if _QUIET not in h.filters:
            h.addFilter(_QUIET)
    if not sys.warnoptions:  # -W / PYTHONWARNINGS win
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)


def define_config(default: str | None = DEFAULT_CONFIG, help_text: str = "Config file.") -> None:
    """`--config` (a config file, default the schema) with `--config.x.y=value` overrides."""
    from ml_collections import config_flags

    try:  # config_flags reads the --config.x=y overrides of sys.argv here, at definition
        config_flags.DEFINE_config_file("config", default, help_text, lock_config=True)
    except Exception as e:  # noqa: BLE001 - a bad override: one line, as for every other flag mistake
        fail(_config_error(e))


def fail(message: str) -> None:
    """Prints one line and exits with status 2."""
    text = " ".join(str(message).split())
    print(f"error: {text}", file=sys.stderr)
    sys.exit(2)


def _config_error(e: BaseException) -> str:
    """One line for an error raised while loading or overriding a config."""
    text = " ".join(str(e).split())
    unknown = re.search(r"Did you mean \"([\w.]+)\" instead of \"([\w.]+)\"", text)
    if unknown:  # ConfigDict's KeyError, escaped several times over by config_flags
        return f"unknown config key {unknown.group(2)!r} (did you mean {unknown.group(1)!r}?)"
    if isinstance(e, (KeyError, AttributeError)):  # an override naming a key the schema does not have
        key = text.strip("'\"")
        given = [a.split("=")[0] for a in sys.argv[1:] if a.startswith("--config.") and key in a.split("=")[0].split(".")]
        return f"unknown config key {given[0][len('--config.'):] if given else key!r}"
    if isinstance(e, OSError) and "No such file" in text:
        return f"config file not found: {flags.FLAGS['config'].config_filename}"
    return text if text.startswith("--config") else f"--config: {text}"


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:  # a config file or override fails with a cause; a plain flag mistake without
        fail(_config_error(e.__cause__) if e.__cause__ is not None else " ".join(str(e).split()))
    except Exception as e:  # noqa: BLE001 - anything a config file or an override raises: one line
        fail(_config_error(e))
    if "config" in flags.FLAGS:
        try:  # config_flags defers a failed load to the first use: fail here instead
            flags.FLAGS.config.keys()
        except Exception as e:  # noqa: BLE001
            fail(_config_error(e.__cause__ or e))
    setup_logging(bool(flags.FLAGS["verbose"].value) if "verbose" in flags.FLAGS else False)
    return rest


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) as an exception in the main thread, so cleanups run as for Ctrl-C.

    A KeyboardInterrupt, so code that stops on Ctrl-C (the web page's server loop) stops on SIGTERM
    alike, and `except Exception` does not swallow it.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum: int, frame) -> NoReturn:
    raise Interrupted(signum)


def _resend_swallowed(unraisable) -> None:
    """sys.unraisablehook: an `Interrupted` raised where Python cannot raise (a gc callback such as
    JAX's, a __del__, a ctypes callback) would be printed as "Exception ignored" and lost, the run
    going on; the signal is sent again instead, shortly after, from another thread, so that it is
    raised at an ordinary line of the main thread and not inside this hook (which would print it)."""
    exc = unraisable.exc_value
    if isinstance(exc, Interrupted):
        resend = threading.Timer(0.05, os.kill, (os.getpid(), exc.signum))
        resend.daemon = True
        resend.start()
    else:
        _previous_unraisablehook(unraisable)


_previous_unraisablehook = sys.unraisablehook


def catch_signals() -> None:
    """Makes SIGINT and SIGTERM raise `Interrupted` (main thread only; a signal the parent set to be
    ignored, e.g. SIGINT for a background job, stays ignored). `run` calls it."""
    global _previous_unraisablehook
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise_interrupted)
    if sys.unraisablehook is not _resend_swallowed:
        _previous_unraisablehook, sys.unraisablehook = sys.unraisablehook, _resend_swallowed


def _stop(e: KeyboardInterrupt) -> NoReturn:
    """The one line for a run stopped by a signal, and exit status 128 + its number."""
    signum = getattr(e, "signum", signal.SIGINT)  # a plain KeyboardInterrupt is Ctrl-C
    print(f"error: interrupted ({signal.Signals(signum).name})", file=sys.stderr, flush=True)
    sys.exit(128 + signum)


def run(main: Callable[[list[str]], int | None]) -> None:
    """absl's app.run, with flag mistakes and InputErrors as one line and exit status 2, SIGTERM and
    Ctrl-C as one line and 128 + the signal's number (`catch_signals`), `--verbose` and a quiet
    console (`setup_logging`)."""
    define_verbose()
    catch_signals()

    def guarded(argv):
        try:
            return main(argv)
        except InputError as e:
            fail(e)

    try:
        app.run(guarded, flags_parser=_parse_flags)
    except KeyboardInterrupt as e:  # cleanups on the way up have run; also during flag parsing
        _stop(e)


def config_given() -> bool:
    """Whether `--config` or any `--config.x=y` override was on the command line."""
    return bool(flags.FLAGS["config"].present) or bool(overrides())


def overrides() -> dict:
    """The `--config.x.y=value` overrides given on the command line, by dotted path."""
    from ml_collections import config_flags

    return dict(config_flags.get_override_values(flags.FLAGS["config"]))


def checkpoint_config(path: str):
    """The config for a trained workdir/export: the `--config` file if given, else the saved one,
    with the command line's `--config.x=y` overrides applied either way."""
    from thflax.inference import params

    if flags.FLAGS["config"].present:
        return flags.FLAGS.config
    return apply_overrides(params.load_config(path))


def apply_overrides(config):
    """`config` with the command line's `--config.x.y=value` overrides set (in place)."""
    for key, value in overrides().items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config
