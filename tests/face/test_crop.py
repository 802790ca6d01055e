"""Tests of the face crop (thflax/face/crop.py): the clip's box and pasting back."""

import numpy as np

from thflax.face import crop


def test_clip_box_is_stable_and_covers_face(landmarker, moving_clip):
    tracked = landmarker.track(moving_clip)
    box = crop.clip_box(tracked)
    norm = box.to_crop(tracked)
    assert norm.min() > 0.1 and norm.max() < 0.9  # the whole face inside the crop, with margin
    np.testing.assert_allclose(box.to_frame(norm), tracked, atol=1e-3)
    c = crop.crop(moving_clip[0], box, 64)
    assert c.shape == (64, 64, 3) and c.dtype == np.uint8


def test_paste_puts_crop_back(moving_clip):
    frame = moving_clip[0]
    box = crop.CropBox(60, 50, 120)
    c = crop.crop(frame, box, 120)
    back = crop.paste(np.zeros_like(frame), c, box, feather=0.0)
    np.testing.assert_allclose(back[60:160, 70:170].astype(int), frame[60:160, 70:170].astype(int), atol=3)
    assert back[:40].max() == 0  # outside the box untouched
