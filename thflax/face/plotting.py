"""Small drawing helpers for TensorBoard images and READMEs (OpenCV, imported lazily)."""

from __future__ import annotations

import numpy as np

from thflax.face import geometry


def draw_landmarks(image: np.ndarray, landmarks: np.ndarray, color=(0, 255, 0), radius: int = 1,
                   lines: bool = True) -> np.ndarray:
    """Draws normalised landmarks [68, 2] onto a copy of an RGB uint8 image."""
    import cv2

    img = np.ascontiguousarray(image, np.uint8).copy()
    size = np.array(img.shape[1::-1], np.float32)
    pts = np.round(np.asarray(landmarks, np.float32) * size).astype(np.int32)
    if lines:
        for part in geometry.FACE_PARTS.values():
            cv2.polylines(img, [pts[list(part)]], False, color, 1, cv2.LINE_AA)
    for x, y in pts:
        cv2.circle(img, (int(x), int(y)), radius, color, -1, cv2.LINE_AA)
    return img


def landmark_panel(true: np.ndarray, pred: np.ndarray, size: int = 128) -> np.ndarray:
    """Frames side by side: true (green) and predicted (red) landmarks [N, 68, 2] -> [size, N·size, 3]."""
    tiles = []
    for t, p in zip(true, pred):
        tile = np.full((size, size, 3), 255, np.uint8)
        tile = draw_landmarks(tile, t, (0, 160, 0))
        tiles.append(draw_landmarks(tile, p, (220, 0, 0)))
    return np.concatenate(tiles, axis=1)


def image_grid(rows: list[np.ndarray]) -> np.ndarray:
    """Stacks rows of equally-sized images [N, H, W, 3] (uint8) into one [R·H, N·W, 3] image."""
    return np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
