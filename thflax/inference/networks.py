"""Trained networks for inference: speech windows -> landmarks (STL), landmarks -> frames (LTV).

Used by generation and evaluation; depends on no training code. `load_models(path)` takes a
training workdir or an export bundle (`thflax.inference.params`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np


@dataclasses.dataclass
class Models:
    """The STL net and the LTV generator with their variables (see `load_models`)."""

    config: Any
    stl: Any  # thflax.models.stl.STLNet
    stl_variables: dict
    generator: Any  # thflax.models.ltv.Generator
    generator_variables: dict
    _fns: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def image_size(self) -> int:
        return int(self.config.ltv.image_size)

    @property
    def mfcc_config(self):
        from thflax.io import audio

        return audio.MfccConfig(n_mfcc=int(self.config.stl.n_mfcc), window=int(self.config.stl.mfcc_window))

    def compiled(self, name: str, build: Callable[[], Any]):
        """jit-ed functions built once per loaded model (not once per video)."""
        if name not in self._fns:
            self._fns[name] = build()
        return self._fns[name]



def speech_windows(models: Models, speech: np.ndarray, fps: float) -> np.ndarray:
    """The STL net's input for `speech` [N] (16 kHz mono) at `fps`: one MFCC window per video frame the
    speech covers, [T, window, n_mfcc] (MFCC with NumPy: `thflax.io.audio.mfcc_numpy`, no librosa)."""
    from thflax.io import audio as audio_lib

    mcfg = models.mfcc_config
    num_frames = audio_lib.num_video_frames(speech.size, fps, mcfg.sample_rate)
    return audio_lib.frame_windows(audio_lib.mfcc_numpy(speech, mcfg), num_frames, fps, mcfg)


def load_models(path: str | None = None, config=None) -> Models:
    """STL and generator of a training workdir or an export bundle (None: the shipped model,
    `thflax.inference.shipped_model`).

    The configuration is the saved one unless `config` is given, in which case both stages must have
    been trained with it (CheckpointError otherwise).
    """
    from thflax.inference import params
    from thflax.inference.shipped_model import checkpoint_or_shipped
    from thflax.models import build

    path = checkpoint_or_shipped(path)
    given = config is not None
    stl_vars, config = params.load_params(path, "stl", config)
    # Without a given config, the LTV stage must match the STL stage's saved one.
    gen_vars, _ = params.load_params(path, "ltv", config if given else None)
    return Models(config, build.build_stl(config), stl_vars, build.build_generator(config), gen_vars)


def stl_predictor(model, still: bool = False, head_motion: float = 1.0) -> Callable:
    """jit-ed (variables, mfcc [B, T, W, n], template [B, 68, 2], carry) -> (landmarks [B, T, 68, 2], carry).

    still: the predicted mouth on the template's head (lips only, no head motion), the same as
    head_motion 0. head_motion: the head's displacement from the template scaled by this factor
    (`geometry.scale_head_motion`); 1 is the network's own output, untouched.
    """
    import jax

    from thflax.face import geometry

    scale = 0.0 if still else float(head_motion)

    @jax.jit
    def run(variables, mfcc, template, carry=None):
        out, carry = model.apply(variables, mfcc, template, carry=carry, train=False)
        lm = out["landmarks"]
        if scale != 1.0:
            lm = geometry.scale_head_motion(lm, template, scale)
        return lm, carry

    return run


def predictor_name(still: bool = False, head_motion: float = 1.0) -> str:
    """The name `predict_landmarks` compiles `stl_predictor(still, head_motion)` under (one program per
    head scale; still and 1 keep the names they had before the scale existed, and so their caches)."""
    scale = 0.0 if still else float(head_motion)
    if scale in (0.0, 1.0):
        return f"stl_still={scale == 0.0}"
    return f"stl_head_motion={scale!r}"


def head_scale(models: Models, still: bool = False, head_motion: float = 1.0) -> float:
    """The factor the STL head's displacement from the template is scaled by: 0 when `still`, else
    `head_motion` times the model's own `stl.head_gain` (its calibrated default; 1 where unset)."""
    return 0.0 if still else float(head_motion) * float(models.config.stl.get("head_gain", 1.0))


def model_predictor(models: Models, still: bool = False, head_motion: float = 1.0) -> Callable:
    """`stl_predictor` of the model's STL net at `head_scale(models, still, head_motion)`, compiled once per
    loaded model and scale."""
    scale = head_scale(models, still, head_motion)
    return models.compiled(predictor_name(head_motion=scale), lambda: stl_predictor(models.stl, head_motion=scale))


def predict_landmarks(models: Models, windows: np.ndarray, template: np.ndarray, still: bool = False,
                      chunk: int = 250, head_motion: float = 1.0) -> Iterator[np.ndarray]:
    """STL over MFCC windows [T, W, n] in chunks, carrying the GRU state: yields [t, 68, 2] per chunk.

    Chunks bound the memory for long audio; the carried state makes the result independent of `chunk`.
    `still` / `head_motion`: see `head_scale` (`head_motion` is relative to the model's `stl.head_gain`).
    """
    import jax.numpy as jnp

    run = model_predictor(models, still, head_motion)
    tmpl = jnp.asarray(np.asarray(template, np.float32)[None])
    carry = None
    for s in range(0, len(windows), chunk):
        x = windows[s:s + chunk]
        n = len(x)
        if n < chunk:  # pad the last chunk to the compiled shape; padded frames are dropped
            x = np.concatenate([x, np.repeat(x[-1:], chunk - n, 0)])
        lm, carry = run(models.stl_variables, jnp.asarray(x[None]), tmpl, carry)
        yield np.asarray(lm)[0, :n]  # sliced on the host: slicing the device array compiles a program per length


def render_frames(models: Models, ref_crop: np.ndarray, ref_template: np.ndarray,
                  landmark_chunks: Iterable[np.ndarray], batch: int = 16,
                  with_mask: bool = False) -> Iterator[tuple[np.ndarray, ...]]:
    """LTV: yields (generated crop [S, S, 3] uint8, landmarks [68, 2][, attention mask [S, S] float]) per frame.

    ref_crop [S, S, 3] uint8 and its landmarks ref_template [68, 2] (normalised) are encoded once;
    landmark_chunks is an iterable of [t, 68, 2] arrays (normalised crop coordinates).
    """
    import jax.numpy as jnp

    _, decode = ltv_functions(models)
    variables = models.generator_variables
    feats = encode_reference(models, ref_crop, ref_template)
    # One batch stays in flight: JAX dispatches asynchronously, so the next batch computes while the
    # caller works on the frames of this one (pasting, encoding).
    inflight = None
    pending: list[np.ndarray] = []
    for chunk in landmark_chunks:
        pending.extend(chunk)
        while len(pending) >= batch:
            group, pending = pending[:batch], pending[batch:]
            out = (*decode(variables, feats, jnp.asarray(np.stack(group))), group, len(group))
            if inflight is not None:
                yield from _frames(*inflight, with_mask)
            inflight = out
    if pending:
        n = len(pending)
        group = pending + [pending[-1]] * (batch - n)
        out = (*decode(variables, feats, jnp.asarray(np.stack(group))), group, n)
        if inflight is not None:
            yield from _frames(*inflight, with_mask)
        inflight = out
    if inflight is not None:
        yield from _frames(*inflight, with_mask)


def ltv_functions(models: Models) -> tuple[Callable, Callable]:
    """The generator's jit-ed (encode, decode), built once per loaded model (`Models.compiled`):
    encode(variables, reference [1, S, S, 3] in [-1, 1], its landmarks [1, 68, 2]) -> features;
    decode(variables, features, landmarks [B, 68, 2]) -> (crops [B, S, S, 3] uint8, attention [B, S, S])."""
    import jax
    import jax.numpy as jnp

    from thflax.io.images import to_uint8
    from thflax.models import ltv as ltv_lib

    gen = models.generator

    def build():
        # The generator draws its sketches inside these jitted functions: drawn eagerly, op by op, the
        # reference sketch cost more start-up time than the whole compiled (and cached) encoder.
        @jax.jit
        def encode(v, r, rl):
            return gen.apply(v, r, rl, method=ltv_lib.Generator.encode_reference)

        @jax.jit
        def decode(v, f, lms):
            f = jax.tree.map(lambda a: jnp.broadcast_to(a, (lms.shape[0],) + a.shape[1:]), f)
            img, mask = gen.apply(v, f, lms, method=ltv_lib.Generator.decode)
            return to_uint8(img).astype(jnp.uint8), mask[..., 0]

        return encode, decode

    return models.compiled("ltv", build)


def encode_reference(models: Models, ref_crop: np.ndarray, ref_template: np.ndarray):
    """The generator's features of the reference crop [S, S, 3] uint8 with its landmarks [68, 2]
    (normalised): computed once per video, then decoded with every frame's landmarks."""
    import jax.numpy as jnp

    from thflax.io.images import to_unit

    encode, _ = ltv_functions(models)
    ref = to_unit(np.asarray(ref_crop)[None])
    return encode(models.generator_variables, ref, jnp.asarray(np.asarray(ref_template, np.float32)[None]))


def _frames(imgs, masks, landmarks, n: int, with_mask: bool):
    imgs, masks = np.asarray(imgs), np.asarray(masks)
    for i, lm in enumerate(landmarks[:n]):
        yield (imgs[i], lm, masks[i]) if with_mask else (imgs[i], lm)
