"""Generation: one photo + speech -> talking-head mp4 (paper eq. 3: V = Ψ(Φ(A), P)).

    import thflax
    thflax.generate("runs/demo", "face.jpg", "speech.wav", "talking.mp4")

Steps: pick the highest-scoring face in the photo (dlib; `face_index`/`face_box` choose another), crop it as in training, take its landmarks as the
STL template and head start; MFCC windows of the speech; STL over the whole audio in chunks with the
GRU state carried across chunks (memory stays bounded for long audio); merge mouth and head (eq. 6);
LTV per frame in batches with the reference encoded once; paste each generated crop back into the
photo (or keep the crop); stream the frames into an H.264 mp4 and mux the original audio in.

Errors in inputs raise `thflax.errors.InputError` subclasses with one clear line; the output file is
written atomically, so a failure never leaves a half-written video.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from thflax.errors import InputError
from thflax.inference import Models, load_models, predict_landmarks, render_frames

__all__ = ["Models", "Reference", "detect_face", "generate", "load_models", "predict_landmarks", "prepare_reference",
           "render_frames"]


@dataclasses.dataclass
class Reference:
    """The input photo prepared like a training frame."""

    image: np.ndarray  # [H, W, 3] uint8, the full photo
    landmarks: np.ndarray  # [68, 2] frame pixels
    box: Any  # thflax.crop.CropBox
    crop: np.ndarray  # [S, S, 3] uint8
    template: np.ndarray  # [68, 2] normalised crop coordinates


#: Without --size, photos are worked on (and written) at most this many pixels on their longer side:
#: time and memory then do not grow with the camera's resolution.
MAX_SIDE = 1024


def load_photo(image_path: str, size: int | None = None, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """The photo at the size the output needs: (image [H, W, 3] uint8, scale from the file's pixels).

    Height `size` when given (never upscaled here: the final frames are), else the longer side at most
    `max_side`.
    """
    import cv2

    from thflax import video

    img = video.read_image(image_path)
    h, w = img.shape[:2]
    scale = min(1.0, size / h) if size else min(1.0, max_side / max(h, w))
    if scale < 1.0:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return img, scale


def detect_face(image_path: str, face_index: int | None = None, face_box: tuple[int, int, int, int] | None = None,
                size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads the photo (see `load_photo`) and picks a face: (image, landmarks [68, 2] in its pixels).

    The highest-scoring face unless `face_index` (0 = highest score) or `face_box` (x0, y0, x1, y1 in
    the file's pixels) chooses another; which face was used is logged.
    """
    from thflax import landmarks

    img, scale = load_photo(image_path, size)
    if face_box is not None:
        face_box = tuple(int(round(v * scale)) for v in face_box)
    choice = landmarks.FaceLandmarker().choose_face(img, name=image_path, face_index=face_index, face_box=face_box)
    return img, choice.landmarks


def prepare_reference(image_path: str, size: int, face: tuple[np.ndarray, np.ndarray] | None = None) -> Reference:
    """The photo's chosen face cropped as in training (`face` = a `detect_face` result to reuse)."""
    from thflax import crop

    img, lm = face if face is not None else detect_face(image_path)
    box = crop.clip_box(lm)
    return Reference(img, lm, box, crop.crop(img, box, size), box.to_crop(lm))


def generate(checkpoint: str, image: str, audio: str, out: str, *, still: bool = False,
             landmarks_video: bool = False, crop_only: bool = False, fps: float = 25.0,
             size: int | None = None, batch: int = 16, progress: bool = True, config=None,
             models: Models | None = None, face_index: int | None = None,
             face_box: tuple[int, int, int, int] | None = None) -> dict[str, Any]:
    """Speech + photo -> mp4 with the audio muxed in. Returns a summary (frames, seconds, paths).

    Args:
      checkpoint: a training workdir (stl/ and ltv/ checkpoints) or an export bundle (`thflax.params.export`).
      image, audio: input files (any image OpenCV reads; wav/flac/mp3/mp4... at any sample rate).
      out: output .mp4 path (written atomically).
      still: keep the head still (template head points), animate the lips only.
      landmarks_video: put the predicted landmark sketch beside each frame.
      crop_only: write the generated face crop instead of pasting it back into the photo.
      fps: output frame rate (MFCC windows are centred on these frames).
      size: output height in pixels (width follows the aspect ratio); default: the photo's, at most
        `MAX_SIDE` on the longer side.
      face_index, face_box: which face of the photo (see `detect_face`); default the highest-scoring.
    """
    import cv2
    from tqdm import tqdm

    from thflax import audio as audio_lib
    from thflax import crop as crop_lib
    from thflax import plotting, video

    if fps <= 0 or (size is not None and size < 16) or batch < 1:
        raise InputError("fps must be positive, size at least 16 and batch at least 1")
    # Inputs and the output are checked before the (slower) model loading, so mistakes fail at once.
    video.check_output(out, [image, audio])
    face = detect_face(image, face_index=face_index, face_box=face_box, size=size)
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
