"""Generation: one photo + speech -> talking-head mp4 (paper eq. 3: V = Ψ(Φ(A), P)).

    import thflax
    thflax.generate("runs/demo", "face.jpg", "speech.wav", "talking.mp4")

Steps: detect the largest face in the photo (dlib), crop it as in training, take its landmarks as the
STL template and head start; MFCC windows of the speech; STL over the whole audio in chunks with the
GRU state carried across chunks (memory stays bounded for long audio); merge mouth and head (eq. 6);
LTV per frame in batches with the reference encoded once; paste each generated crop back into the
photo (or keep the crop); stream the frames into an H.264 mp4 and mux the original audio in.

Errors in inputs raise `thflax.errors.InputError` subclasses with one clear line; the output file is
written atomically, so a failure never leaves a half-written video.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from thflax.errors import CheckpointError, InputError


@dataclasses.dataclass
class Models:
    """Trained STL and LTV networks with their parameters (see `load_models`)."""

    config: Any
    stl_task: Any
    stl_variables: dict
    ltv_task: Any
    generator_params: dict

    @property
    def image_size(self) -> int:
        return int(self.config.ltv.image_size)

    _fns: dict = dataclasses.field(default_factory=dict, repr=False)

    def compiled(self, name: str, build):
        """jit-ed functions built once per loaded model (not once per video)."""
        if name not in self._fns:
            self._fns[name] = build()
        return self._fns[name]

    @property
    def mfcc_config(self):
        from thflax import audio

        return audio.MfccConfig(n_mfcc=int(self.config.stl.n_mfcc), window=int(self.config.stl.mfcc_window))


def _restore_stage(workdir: str, task, stage: str):
    import jax

    from thflax import checkpoint, trainer

    path = os.path.join(workdir, stage, "checkpoints")
    if not os.path.isdir(path):
        raise CheckpointError(f"no {stage} checkpoint in {workdir} (expected {path})")
    ckpt = checkpoint.Checkpointer(path, read_only=True)
    if ckpt.latest_step() is None:
        raise CheckpointError(f"no {stage} checkpoint in {path}")
    meta = ckpt.restore_meta()
    if meta.get("model") != trainer._jsonable(task.signature()):
        raise CheckpointError(f"the {stage} checkpoint in {path} was trained with a different {stage} "
                              "configuration than the one given")
    target = jax.eval_shape(lambda: task.init_state(jax.random.PRNGKey(0)))
    state, _ = ckpt.restore(target)
    ckpt.close()
    return state


def load_models(workdir: str, config=None) -> Models:
    """Loads the latest STL and LTV checkpoints of a training workdir.

    The configuration is the one saved with the STL checkpoint unless `config` is given, in which case
    both checkpoints must match it (CheckpointError otherwise).
    """
    from thflax import checkpoint
    from thflax.configlib import ConfigDict
    from thflax.train_ltv import LTVTask
    from thflax.train_stl import STLTask

    if not os.path.isdir(workdir):
        raise CheckpointError(f"checkpoint folder not found: {workdir}")
    if config is None:
        path = os.path.join(workdir, "stl", "checkpoints")
        if not os.path.isdir(path):
            raise CheckpointError(f"no stl checkpoint in {workdir} (expected {path})")
        ck = checkpoint.Checkpointer(path, read_only=True)
        saved = ck.restore_meta().get("config")
        ck.close()
        if saved is None:
            raise CheckpointError(f"checkpoint in {path} has no saved config; pass one")
        config = ConfigDict(json.loads(saved) if isinstance(saved, str) else saved)
    stl_task, ltv_task = STLTask(config), LTVTask(config)
    s = _restore_stage(workdir, stl_task, "stl")
    l_state = _restore_stage(workdir, ltv_task, "ltv")
    stl_params = s.ema_params["stl"] if s.ema_params else s.params["stl"]
    gp = l_state.ema_params["generator"] if l_state.ema_params else l_state.params["generator"]
    return Models(config, stl_task, {"params": stl_params, "batch_stats": s.batch_stats["stl"]}, ltv_task, gp)


@dataclasses.dataclass
class Reference:
    """The input photo prepared like a training frame."""

    image: np.ndarray  # [H, W, 3] uint8, the full photo
    landmarks: np.ndarray  # [68, 2] frame pixels
    box: Any  # thflax.crop.CropBox
    crop: np.ndarray  # [S, S, 3] uint8
    template: np.ndarray  # [68, 2] normalised crop coordinates


def detect_face(image_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads the photo and finds the largest face (warning if several): (image, landmarks [68, 2])."""
    from thflax import landmarks, video

    img = video.read_image(image_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lm = landmarks.FaceLandmarker().image_landmarks(img, name=image_path)
    for w in caught:
        logging.warning("%s", w.message)
        warnings.warn(str(w.message), stacklevel=2)
    return img, lm


def prepare_reference(image_path: str, size: int, face: tuple[np.ndarray, np.ndarray] | None = None) -> Reference:
    """The photo's largest face cropped as in training (`face` = a `detect_face` result to reuse)."""
    from thflax import crop

    img, lm = face if face is not None else detect_face(image_path)
    box = crop.clip_box(lm)
    return Reference(img, lm, box, crop.crop(img, box, size), box.to_crop(lm))


def predict_landmarks(models: Models, windows: np.ndarray, template: np.ndarray, still: bool = False,
                      chunk: int = 250) -> Iterator[np.ndarray]:
    """STL over MFCC windows [T, W, n] in chunks, carrying the GRU state: yields [t, 68, 2] per chunk."""
    import jax
    import jax.numpy as jnp

    from thflax import geometry

    model = models.stl_task.infer_model

    def build():
        @jax.jit
        def run(variables, x, tmpl, carry):
            out, carry = model.apply(variables, x, tmpl, carry=carry, train=False)
            lm = out["landmarks"]
            if still:  # lips only: the predicted mouth on the template's head
                head = jnp.broadcast_to(geometry.head_points(tmpl)[:, None], lm.shape[:2] + (50, 2))
                lm = geometry.merge(geometry.calibrate_mouth(lm), head)
            return lm, carry

        return run

    run = models.compiled(f"stl_still={still}", build)
    tmpl = jnp.asarray(np.asarray(template, np.float32)[None])
    carry = None
    for s in range(0, len(windows), chunk):
        x = windows[s:s + chunk]
        n = len(x)
        if n < chunk:  # pad the last chunk to the compiled shape; padded frames are dropped
            x = np.concatenate([x, np.repeat(x[-1:], chunk - n, 0)])
        lm, carry = run(models.stl_variables, jnp.asarray(x[None]), tmpl, carry)
        yield np.asarray(lm[0, :n])


def render_frames(models: Models, ref_crop: np.ndarray, ref_template: np.ndarray, landmark_chunks,
                  batch: int = 16) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """LTV: yields (generated crop [S, S, 3] uint8, landmarks [68, 2]) per frame.

    ref_crop [S, S, 3] uint8 and its landmarks ref_template [68, 2] (normalised) are encoded once;
    landmark_chunks is an iterable of [t, 68, 2] arrays (normalised crop coordinates).
    """
    import jax
    import jax.numpy as jnp

    from thflax import sketch
    from thflax.models import ltv as ltv_lib
    from thflax.train_ltv import to_uint8, to_unit

    size = models.image_size
    gen = models.ltv_task.generator
    ref = to_unit(np.asarray(ref_crop)[None])
    ref_sk = sketch.draw_sketch(jnp.asarray(np.asarray(ref_template, np.float32)[None]), size)
    variables = {"params": models.generator_params}

    def build():
        encode = jax.jit(lambda v, r, rs: gen.apply(v, r, rs, method=ltv_lib.Generator.encode_reference))

        @jax.jit
        def decode(v, f, lms):
            f = jax.tree.map(lambda a: jnp.broadcast_to(a, (lms.shape[0],) + a.shape[1:]), f)
            img, _ = gen.apply(v, f, sketch.draw_sketch(lms, size), method=ltv_lib.Generator.decode)
            return to_uint8(img).astype(jnp.uint8)

        return encode, decode

    encode, decode = models.compiled("ltv", build)
    feats = encode(variables, ref, ref_sk if gen.use_reference_sketch else None)
    pending = []
    for chunk in landmark_chunks:
        pending.extend(chunk)
        while len(pending) >= batch:
            group, pending = pending[:batch], pending[batch:]
            yield from zip(np.asarray(decode(variables, feats, jnp.asarray(np.stack(group)))), group)
    if pending:
        n = len(pending)
        group = pending + [pending[-1]] * (batch - n)
        yield from list(zip(np.asarray(decode(variables, feats, jnp.asarray(np.stack(group)))), group))[:n]


def generate(checkpoint: str, image: str, audio: str, out: str, *, still: bool = False,
             landmarks_video: bool = False, crop_only: bool = False, fps: float = 25.0,
             size: int | None = None, batch: int = 16, progress: bool = True, config=None,
             models: Models | None = None) -> dict[str, Any]:
    """Speech + photo -> mp4 with the audio muxed in. Returns a summary (frames, seconds, paths).

    Args:
      checkpoint: training workdir holding stl/ and ltv/ checkpoints.
      image, audio: input files (any image OpenCV reads; wav/flac/mp3/mp4... at any sample rate).
      out: output .mp4 path (written atomically).
      still: keep the head still (template head points), animate the lips only.
      landmarks_video: put the predicted landmark sketch beside each frame.
      crop_only: write the generated face crop instead of pasting it back into the photo.
      fps: output frame rate (MFCC windows are centred on these frames).
      size: output height in pixels (width follows the aspect ratio); default: native.
    """
    import cv2
    from tqdm import tqdm

    from thflax import audio as audio_lib
    from thflax import crop as crop_lib
    from thflax import plotting, video

    if not out.lower().endswith((".mp4", ".mov", ".mkv")):
        raise InputError(f"output must be an .mp4/.mov/.mkv file: {out}")
    if fps <= 0 or (size is not None and size < 16):
        raise InputError("--fps must be positive and --size at least 16")
    # Inputs are checked before the (slower) model loading, so bad ones fail at once.
    face = detect_face(image)
    speech = audio_lib.load_audio(audio)
    models = models or load_models(checkpoint, config)
    s = models.image_size
    reference = prepare_reference(image, s, face)
    mcfg = models.mfcc_config
    feats = audio_lib.mfcc(speech, mcfg)
    num_frames = audio_lib.num_video_frames(speech.size, fps, mcfg.sample_rate)
    if num_frames < 1:
        raise InputError(f"{audio}: too short for one video frame at {fps} fps")
    windows = audio_lib.frame_windows(feats, num_frames, fps, mcfg)
    del speech
    chunks = predict_landmarks(models, windows, reference.template, still=still)
    frames = render_frames(models, reference.crop, reference.template, chunks, batch=batch)

    def compose(img, lm):
        frame = img if crop_only else crop_lib.paste(reference.image, img, reference.box)
        if landmarks_video:
            side = plotting.draw_landmarks(np.full((s, s, 3), 255, np.uint8), lm, (200, 0, 0))
            side = cv2.resize(side, (frame.shape[0], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
            frame = np.concatenate([frame, side], axis=1)
        if size is not None and frame.shape[0] != size:
            w = int(round(frame.shape[1] * size / frame.shape[0] / 2)) * 2
            frame = cv2.resize(frame, (w, size), interpolation=cv2.INTER_AREA)
        return frame

    bar = tqdm(total=num_frames, desc="generating", unit="frame", disable=not progress)
    with video.VideoWriter(out, fps=fps, audio_path=audio) as writer:
        for img, lm in frames:
            writer.write(compose(img, lm))
            bar.update(1)
    bar.close()
    return {"out": os.path.abspath(out), "frames": writer.num_frames, "seconds": writer.num_frames / fps}
