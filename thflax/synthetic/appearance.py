"""A speaker's source photo: recoloured, lit and put on the speaker's background.

The renderer warps this photo; everything here happens once per speaker, before any motion.
`speaker_photo` makes it from the astronaut (`thflax.synthetic.base_face`), `portrait_speaker_photo`
from a prepared portrait (`thflax.synthetic.portraits.Source`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from thflax.synthetic.base_face import closed_mouth_photo, person_alpha
from thflax.synthetic.portraits import Source
from thflax.synthetic.speakers import PortraitSpeaker, Speaker

def _rgb_to_hsv_shift(img: np.ndarray, hue_deg: float, sat: float, val: float) -> np.ndarray:
    """uint8 RGB [H, W, 3] with its hue turned by ``hue_deg`` and saturation and value scaled."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_deg * 256.0 / 360.0) % 256.0
    hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * val, 0, 255)
    return cv2.cvtColor(hsv.round().astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


def speaker_photo(speaker: Speaker) -> np.ndarray:
    """The photo recoloured and with the speaker's background, uint8 [512, 512, 3]."""
    img = closed_mouth_photo()
    alpha = person_alpha()[..., None]
    person = _rgb_to_hsv_shift(img, speaker.hue_shift, speaker.saturation, speaker.brightness)
    bg = _background(speaker, img)
    out = alpha * person.astype(np.float32) + (1 - alpha) * bg
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def portrait_speaker_photo(speaker: PortraitSpeaker, src: Source) -> np.ndarray:
    """A portrait source (`portraits.Source`) recoloured, lit and put on the speaker's background,
    uint8 [CANVAS, CANVAS, 3]."""
    img = src.photo
    alpha = src.alpha[..., None]
    person = _rgb_to_hsv_shift(img, speaker.hue_shift, speaker.saturation, speaker.brightness)
    person = person.astype(np.float32)
    h, w = img.shape[:2]
    lm = src.landmarks
    fw = float(lm[16, 0] - lm[0, 0])
    c = lm.mean(0)
    ang = math.radians(speaker.light_angle)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx - c[0]) * math.cos(ang) + (yy - c[1]) * math.sin(ang)) / fw
    light = np.clip(1.0 + speaker.light_strength * np.tanh(ramp), 0.5, 1.5)[..., None]
    person = 255.0 * (np.clip(person * light, 0, 255) / 255.0) ** speaker.gamma
    person = person * np.array(speaker.white_balance, np.float32)
    bg = _background(speaker, img)
    out = alpha * person + (1 - alpha) * bg
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _background(speaker: Speaker, img: np.ndarray) -> np.ndarray:
    """The speaker's background for a photo, float32 [H, W, 3]."""
    h, w = img.shape[:2]
    rng = np.random.default_rng([speaker.seed, 0xB6])
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top = np.array(speaker.bg_colour_top, np.float32)
    bottom = np.array(speaker.bg_colour_bottom, np.float32)
    if speaker.background == "flat":
        bg = np.broadcast_to(top, (h, w, 3)).astype(np.float32)
    elif speaker.background == "gradient":
        bg = np.broadcast_to(top * (1 - yy) + bottom * yy, (h, w, 3)).astype(np.float32)
    elif speaker.background == "photo":  # the photo's own background, out of focus
        bg = cv2.GaussianBlur(img, (0, 0), 5).astype(np.float32)
    else:  # "tint": the photo's own background, blurred, desaturated and tinted
        blur = cv2.GaussianBlur(img, (0, 0), 4).astype(np.float32)
        grey = blur.mean(-1, keepdims=True)
        bg = 0.5 * grey * (top / max(top.mean(), 1.0)) + 0.5 * top
    noise = cv2.resize(rng.standard_normal((8, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return bg + speaker.bg_texture * noise[..., None]
