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

import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from thflax.errors import InputError
from thflax.inference import caches
from thflax.inference.blinks import DEFAULT_BLINK_RATE, blink_chunks, blink_closure
from thflax.inference.networks import Models, load_models, predict_landmarks, render_frames, speech_windows
from thflax.inference.options import (DEFAULT_HEAD_MOTION, DEFAULT_PITCH, DEFAULT_RATE, DEFAULT_VOICE, MAX_SIDE,
                                      check_frame, check_options, check_sources, check_speech_options)
from thflax.inference.output import Clock, finish_frame, write_frames
from thflax.inference.photo import Reference, detect_face, paste, prepare_reference
from thflax.inference.shipped_model import checkpoint_or_shipped
from thflax.inference.text_to_speech import speak_to_wav

__all__ = ["compose_frame", "generate"]

_log = logging.getLogger(__name__)


def generate(checkpoint: str | None = None, image: str | None = None, audio: str | None = None, out: str | None = None, *,
             video: str | None = None, text: str | None = None, voice: str = DEFAULT_VOICE,
             rate: int = DEFAULT_RATE, pitch: int = DEFAULT_PITCH, still: bool = False,
             landmarks_video: bool = False, crop_only: bool = False, fps: float | None = None,
             size: int | None = None, batch: int = 16, progress: bool | Callable[[int, int], None] = True, config=None,
             models: Models | None = None, face_index: int | None = None,
             face_box: tuple[int, int, int, int] | None = None, blink_rate: float = DEFAULT_BLINK_RATE,
             blink_seed: int = 0, head_motion: float = DEFAULT_HEAD_MOTION) -> dict[str, Any]:
    """Speech (or text) + photo -> mp4 with the speech muxed in. Returns a summary (frames, seconds, paths, timings).

    Args:
      checkpoint: a training workdir (stl/ and ltv/ checkpoints) or an export bundle (`thflax.inference.params.export`);
        None: the model that ships in the package (`thflax.inference.shipped_model`).
      image, audio: input files (any image OpenCV reads; wav/flac/mp3/mp4... at any sample rate).
      video: a source video instead of `image` (exactly one of them): dubbing (`thflax.inference.dubbing`). Every
        frame of the video is kept (background, body, its own head motion) and only the lower face is
        re-animated from the speech; the output has the video's frame rate. Longer speech plays the
        video forward and backward, shorter speech cuts it. `still` and `head_motion` have no effect (the head
        moves as in the video); `face_index`/`face_box` are for photos (the video's face is tracked).
      out: output .mp4 path (written atomically).
      text: words to speak instead of `audio` (exactly one of them): synthesised offline with eSpeak NG
        (`speak_to_wav`) in `voice` at `rate` words/min (80..450) and base `pitch` 0..100; the video's audio
        track is that speech. The temporary wav is deleted however generation ends.
      still: keep the head still (template head points), animate the lips only (head_motion 0).
      head_motion: how far the head moves, 0..3: the predicted head's displacement from the photo's pose
        times this (`thflax.face.geometry.scale_head_motion`; the lips keep their own motion). 0 is
        `still`, 1 the model's own motion (the default: the network's, times the model's calibrated
        `stl.head_gain`; `networks.head_scale`), 2 twice as far. `still` wins over it.
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
      blink_rate: blinks per minute, 0..60 (0: none), added to the predicted landmarks of a photo's
        video (`thflax.inference.blinks`, likelier in the speech's pauses; also with `still`); a
        dubbed video keeps its own blinks. blink_seed: their randomness.

    Raises InputError (one line) for a bad input, a numeric option out of range (`check_options`, checked
    before anything is read or written) or an output that cannot be written.
    """
    if out is None:
        raise InputError("no output path given")
    checkpoint = checkpoint_or_shipped(checkpoint)
    check_sources(image, video, audio, text, face_index, face_box)
    # Every numeric option first (one place, see check_options): a bad value costs no work, writes nothing.
    check_options(fps=fps, size=size, batch=batch, rate=rate, pitch=pitch, face_index=face_index, face_box=face_box,
                  blink_rate=blink_rate, blink_seed=blink_seed, head_motion=head_motion)
    if text is not None:
        check_speech_options(text, voice, rate, pitch)
    from thflax.io import audio as audio_lib
    from thflax.io import video as video_lib

    clock = Clock()
    # Inputs and the output are checked before the (slower) model loading, so mistakes fail at once.
    video_lib.check_output(out, [image or video, audio])
    if video is None:
        fps = 25.0 if fps is None else fps
        face = detect_face(image, face_index=face_index, face_box=face_box, size=size)
        check_frame(*face[0].shape[:2], size, crop_only, landmarks_video)
        clock.mark("detect")
    else:
        from thflax.inference import dubbing

        source_fps, width, height = dubbing.probe(video)
        check_frame(height, width, size, crop_only, landmarks_video)
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
        num_frames = audio_lib.num_video_frames(speech.size, fps)
        if num_frames < 1:
            raise InputError(f"{audio}: too short for one video frame at {fps:g} fps")
        if video is not None:
            # Tracked before the models load, so a video without a face fails at once.
            source = dubbing.SourceVideo.track(video, max_frames=num_frames, size=size, max_side=MAX_SIDE)
            clock.mark("track")
        models = models or load_models(checkpoint, config)
        if caches.root() is not None:
            models = caches.CachingModels.wrap(models)
        clock.mark("load")
        if video is not None:
            summary = dubbing.render(models, source, audio, out, speech, clock, landmarks_video=landmarks_video,
                                     crop_only=crop_only, size=size, batch=batch, progress=progress)
        else:
            summary = _render(models, image, audio, out, speech, face, clock, still=still,
                              landmarks_video=landmarks_video, crop_only=crop_only, fps=fps, size=size,
                              batch=batch, progress=progress, blink_rate=blink_rate, blink_seed=blink_seed,
                              head_motion=head_motion)
    finally:
        if tmp_wav is not None:
            try:
                os.remove(tmp_wav)
            except OSError:
                pass
    summary["timings"] = clock.times
    return summary


def _render(models: Models, image: str, audio: str, out: str, speech: np.ndarray,
            face: tuple[np.ndarray, np.ndarray], clock: Clock, *, still: bool, landmarks_video: bool,
            crop_only: bool, fps: float, size: int | None, batch: int,
            progress: bool | Callable[[int, int], None], blink_rate: float = 0.0,
            blink_seed: int = 0, head_motion: float = DEFAULT_HEAD_MOTION) -> dict[str, Any]:
    """The part of `generate` after its inputs are checked and loaded: features, networks, mp4."""
    s = models.image_size
    reference = prepare_reference(image, s, face)
    windows = speech_windows(models, speech, fps)
    num_frames = len(windows)
    clock.mark("features")
    chunks = predict_landmarks(models, windows, reference.template, still=still, head_motion=head_motion)
    if blink_rate > 0:
        # After the STL net (it predicts no blinks: nothing in speech says when), before the LTV net,
        # which learnt the corpus's closed lids from these eye points.
        chunks = blink_chunks(chunks, blink_closure(speech, num_frames, fps, blink_rate, blink_seed))
    frames = render_frames(models, reference.crop, reference.template, chunks, batch=batch, with_mask=True)

    def compose(img, lm, mask):
        return compose_frame(models, reference, img, lm, mask, crop_only=crop_only,
                             landmarks_video=landmarks_video, size=size)

    written = write_frames((compose(img, lm, mask) for img, lm, mask in frames), out, fps, audio, num_frames,
                           clock, progress)
    return {"out": os.path.abspath(out), "frames": written, "seconds": written / fps}


def compose_frame(models: Models, reference: Reference, img: np.ndarray, lm: np.ndarray, mask: np.ndarray, *,
                  crop_only: bool, landmarks_video: bool, size: int | None) -> np.ndarray:
    """One output frame [H, W, 3] uint8 from the generated crop img [S, S, 3], its landmarks lm [68, 2]
    (normalised crop coordinates) and attention mask [S, S]: the crop itself (`crop_only`), or pasted
    back into the photo; then `finish_frame` (landmark panel, height `size`)."""
    if crop_only:
        frame = img
    elif models.generator.warp:
        # The photo warped to the frame's landmarks at its own resolution; the generated crop only
        # where the network changed it (see crop.paste_masked): no blur outside, no square seam.
        from thflax.face import crop as crop_lib
        from thflax.face import warp

        target_px = reference.box.to_frame(lm)
        moved = warp.warp_numpy(reference.image, reference.landmarks, target_px)
        frame = crop_lib.paste_masked(moved, img, reference.box, mask, target_px)
    else:
        frame = paste(reference.image, img, reference.box)
    return finish_frame(frame, lm, models.image_size, landmarks_video, size)
