"""The photo side of generation: read the photo, choose its face, crop it as in training, paste back.

Every box a user sees or gives (warnings, `face_box`) is in the photo file's own pixels.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import numpy as np

from thflax.errors import InputError
from thflax.inference import caches
from thflax.inference.options import MAX_SIDE
from thflax.io import files

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class Reference:
    """The input photo prepared like a training frame."""

    image: np.ndarray  # [H, W, 3] uint8, the full photo
    landmarks: np.ndarray  # [68, 2] frame pixels
    box: Any  # thflax.face.crop.CropBox
    crop: np.ndarray  # [S, S, 3] uint8
    template: np.ndarray  # [68, 2] normalised crop coordinates

    @classmethod
    def from_face(cls, image: np.ndarray, landmarks: np.ndarray, size: int) -> "Reference":
        """`image` [H, W, 3] with one face's `landmarks` [68, 2] (its pixels), cropped as in training at
        `size` (the box from these landmarks alone: `crop.clip_box`)."""
        from thflax.face import crop

        box = crop.clip_box(landmarks)
        return cls(image, landmarks, box, crop.crop(image, box, size), box.to_crop(landmarks))


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


def detect_face(image_path: str, face_index: int | None = None, face_box: tuple[int, int, int, int] | None = None,
                size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads the photo (see `load_photo`) and picks a face: (image, landmarks [68, 2] in its pixels).

    The highest-scoring face unless `face_index` (0 = highest score) or `face_box` (x0, y0, x1, y1 in
    the file's pixels, as every box it reports is) chooses another; which face was used is logged.
    With `enable_caches`, the choice for the same file and options is read back instead of running
    dlib again.
    """
    img, photo_size = load_photo(image_path, size)
    cached = caches.face_cache_file(image_path, size, face_index, face_box)
    if cached is not None:
        try:
            with open(cached) as f:
                entry = json.load(f)
            lm = np.asarray(entry["landmarks"], np.float32).reshape(68, 2)
            several = entry["num_faces"] > 1 and face_index is None and face_box is None
            _log.log(logging.WARNING if several else logging.INFO, "%s: %s (cached choice)", image_path,
                     entry["describe"])
            caches.cache_stats["faces_cached"] += 1
            return img, lm
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from thflax.face import landmarks

    # face_box stays in the file's pixels: choose_face reads it, and reports every box, in those.
    choice = landmarks.FaceLandmarker().choose_face(img, name=image_path, face_index=face_index, face_box=face_box,
                                                    photo_size=photo_size)
    caches.cache_stats["faces_detected"] += 1
    if cached is not None:
        entry = {"landmarks": np.asarray(choice.landmarks, np.float32).tolist(), "describe": choice.describe(),
                 "num_faces": choice.num_faces}
        try:
            files.atomic_write(cached, json.dumps(entry).encode())
            caches.prune(os.path.dirname(cached), caches.MAX_FACES)
        except (OSError, InputError):  # caching is an optimisation
            pass
    return img, choice.landmarks


def prepare_reference(image_path: str, size: int, face: tuple[np.ndarray, np.ndarray] | None = None) -> Reference:
    """The photo's chosen face cropped as in training (`face` = a `detect_face` result to reuse)."""
    img, lm = face if face is not None else detect_face(image_path)
    return Reference.from_face(img, lm, size)


def paste(image: np.ndarray, crop_img: np.ndarray, box: Any) -> np.ndarray:
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
