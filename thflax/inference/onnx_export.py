"""A trained model -> ONNX files that onnxruntime runs without JAX (`export.py --format onnx`).

What is exported is what generation runs (`thflax.inference.networks`), as three graphs with fixed shapes
(S = `config.ltv.image_size`, W = `config.stl.mfcc_window`, n = `config.stl.n_mfcc`, G = the GRU state size):

* `stl.onnx`, one STL chunk step (`networks.predict_landmarks`): inputs `mfcc` [1, T, W, n] float32
  (one MFCC window per video frame), `template` [1, 68, 2] (the reference face's landmarks, normalised
  crop coordinates), `state` [1, G] (the GRU states of the branches, concatenated; zeros at the start of
  the speech) -> outputs `landmarks` [1, T, 68, 2] and `state_out` [1, G], fed back as `state` for the
  next chunk, so a long speech runs chunk by chunk with the result of one pass. Pad the last chunk (e.g.
  repeat its last window) and drop the padded frames.
* `generator_encode.onnx`, the reference encoding, run once per video: `reference` [1, S, S, 3] float32
  in [-1, 1], `reference_landmarks` [1, 68, 2] -> `reference_features` [1, F] (the generator's cached
  per-level features, flattened and concatenated into one vector).
* `generator_decode.onnx`, per batch of B frames: `reference_features` [1, F], `target_landmarks`
  [B, 68, 2] -> `image` [B, S, S, 3] float32 in [-1, 1] (uint8 pixels: round(clip((x + 1) · 127.5, 0, 255)))
  and `mask` [B, S, S] (the attention mask). Pad the last batch as for the STL.

`thflax_onnx.json` beside them lists each file's input and output names, shapes and dtypes, T, B, S, the
MFCC configuration (sample rate, window, n_mfcc) and the config the model was trained with.

Converter: jax2onnx. Two of its behaviours are worked around here: its `jnp.shape` returns traced values
(the generator reads sizes from `.shape`), and its traces of module-level `jax.jit` functions (the
sketch rasteriser) stay in JAX's caches with primitives XLA cannot compile, so the caches are cleared
after every conversion. The reference features leave the encoder as one flat vector because the
converter once returned a level's features in NCHW layout when they were a graph output of their own.
Every graph is checked against JAX on probe inputs before anything is written (`check_tolerance`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from thflax.errors import CheckpointError, InputError
from thflax.inference import params
from thflax.inference.networks import Models, head_scale, load_models
from thflax.io import files

INFO_FILE = "thflax_onnx.json"
STL_FILE = "stl.onnx"
ENCODE_FILE = "generator_encode.onnx"
DECODE_FILE = "generator_decode.onnx"
#: Default fixed shapes: the STL chunk and the generator batch of `networks.predict_landmarks` / `render_frames`.
DEFAULT_CHUNK = 250
DEFAULT_BATCH = 16
#: Largest |ONNX − JAX| accepted on the probe inputs when exporting (float32 outputs of order 1).
CHECK_TOLERANCE = 1e-3


def is_onnx_export(path: str) -> bool:
    return os.path.isfile(os.path.join(path, INFO_FILE))


def _carry_keys(models: Models) -> tuple[str, ...]:
    """The STL net's GRU carries, in the order they are concatenated into `state`."""
    return ("lip", "head") if bool(models.config.stl.split) else ("full",)


def stl_step(models: Models) -> tuple[Callable, int]:
    """(fn(mfcc [1, T, W, n], template [1, 68, 2], state [1, G]) -> (landmarks [1, T, 68, 2], state_out [1, G]), G).

    The chunk step of `networks.predict_landmarks` (not "still"; the model's own `stl.head_gain`) with its
    carry as one array, so that an ONNX caller carries a single tensor from chunk to chunk.
    """
    import jax.numpy as jnp

    from thflax.face import geometry

    keys, width = _carry_keys(models), int(models.config.stl.gru_features)
    model, variables = models.stl, models.stl_variables
    scale = head_scale(models)

    def step(mfcc, template, state):
        carry = {k: state[:, i * width:(i + 1) * width] for i, k in enumerate(keys)}
        out, carry = model.apply(variables, mfcc, template, carry=carry, train=False)
        lm = out["landmarks"] if scale == 1.0 else geometry.scale_head_motion(out["landmarks"], template, scale)
        return lm, jnp.concatenate([carry[k].astype(jnp.float32) for k in keys], -1)

    return step, len(keys) * width


def generator_steps(models: Models) -> tuple[Callable, Callable, int]:
    """(encode(reference [1, S, S, 3], reference_landmarks [1, 68, 2]) -> features [1, F],
    decode(features [1, F], target_landmarks [B, 68, 2]) -> (image [B, S, S, 3], mask [B, S, S]), F).

    `networks.render_frames`' two jitted functions, with the reference features (a pytree of per-level
    maps) packed into one float32 vector and unpacked again inside `decode`.
    """
    import jax
    import jax.numpy as jnp

    from thflax.models import ltv as ltv_lib

    gen, variables, size = models.generator, models.generator_variables, models.image_size

    def features(reference, reference_landmarks):
        return gen.apply(variables, reference, reference_landmarks, method=ltv_lib.Generator.encode_reference)

    shapes = jax.eval_shape(features, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32),
                            jax.ShapeDtypeStruct((1, 68, 2), jnp.float32))
    leaves, treedef = jax.tree.flatten(shapes)
    sizes = [int(np.prod(leaf.shape)) for leaf in leaves]

    def encode(reference, reference_landmarks):
        feats = jax.tree.leaves(features(reference, reference_landmarks))
        return jnp.concatenate([f.astype(jnp.float32).reshape(1, -1) for f in feats], -1)

    def decode(packed, target_landmarks):
        parts, offset = [], 0
        for leaf, n in zip(leaves, sizes):
            part = packed[:, offset:offset + n].reshape(leaf.shape).astype(leaf.dtype)
            parts.append(jnp.broadcast_to(part, (target_landmarks.shape[0],) + leaf.shape[1:]))
            offset += n
        img, mask = gen.apply(variables, jax.tree.unflatten(treedef, parts), target_landmarks,
                              method=ltv_lib.Generator.decode)
        return img.astype(jnp.float32), mask[..., 0].astype(jnp.float32)

    return encode, decode, sum(sizes)


def _convert(fn: Callable, inputs: dict[str, tuple[int, ...]], outputs: list[str], name: str) -> bytes:
    """ONNX model bytes of `fn` at the fixed float32 input shapes `inputs` ({name: shape})."""
    import jax
    import jax.numpy as jnp
    from jax2onnx import to_onnx

    specs = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in inputs.values()]
    # Traced by JAX itself first, then converted from the jaxpr: under jax2onnx, `jnp.shape` returns
    # traced values, which flax's scan (the STL net's GRU) and the generator's static sizes cannot take.
    closed = jax.make_jaxpr(fn)(*specs)
    try:
        model = to_onnx(jax.extend.core.jaxpr_as_fun(closed), specs, model_name=name, input_names=list(inputs),
                        output_names=outputs)
    except NotImplementedError as e:  # an op jax2onnx has no conversion for (e.g. the warp preset's solve)
        raise CheckpointError(f"ONNX export: {name}: jax2onnx cannot convert this model ({e})") from e
    finally:
        # jax2onnx traces module-level jitted functions (the sketch rasteriser) with its own primitives,
        # which stay in JAX's caches and break the next ordinary call of them: forget those traces.
        jax.clear_caches()
    return model.SerializeToString()


def probe_landmarks(batch: int, seed: int = 0) -> np.ndarray:
    """[batch, 68, 2] distinct, well-spread points (an ellipse with jitter) for checking the graphs: a
    thin-plate spline between them is well conditioned, so float32 differences stay small."""
    r = np.random.default_rng(seed)
    angle = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    base = np.stack([0.5 + 0.25 * np.cos(angle), 0.5 + 0.3 * np.sin(angle)], -1)
    return (base[None] + r.normal(0, 0.01, (batch, 68, 2))).astype(np.float32)


def run_onnx(model: bytes | str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of an ONNX model (bytes or a file) on onnxruntime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: not the converter's unused-initializer warnings
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _check(name: str, model: bytes, feeds: dict[str, np.ndarray], expected, tolerance: float) -> float:
    """Largest |ONNX − JAX| over the outputs; CheckpointError naming the graph when above `tolerance`."""
    got = run_onnx(model, feeds)
    expected = [np.asarray(e) for e in (expected if isinstance(expected, (tuple, list)) else (expected,))]
    if [g.shape for g in got] != [e.shape for e in expected]:
        raise CheckpointError(f"ONNX export: {name} gives shapes {[g.shape for g in got]}, JAX "
                              f"{[e.shape for e in expected]}; the converter changed the graph")
    diff = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))
    if not diff <= tolerance:
        raise CheckpointError(f"ONNX export: {name} differs from JAX by {diff:.3g} (> {tolerance:g}) on the "
                              f"probe inputs; not written")
    return diff


def _io(inputs: dict[str, tuple[int, ...]], outputs: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    spec = lambda d: [{"name": k, "shape": list(v), "dtype": "float32"} for k, v in d.items()]  # noqa: E731
    return {"inputs": spec(inputs), "outputs": spec(outputs)}


def convert(models: Models, chunk: int = DEFAULT_CHUNK, batch: int = DEFAULT_BATCH,
            tolerance: float = CHECK_TOLERANCE) -> tuple[dict[str, bytes], dict[str, Any]]:
    """({file name: ONNX bytes}, info) of `models` at STL chunk `chunk` and generator batch `batch`.

    Each graph is run on onnxruntime and compared with JAX on probe inputs; CheckpointError if any
    differs by more than `tolerance` (info["max_abs_diff"] holds the differences found).
    """
    import jax

    if chunk < 1 or batch < 1:
        raise InputError(f"ONNX export: chunk and batch must be >= 1, got {chunk} and {batch}")
    c = models.config
    size, window, n_mfcc = models.image_size, int(c.stl.mfcc_window), int(c.stl.n_mfcc)
    r = np.random.default_rng(0)
    step, state_size = stl_step(models)
    encode, decode, feature_size = generator_steps(models)

    graphs = {
        STL_FILE: (step, {"mfcc": (1, chunk, window, n_mfcc), "template": (1, 68, 2), "state": (1, state_size)},
                   {"landmarks": (1, chunk, 68, 2), "state_out": (1, state_size)}),
        ENCODE_FILE: (encode, {"reference": (1, size, size, 3), "reference_landmarks": (1, 68, 2)},
                      {"reference_features": (1, feature_size)}),
        DECODE_FILE: (decode, {"reference_features": (1, feature_size), "target_landmarks": (batch, 68, 2)},
                      {"image": (batch, size, size, 3), "mask": (batch, size, size)}),
    }
    reference = r.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    features = np.asarray(jax.jit(encode)(reference, probe_landmarks(1)))
    probes = {
        STL_FILE: {"mfcc": r.normal(0, 1, (1, chunk, window, n_mfcc)).astype(np.float32),
                   "template": probe_landmarks(1), "state": r.normal(0, 0.3, (1, state_size)).astype(np.float32)},
        ENCODE_FILE: {"reference": reference, "reference_landmarks": probe_landmarks(1)},
        DECODE_FILE: {"reference_features": features, "target_landmarks": probe_landmarks(batch, seed=1)},
    }
    contents, diffs, io = {}, {}, {}
    for file, (fn, inputs, outputs) in graphs.items():
        expected = jax.jit(fn)(*probes[file].values())  # before the conversion (see `_convert` on the caches)
        contents[file] = _convert(fn, inputs, list(outputs), file.removesuffix(".onnx"))
        diffs[file] = _check(file, contents[file], probes[file], expected, tolerance)
        io[file] = _io(inputs, outputs)
    info = {"format": "thflax-onnx", "version": 1, "files": io, "chunk": chunk, "batch": batch,
            "image_size": size, "state_size": state_size, "feature_size": feature_size,
            "mfcc": {"sample_rate": int(models.mfcc_config.sample_rate), "window": window, "n_mfcc": n_mfcc},
            "max_abs_diff": diffs, "config": c.to_json()}
    return contents, info


def export_onnx(source: str, out: str, overwrite: bool = False, chunk: int = DEFAULT_CHUNK,
                batch: int = DEFAULT_BATCH) -> dict[str, Any]:
    """Writes the ONNX files of a trained workdir or parameters bundle `source` to folder `out`, whole or
    not at all (`params._write_bundle`); returns the info written to `thflax_onnx.json`."""
    if os.path.exists(out) and not (overwrite and is_onnx_export(out)):
        raise InputError(f"{out} exists; choose a new folder" + (" or overwrite" if is_onnx_export(out) else ""))
    files.check_folder(out, creates_folder=True)  # a missing or unwritable folder fails now, not after converting
    params.load_config(source)  # not a trained model: one CheckpointError line before any conversion
    contents, info = convert(load_models(source), chunk, batch)
    info["source"] = os.path.abspath(source)
    contents[INFO_FILE] = json.dumps(info, indent=1).encode()
    params._write_bundle(out, contents)  # noqa: SLF001 - the atomic folder writer of the parameters bundle
    info["bytes"] = sum(len(v) for k, v in contents.items() if k != INFO_FILE)
    return info
