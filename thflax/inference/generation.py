"""Generation: one photo + speech -> talking-head mp4 (paper eq. 3: V = Ψ(Φ(A), P)).

    import thflax
    thflax.generate("runs/demo", "face.jpg", "speech.wav", "talking.mp4")
    thflax.generate("runs/demo", "face.jpg", out="hello.mp4", text="Hello there.")  # eSpeak NG speaks it
    thflax.generate("runs/demo", video="talk.mp4", audio="speech.wav", out="dubbed.mp4")  # see thflax.inference.dubbing

Steps: pick the highest-scoring face in the photo (dlib; `face_index`/`face_box` choose another), crop it as in training, take its landmarks as the
STL template and head start; MFCC windows of the speech; STL over the whole audio in chunks with the
GRU state carried across chunks (memory stays bounded for long audio); merge mouth and head (eq. 6);
LTV per frame in batches with the reference encoded once; paste each generated crop back into the
photo (or keep the crop); stream the frames into an H.264 mp4 and mux the original audio in.

Errors in inputs raise `thflax.errors.InputError` subclasses with one clear line; the output file is
written atomically, so a failure never leaves a half-written video.

Start-up: a short clip costs far more to start than to make (loading dlib, tracing and compiling the
networks). `enable_caches()` keeps, under `~/.cache/thflax` (or $THFLAX_CACHE_DIR), JAX's persistent
compilation cache, the traced STL/LTV functions (`jax.export`: a later run neither traces the model
code nor compiles it) and the face found in each photo (keyed by the file's bytes, so the same photo
skips dlib). generate.py turns them on; library users call it once before any JAX work. The speech
features are computed with NumPy (`thflax.io.audio.mfcc_numpy`), the same as `thflax.io.audio.mfcc` but without
importing librosa, whose import alone takes longer than generating a short clip.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import numbers
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from thflax.io import files
from thflax.errors import InputError
from thflax.inference.networks import Models, load_models, predict_landmarks, render_frames

__all__ = ["Models", "Reference", "cache_dir", "check_options", "detect_face", "enable_caches", "generate",
           "load_models", "predict_landmarks", "prepare_reference", "render_frames", "speak_to_wav"]

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class Reference:
    """The input photo prepared like a training frame."""

    image: np.ndarray  # [H, W, 3] uint8, the full photo
    landmarks: np.ndarray  # [68, 2] frame pixels
    box: Any  # thflax.face.crop.CropBox
    crop: np.ndarray  # [S, S, 3] uint8
    template: np.ndarray  # [68, 2] normalised crop coordinates


#: Without --size, photos are worked on (and written) at most this many pixels on their longer side:
#: time and memory then do not grow with the camera's resolution.
MAX_SIDE = 1024

#: Text-to-speech defaults (eSpeak NG): voice, words per minute and base pitch (0..100), and the
#: silence around the speech so the mouth starts and ends closed (as the demo's utterances do).
DEFAULT_VOICE = "en-us"
DEFAULT_RATE = 175
DEFAULT_PITCH = 50
RATE_RANGE = (80, 450)
PITCH_RANGE = (0, 100)
SPEECH_PADDING = (0.3, 0.4)

#: Ranges of generate's numeric options (inclusive), checked by `check_options` for the library, generate.py's
#: flags, a jobs file's rows and the web page alike. Frame rates above 120 and heights above 4096 pixels
#: are no talking-head video; unbounded, they allocate the whole audio's frames (`--fps 1e9`) or frames
#: of tens of GB (`--size 100000`) before failing. `batch` frames go through the generator at once (the
#: last batch is padded to it), so it bounds the accelerator's memory.
FPS_RANGE = (1.0, 120.0)
SIZE_RANGE = (16, 4096)
BATCH_RANGE = (1, 256)
#: The most pixels an output frame may have (a 4096-high frame with the landmark panel beside it): with
#: `size`, a very wide photo or video would otherwise make frames far wider than `size` is high.
MAX_FRAME_PIXELS = 4096 * 8192

# --- start-up caches ------------------------------------------------------------------------------

#: Environment variable naming the cache folder (default ~/.cache/thflax).
CACHE_ENV = "THFLAX_CACHE_DIR"
#: Cache files kept on disk (the oldest are dropped first).
MAX_FUNCTIONS = 64
MAX_FACES = 1000

_cache_root: str | None = None
#: What the caches did in this process (generate.py --timings prints it).
cache_stats = {"functions_loaded": 0, "functions_exported": 0, "faces_cached": 0, "faces_detected": 0,
               "xla_compiles": 0}


def cache_dir() -> str:
    """The start-up cache folder: $THFLAX_CACHE_DIR, else ~/.cache/thflax."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "thflax")


def enable_caches(path: str | None = None) -> str | None:
    """Keeps compiled programs and detected faces under `path` (default `cache_dir()`) across runs.

    Turns on JAX's persistent compilation cache (`path/jax`; every program, however quick to
    compile), the traced-function cache (`path/functions`: the STL/LTV functions exported with
    `jax.export` for this code, config and JAX version, loaded instead of tracing the model code)
    and the face cache (`path/faces`). Call before any JAX computation. Returns the folder, or None
    (with a warning) when it cannot be created; generation then works as without caches.
    """
    global _cache_root
    import jax

    path = os.path.abspath(os.path.expanduser(path or cache_dir()))
    try:
        for sub in ("jax", "functions", "faces"):
            os.makedirs(os.path.join(path, sub), exist_ok=True)
    except OSError as e:
        _log.warning("start-up cache disabled: cannot create %s (%s)", path, e.strerror or e)
        return None
    jax.config.update("jax_compilation_cache_dir", os.path.join(path, "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if _cache_root is None:
        from jax import monitoring

        def count(event: str, **kwargs) -> None:
            if event == "/jax/compilation_cache/cache_misses":
                cache_stats["xla_compiles"] += 1

        monitoring.register_event_listener(count)
    _cache_root = path
    return path


def _prune(folder: str, keep: int) -> None:
    """Drops the least recently written files beyond `keep` (cache folders must not grow forever)."""
    try:
        entries = [e for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".tmp-")]
        if len(entries) > keep:
            for e in sorted(entries, key=lambda e: e.stat().st_mtime)[:len(entries) - keep]:
                os.remove(e.path)
    except OSError:
        pass


def _file_stamp(path: str | None) -> str:
    try:
        st = os.stat(path)
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"
    except (OSError, TypeError):
        return f"{path}:missing"


@functools.lru_cache(maxsize=None)
def _sources_digest(names: tuple[str, ...] = ()) -> str:
    """Hash of thflax's own sources (all of them, or the files `names`, relative to the package's folder):
    a cached result is valid only for the code that made it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # thflax/
    paths = [os.path.join(root, n) for n in names]
    if not names:
        for folder, dirs, names_here in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            paths += [os.path.join(folder, f) for f in sorted(names_here) if f.endswith(".py")]
    h = hashlib.sha256()
    for path in paths:
        h.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


class _CachedFunction:
    """A jitted function whose traced and lowered form (`jax.export`) is kept in the cache folder.

    A later process loads it instead of tracing the Python model code again, and XLA's compilation
    of it comes from JAX's persistent cache. The key is the function's name, the model config, the
    argument shapes/dtypes, the package sources and the JAX/flax versions; any failure to read or
    write the cache falls back to exporting afresh.
    """

    def __init__(self, jitted: Any, name: str, context: str):
        self.jitted = jitted
        self.name = name
        self.context = context
        self._fns: dict[Any, Callable] = {}

    def __call__(self, *args, **kwargs):
        import jax

        if kwargs:  # not a call inference makes; no cache, same result
            return self.jitted(*args, **kwargs)
        leaves, tree = jax.tree.flatten(args)
        # Shapes and dtypes from the arrays' metadata: np.asarray (getattr's default is evaluated
        # eagerly) would copy every argument, the parameters included, to the host on every call.
        sig = (str(tree), tuple((tuple(np.shape(x)), str(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype),
                                 bool(getattr(x, "weak_type", False))) for x in leaves))
        fn = self._fns.get(sig)
        if fn is None:
            fn = self._fns[sig] = jax.jit(self._load_or_export(args, sig).call)
        return fn(*args)

    def _load_or_export(self, args: tuple, sig: Any):
        from jax import export

        key = hashlib.sha256(repr((self.context, self.name, sig)).encode()).hexdigest()
        folder = os.path.join(_cache_root, "functions")
        path = os.path.join(folder, f"{self.name.split('[')[0].replace('=', '-')}-{key[:40]}.jaxexport")
        try:
            with open(path, "rb") as f:
                exported = export.deserialize(bytearray(f.read()))
            cache_stats["functions_loaded"] += 1
            return exported
        except FileNotFoundError:
            pass
        except Exception as e:  # noqa: BLE001 - a stale or damaged entry: export afresh, replace it
            _log.warning("ignoring cached function %s (%s)", path, e)
        exported = export.export(self.jitted)(*args)
        cache_stats["functions_exported"] += 1
        try:
            files.atomic_write(path, bytes(exported.serialize()))
            _prune(folder, MAX_FUNCTIONS)
        except Exception as e:  # noqa: BLE001 - caching is an optimisation; generation goes on
            _log.warning("could not cache the traced %s in %s (%s)", self.name, folder, e)
        return exported


@dataclasses.dataclass
class _CachingModels(Models):
    """`Models` whose jitted functions go through the traced-function cache (see `enable_caches`).

    It shares its `_fns` with the `Models` it wraps, so what one video compiled serves the next.
    """

    _context: str = dataclasses.field(default="", repr=False)

    @classmethod
    def wrap(cls, models: Models) -> "_CachingModels":
        import flax
        import jax

        if isinstance(models, cls):
            return models
        context = json.dumps([_sources_digest(), models.config.to_json(), jax.__version__, flax.__version__,
                              jax.default_backend()])
        fields = {f.name: getattr(models, f.name) for f in dataclasses.fields(Models)}
        return cls(**fields, _context=context)

    def compiled(self, name: str, build: Callable[[], Any]):
        """As `Models.compiled`, with each jitted function (or tuple of them) cached on disk."""
        if name not in self._fns:
            built = build()

            def wrap(fn, label):
                return _CachedFunction(fn, label, self._context) if hasattr(fn, "lower") else fn

            if isinstance(built, tuple):
                built = tuple(wrap(f, f"{name}[{i}]") for i, f in enumerate(built))
            else:
                built = wrap(built, name)
            self._fns[name] = built
        return self._fns[name]


# --- the photo ------------------------------------------------------------------------------------


def load_photo(image_path: str, size: int | None = None,
               max_side: int = MAX_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """The photo at the size the output needs: (image [H, W, 3] uint8, the file's (width, height)).

    The file's size is what boxes shown to the user, and face_box, are measured in.

    Height `size` when given (never upscaled here: the final frames are), else the longer side at most
    `max_side`.
    """
    import cv2

    from thflax.io import video

    img = video.read_image(image_path)
    h, w = img.shape[:2]
    scale = min(1.0, size / h) if size else min(1.0, max_side / max(h, w))
    if scale < 1.0:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return img, (w, h)


def _face_cache_file(image_path: str, size: int | None, face_index: int | None,
                     face_box: tuple[int, int, int, int] | None) -> str | None:
    """Where the face chosen in this photo (file bytes) with these options is cached, or None."""
    if _cache_root is None:
        return None
    import importlib.util

    h = hashlib.sha256()
    try:
        with open(image_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    dlib_spec = importlib.util.find_spec("_dlib_pybind11")
    models_spec = importlib.util.find_spec("face_recognition_models")
    models_dir = list(models_spec.submodule_search_locations or [""])[0] if models_spec else ""
    # The code (photo loading, detection, choice), the options, dlib and its predictor file.
    code = _sources_digest(("inference/generation.py", "io/video.py", "face/landmarks.py"))
    h.update(repr((code, size, MAX_SIDE, face_index, face_box, _file_stamp(dlib_spec and dlib_spec.origin),
                   _file_stamp(os.path.join(models_dir, "models", "shape_predictor_68_face_landmarks.dat")))).encode())
    return os.path.join(_cache_root, "faces", h.hexdigest()[:40] + ".json")


def detect_face(image_path: str, face_index: int | None = None, face_box: tuple[int, int, int, int] | None = None,
                size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads the photo (see `load_photo`) and picks a face: (image, landmarks [68, 2] in its pixels).

    The highest-scoring face unless `face_index` (0 = highest score) or `face_box` (x0, y0, x1, y1 in
    the file's pixels, as every box it reports is) chooses another; which face was used is logged.
    With `enable_caches`, the choice for the same file and options is read back instead of running
    dlib again.
    """
    img, photo_size = load_photo(image_path, size)
    cached = _face_cache_file(image_path, size, face_index, face_box)
    if cached is not None:
        try:
            with open(cached) as f:
                entry = json.load(f)
            lm = np.asarray(entry["landmarks"], np.float32).reshape(68, 2)
            several = entry["num_faces"] > 1 and face_index is None and face_box is None
            _log.log(logging.WARNING if several else logging.INFO, "%s: %s (cached choice)", image_path,
                     entry["describe"])
            cache_stats["faces_cached"] += 1
            return img, lm
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from thflax.face import landmarks

    # face_box stays in the file's pixels: choose_face reads it, and reports every box, in those.
    choice = landmarks.FaceLandmarker().choose_face(img, name=image_path, face_index=face_index, face_box=face_box,
                                                    photo_size=photo_size)
    cache_stats["faces_detected"] += 1
    if cached is not None:
        entry = {"landmarks": np.asarray(choice.landmarks, np.float32).tolist(), "describe": choice.describe(),
                 "num_faces": choice.num_faces}
        try:
            files.atomic_write(cached, json.dumps(entry).encode())
            _prune(os.path.dirname(cached), MAX_FACES)
        except (OSError, InputError):  # caching is an optimisation
            pass
    return img, choice.landmarks


def prepare_reference(image_path: str, size: int, face: tuple[np.ndarray, np.ndarray] | None = None) -> Reference:
    """The photo's chosen face cropped as in training (`face` = a `detect_face` result to reuse)."""
    from thflax.face import crop

    img, lm = face if face is not None else detect_face(image_path)
    box = crop.clip_box(lm)
    return Reference(img, lm, box, crop.crop(img, box, size), box.to_crop(lm))


def _paste(image: np.ndarray, crop_img: np.ndarray, box: Any) -> np.ndarray:
    """`thflax.face.crop.paste`, blending only the box's region (the rest of the photo is copied as is)."""
    from thflax.face import crop as crop_lib

    h, w = image.shape[:2]
    x0, y0 = max(0, int(np.floor(box.x0)) - 2), max(0, int(np.floor(box.y0)) - 2)
    x1, y1 = min(w, int(np.ceil(box.x0 + box.side)) + 2), min(h, int(np.ceil(box.y0 + box.side)) + 2)
    out = image.copy()
    if x1 > x0 and y1 > y0:
        local = crop_lib.CropBox(box.x0 - x0, box.y0 - y0, box.side)
        out[y0:y1, x0:x1] = crop_lib.paste(np.ascontiguousarray(image[y0:y1, x0:x1]), crop_img, local)
    return out


# --- speech ---------------------------------------------------------------------------------------


def _check_number(name: str, value: Any, bounds: tuple[float, float] | None, whole: bool, unit: str = "") -> None:
    """InputError (one line) unless `value` is a finite number (whole when `whole`; never a bool) within
    `bounds` (inclusive; None: 0 or more). NaN compares false with everything, so finiteness is tested
    on its own."""
    where = f"{bounds[0]:g}..{bounds[1]:g}{unit}" if bounds else "0 or more"
    if not isinstance(value, numbers.Integral if whole else numbers.Real) or isinstance(value, bool):
        raise InputError(f"{name} must be {'a whole number' if whole else 'a number'} ({where}), not {value!r}")
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if not math.isfinite(value) or not (bounds[0] <= value <= bounds[1] if bounds else value >= 0):
        raise InputError(f"{name} {shown} is out of range ({where})")


def check_options(*, fps: float | None = None, size: int | None = None, batch: int = 16, rate: int = DEFAULT_RATE,
                  pitch: int = DEFAULT_PITCH, face_index: int | None = None,
                  face_box: tuple[int, int, int, int] | None = None, prefix: str | None = None) -> None:
    """Raises InputError (one line) for a numeric option of `generate` that is not a number or out of
    its range (`FPS_RANGE`, `SIZE_RANGE`, `BATCH_RANGE`, `RATE_RANGE`, `PITCH_RANGE`; face_index 0 or
    more; face_box four finite pixel numbers x0 < x1, y0 < y1).

    The one place these are checked: `generate` calls it first, and generate.py calls it for its flags
    and every jobs row before any model is loaded, so a bad value costs no work and writes nothing.
    `prefix` names the options as the caller's user wrote them: "--" for flags (--fps), "" for a jobs
    file's columns (rate); None for the library's names (fps, speech rate).
    """

    def name(option: str, plain: str) -> str:
        return plain if prefix is None else prefix + option

    if fps is not None:
        _check_number(name("fps", "fps"), fps, FPS_RANGE, whole=False, unit=" frames per second")
    if size is not None:
        _check_number(name("size", "size"), size, SIZE_RANGE, whole=True, unit=" pixels")
    _check_number(name("batch", "batch"), batch, BATCH_RANGE, whole=True, unit=" frames")
    _check_number(name("rate", "speech rate"), rate, RATE_RANGE, whole=True, unit=" words per minute")
    _check_number(name("pitch", "speech pitch"), pitch, PITCH_RANGE, whole=True)
    if face_index is not None:
        _check_number(name("face_index", "face_index"), face_index, None, whole=True)
    if face_box is not None:
        box = tuple(face_box) if isinstance(face_box, (tuple, list)) else ()
        if (len(box) != 4 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                                     for v in box) or not (box[0] < box[2] and box[1] < box[3])):
            raise InputError(f"{name('face_box', 'face_box')} must be four pixel numbers x0,y0,x1,y1 with x0 < x1 "
                             f"and y0 < y1, not {face_box!r}")


def _check_frame(height: int, width: int, size: int | None, crop_only: bool, landmarks_video: bool) -> None:
    """InputError unless the output frames made from a `height` x `width` picture fit `MAX_FRAME_PIXELS`
    (only `size` can make them large: without it pictures are read at most `MAX_SIDE` pixels)."""
    if size is None:
        return
    out_w = size if crop_only else int(round(width * size / max(height, 1) / 2)) * 2
    out_w += size if landmarks_video else 0
    if size * out_w > MAX_FRAME_PIXELS:
        raise InputError(f"size {size} makes {out_w}x{size} frames from the {width}x{height} picture: more than "
                         f"{MAX_FRAME_PIXELS:,} pixels (give a smaller size)")


def _check_speech_options(text: Any, voice: str, rate: int, pitch: int) -> None:
    """Raises InputError for text-to-speech arguments eSpeak NG cannot use (before any slow work)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text to speak is empty")
    if not isinstance(voice, str) or not voice.strip():
        raise InputError("no voice given for the text")
    _check_number("speech rate", rate, RATE_RANGE, whole=True, unit=" words per minute")
    _check_number("speech pitch", pitch, PITCH_RANGE, whole=True)


def speak_to_wav(text: str, path: str, voice: str = DEFAULT_VOICE, rate: int = DEFAULT_RATE,
                 pitch: int = DEFAULT_PITCH) -> float:
    """Speaks `text` offline with eSpeak NG into a 16 kHz wav at `path`; returns its length in seconds.

    The speech has `SPEECH_PADDING` seconds of silence before and after it. Raises InputError for
    empty text, an unknown voice, a rate or pitch out of range, or text that gives no speech.
    """
    _check_speech_options(text, voice, rate, pitch)
    import soundfile as sf

    from thflax.io import speech

    try:
        utt = speech.synthesize(" ".join(text.split()), voice=voice, rate=int(rate), pitch=int(pitch),
                                leading_silence=SPEECH_PADDING[0], trailing_silence=SPEECH_PADDING[1])
    except ValueError as e:
        if "voice" not in str(e):
            raise
        raise InputError(f"unknown voice {voice!r}: eSpeak NG cannot load it (voices include "
                         f"{', '.join(speech.VOICES[:6])})") from e
    except RuntimeError as e:
        raise InputError(f"eSpeak NG made no speech from the text {text[:60]!r}") from e
    try:
        sf.write(path, utt.audio, utt.sample_rate, subtype="PCM_16")
    except (OSError, RuntimeError) as e:
        raise InputError(f"cannot write the speech to {path}: {e}") from e
    return utt.duration


# --- generation -----------------------------------------------------------------------------------


class _Clock:
    """Seconds spent in each step of `generate` (reported in its summary)."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.times[step] = self.times.get(step, 0.0) + now - self._t
        self._t = now


def generate(checkpoint: str, image: str | None = None, audio: str | None = None, out: str | None = None, *,
             video: str | None = None, text: str | None = None, voice: str = DEFAULT_VOICE,
             rate: int = DEFAULT_RATE, pitch: int = DEFAULT_PITCH, still: bool = False,
             landmarks_video: bool = False, crop_only: bool = False, fps: float | None = None,
             size: int | None = None, batch: int = 16, progress: bool | Callable[[int, int], None] = True, config=None,
             models: Models | None = None, face_index: int | None = None,
             face_box: tuple[int, int, int, int] | None = None) -> dict[str, Any]:
    """Speech (or text) + photo -> mp4 with the speech muxed in. Returns a summary (frames, seconds, paths, timings).

    Args:
      checkpoint: a training workdir (stl/ and ltv/ checkpoints) or an export bundle (`thflax.inference.params.export`).
      image, audio: input files (any image OpenCV reads; wav/flac/mp3/mp4... at any sample rate).
      video: a source video instead of `image` (exactly one of them): dubbing (`thflax.inference.dubbing`). Every
        frame of the video is kept (background, body, its own head motion) and only the lower face is
        re-animated from the speech; the output has the video's frame rate. Longer speech plays the
        video forward and backward, shorter speech cuts it. `still` has no effect (the head moves as in
        the video); `face_index`/`face_box` are for photos (the video's face is tracked).
      out: output .mp4 path (written atomically).
      text: words to speak instead of `audio` (exactly one of them): synthesised offline with eSpeak NG
        (`speak_to_wav`) in `voice` at `rate` words/min (80..450) and base `pitch` 0..100; the video's audio
        track is that speech. The temporary wav is deleted however generation ends.
      still: keep the head still (template head points), animate the lips only.
      landmarks_video: put the predicted landmark sketch beside each frame.
      crop_only: write the generated face crop instead of pasting it back into the photo.
      fps: output frame rate, 1..120 (MFCC windows are centred on these frames); default 25 for a photo.
        With a video the output has the video's rate, and a different `fps` is refused.
      size: output height in pixels, 16..4096 (width follows the aspect ratio; a frame may have at most
        `MAX_FRAME_PIXELS`); default: the photo's, at most `MAX_SIDE` on the longer side.
      batch: frames per generator call, 1..256 (bounds the accelerator's memory).
      progress: a tqdm bar on stderr (True), none (False), or a function called with (frames written,
        total frames) after each frame, e.g. to drive a web page's progress bar (`thflax.inference.app`).
      models: loaded models to reuse (many videos, one load and one compilation).
      face_index, face_box: which face of the photo (see `detect_face`); default the highest-scoring.

    Raises InputError (one line) for a bad input, a numeric option out of range (`check_options`, checked
    before anything is read or written) or an output that cannot be written.
    """
    if out is None:
        raise InputError("no output path given")
    if (image is None) == (video is None):
        raise InputError("give an image or a video, not both" if image is not None
                         else "give an image (a photo) or a video")
    if (audio is None) == (text is None):
        raise InputError("give either audio or text to speak, not both" if audio is not None
                         else "give audio or text to speak")
    if video is not None and (face_index is not None or face_box is not None):
        raise InputError("face_index and face_box choose a face in a photo; a video's face is tracked")
    # Every numeric option first (one place, see check_options): a bad value costs no work, writes nothing.
    check_options(fps=fps, size=size, batch=batch, rate=rate, pitch=pitch, face_index=face_index, face_box=face_box)
    if text is not None:
        _check_speech_options(text, voice, rate, pitch)
    from thflax.io import audio as audio_lib
    from thflax.io import video as video_lib

    clock = _Clock()
    # Inputs and the output are checked before the (slower) model loading, so mistakes fail at once.
    video_lib.check_output(out, [image or video, audio])
    if video is None:
        fps = 25.0 if fps is None else fps
        face = detect_face(image, face_index=face_index, face_box=face_box, size=size)
        _check_frame(*face[0].shape[:2], size, crop_only, landmarks_video)
        clock.mark("detect")
    else:
        from thflax.inference import dubbing

        source_fps, width, height = dubbing.probe(video)
        _check_frame(height, width, size, crop_only, landmarks_video)
        if fps is not None and abs(fps - source_fps) > 1e-3:
            raise InputError(f"fps {fps:g} differs from the frame rate of {video} ({source_fps:g}): a dubbed "
                             "video keeps its own rate (leave fps out)")
        fps = source_fps
    tmp_wav = None
    try:
        if text is not None:
            fd, tmp_wav = tempfile.mkstemp(prefix="thflax-speech-", suffix=".wav")
            os.close(fd)
            speak_to_wav(text, tmp_wav, voice, rate, pitch)
            audio = tmp_wav
            clock.mark("speak")
        try:
            speech = audio_lib.load_audio(audio)
        except InputError as e:
            if text is None:
                raise
            reason = str(e).removeprefix(f"{tmp_wav}: ")
            raise InputError(f"the text {text[:60]!r} gives no usable speech ({reason})") from e
        clock.mark("audio")
        if video is not None:
            # Tracked before the models load, so a video without a face fails at once.
            num_frames = audio_lib.num_video_frames(speech.size, fps)
            if num_frames < 1:
                raise InputError(f"{audio}: too short for one video frame at {fps:g} fps")
            source = dubbing.SourceVideo.track(video, max_frames=num_frames, size=size, max_side=MAX_SIDE)
            clock.mark("track")
        models = models or load_models(checkpoint, config)
        if _cache_root is not None:
            models = _CachingModels.wrap(models)
        clock.mark("load")
        if video is not None:
            summary = dubbing.render(models, source, audio, out, speech, clock, landmarks_video=landmarks_video,
                                     crop_only=crop_only, size=size, batch=batch, progress=progress)
        else:
            summary = _render(models, image, audio, out, speech, face, clock, still=still,
                              landmarks_video=landmarks_video, crop_only=crop_only, fps=fps, size=size,
                              batch=batch, progress=progress)
    finally:
        if tmp_wav is not None:
            try:
                os.remove(tmp_wav)
            except OSError:
                pass
    summary["timings"] = clock.times
    return summary


def _render(models: Models, image: str, audio: str, out: str, speech: np.ndarray,
            face: tuple[np.ndarray, np.ndarray], clock: _Clock, *, still: bool, landmarks_video: bool,
            crop_only: bool, fps: float, size: int | None, batch: int,
            progress: bool | Callable[[int, int], None]) -> dict[str, Any]:
    """The part of `generate` after its inputs are checked and loaded: features, networks, mp4."""
    from thflax.io import audio as audio_lib

    s = models.image_size
    reference = prepare_reference(image, s, face)
    mcfg = models.mfcc_config
    feats = audio_lib.mfcc_numpy(speech, mcfg)
    num_frames = audio_lib.num_video_frames(speech.size, fps, mcfg.sample_rate)
    if num_frames < 1:
        raise InputError(f"{audio}: too short for one video frame at {fps} fps")
    windows = audio_lib.frame_windows(feats, num_frames, fps, mcfg)
    clock.mark("features")
    chunks = predict_landmarks(models, windows, reference.template, still=still)
    frames = render_frames(models, reference.crop, reference.template, chunks, batch=batch, with_mask=True)
    full_res_warp = bool(models.generator.warp) and not crop_only

    def compose(img, lm, mask):
        if crop_only:
            frame = img
        elif full_res_warp:
            # The photo warped to the frame's landmarks at its own resolution; the generated crop only
            # where the network changed it (see crop.paste_masked): no blur outside, no square seam.
            from thflax.face import crop as crop_lib
            from thflax.face import warp

            target_px = reference.box.to_frame(lm)
            moved = warp.warp_numpy(reference.image, reference.landmarks, target_px)
            frame = crop_lib.paste_masked(moved, img, reference.box, mask, target_px)
        else:
            frame = _paste(reference.image, img, reference.box)
        return finish_frame(frame, lm, s, landmarks_video, size)

    written = write_frames((compose(img, lm, mask) for img, lm, mask in frames), out, fps, audio, num_frames,
                           clock, progress)
    return {"out": os.path.abspath(out), "frames": written, "seconds": written / fps}


def finish_frame(frame: np.ndarray, lm: np.ndarray, crop_size: int, landmarks_video: bool,
                 size: int | None) -> np.ndarray:
    """An output frame as every path makes it: the landmark sketch (lm [68, 2], crop coordinates)
    beside it with `landmarks_video`, resized to height `size` when given."""
    import cv2

    if landmarks_video:
        from thflax.face import plotting

        side = plotting.draw_landmarks(np.full((crop_size, crop_size, 3), 255, np.uint8), lm, (200, 0, 0))
        side = cv2.resize(side, (frame.shape[0], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
        frame = np.concatenate([frame, side], axis=1)
    if size is not None and frame.shape[0] != size:
        w = int(round(frame.shape[1] * size / frame.shape[0] / 2)) * 2
        frame = cv2.resize(frame, (w, size), interpolation=cv2.INTER_AREA)
    return frame


def write_frames(frames: Iterable[np.ndarray], out: str, fps: float, audio: str, total: int, clock,
                 progress: bool | Callable[[int, int], None], desc: str = "generating") -> int:
    """Streams frames [H, W, 3] uint8 into `out` with `audio` muxed in (atomically); `progress` as in
    `generate` (a tqdm bar, nothing, or a function of (written, total)). Returns the count."""
    from thflax.io import video

    report = progress if callable(progress) else None
    bar = None
    if progress and report is None:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="frame", disable=None)  # None: off when not a terminal
    # Made in the with statement: a signal between making it (its temporary file) and entering the
    # block would leave that file behind.
    with video.VideoWriter(out, fps=fps, audio_path=audio) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame)
            if bar is not None:
                bar.update(1)
            if report is not None:
                report(i + 1, total)
            if i == 0:
                clock.mark("first_frame")
        clock.mark("render")
    clock.mark("mux")
    if bar is not None:
        bar.close()
    return writer.num_frames
