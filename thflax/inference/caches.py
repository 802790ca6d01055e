"""Start-up caches for generation: compiled programs, traced functions and the face found in each photo.

A short clip costs far more to start than to make (loading dlib, tracing and compiling the networks).
`enable_caches()` keeps, under `~/.cache/thflax` (or $THFLAX_CACHE_DIR), JAX's persistent compilation
cache, the traced STL/LTV functions (`jax.export`: a later run neither traces the model code nor compiles
it) and the face found in each photo (keyed by the file's bytes, so the same photo skips dlib).
generate.py turns them on; library users call it once before any JAX work.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from thflax.inference.networks import Models
from thflax.inference.options import MAX_SIDE
from thflax.io import files

_log = logging.getLogger(__name__)

#: Cache files kept on disk (the oldest are dropped first).
MAX_FUNCTIONS = 64
MAX_FACES = 1000

_cache_root: str | None = None
#: What the caches did in this process (generate.py --timings prints it).
cache_stats = {"functions_loaded": 0, "functions_exported": 0, "faces_cached": 0, "faces_detected": 0,
               "xla_compiles": 0}


def enable_caches(path: str | None = None) -> str | None:
    """Keeps compiled programs and detected faces under `path` (default `files.cache_dir()`) across runs.

    Turns on JAX's persistent compilation cache (`path/jax`; every program, however quick to
    compile), the traced-function cache (`path/functions`: the STL/LTV functions exported with
    `jax.export` for this code, config and JAX version, loaded instead of tracing the model code)
    and the face cache (`path/faces`). Call before any JAX computation. Returns the folder, or None
    (with a warning) when it cannot be created; generation then works as without caches.
    """
    global _cache_root
    import jax

    path = os.path.abspath(os.path.expanduser(path or files.cache_dir()))
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


def prune(folder: str, keep: int) -> None:
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
            prune(folder, MAX_FUNCTIONS)
        except Exception as e:  # noqa: BLE001 - caching is an optimisation; generation goes on
            _log.warning("could not cache the traced %s in %s (%s)", self.name, folder, e)
        return exported


@dataclasses.dataclass
class CachingModels(Models):
    """`Models` whose jitted functions go through the traced-function cache (see `enable_caches`).

    It shares its `_fns` with the `Models` it wraps, so what one video compiled serves the next.
    """

    _context: str = dataclasses.field(default="", repr=False)

    @classmethod
    def wrap(cls, models: Models) -> "CachingModels":
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


def face_cache_file(image_path: str, size: int | None, face_index: int | None,
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
    # The code (photo loading, detection, choice), the options, dlib and its predictor file.
    code = _sources_digest(("inference/photo.py", "io/video.py", "face/landmarks.py"))
    h.update(repr((code, size, MAX_SIDE, face_index, face_box, _file_stamp(dlib_spec and dlib_spec.origin),
                   _predictor_stamp())).encode())
    return os.path.join(_cache_root, "faces", h.hexdigest()[:40] + ".json")


def _predictor_stamp() -> str | None:
    from thflax.face.landmarks import dlib_model_file

    try:
        return _file_stamp(dlib_model_file("shape_predictor_68_face_landmarks.dat"))
    except ModuleNotFoundError:
        return None


def root() -> str | None:
    """The cache folder `enable_caches` turned on in this process, or None."""
    return _cache_root
