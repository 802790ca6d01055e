"""Synthetic speakers: who speaks (voice, appearance, motion style) and their neutral face shape.

A `Speaker` is drawn deterministically from a seed (`make_speaker`) and is a variant of the
astronaut photo (`thflax.synthetic.base_face`); a `PortraitSpeaker` (`make_portrait_speaker`) has
its face from real portraits (`thflax.synthetic.portraits`). Both are plain, hashable,
JSON-serialisable values (`speaker_from_dict` reads them back from a corpus manifest).
`neutral_shape` / `portrait_neutral_shape` give the closed-mouth landmarks [68, 2] in photo px that
the viseme model deforms and the renderer animates.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from thflax.io import speech
from thflax.face.points import JAW, LOWER_INNER, MOUTH, NOSE, UPPER_INNER
from thflax.synthetic.base_face import base_landmarks

@dataclasses.dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: voice, appearance and motion style.

    All fields are plain Python values (hashable, JSON-serialisable).
    """

    seed: int
    voice: str
    rate: int  # eSpeak words per minute
    pitch: int  # eSpeak base pitch 0..100
    hue_shift: float  # degrees, applied to the person
    saturation: float  # multiplier
    brightness: float  # multiplier
    background: str  # "gradient" | "flat" | "tint"
    bg_colour_top: tuple[float, float, float]  # RGB 0..255
    bg_colour_bottom: tuple[float, float, float]
    bg_texture: float  # amplitude of low-frequency background texture (0..255 units)
    face_width: float  # jaw width multiplier
    chin_length: float  # chin drop (fraction of face width)
    mouth_size: float  # mouth size multiplier
    nose_width: float  # nose width multiplier
    brow_raise: float  # eyebrow lift (fraction of face width)
    scale: float  # photo -> frame scale at a 288-px-high frame
    centre: tuple[float, float]  # face centre in the frame, as fractions of (W, H)
    open_gain: float  # how wide the speaker opens the mouth
    head_motion: float  # amplitude multiplier of random head motion
    nod_gain: float  # degrees of pitch per unit of speech energy
    sway_gain: float  # frame px of vertical bob per unit of speech energy

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_BG_PALETTE = (
    (70, 90, 130), (110, 125, 150), (150, 150, 145), (60, 110, 90), (170, 160, 135),
    (95, 80, 110), (40, 60, 80), (180, 185, 190), (120, 70, 60), (85, 120, 150),
)


def make_speaker(seed: int) -> Speaker:
    """Draws a speaker deterministically from ``seed``."""
    rng = np.random.default_rng([seed, 0x5EA4])
    voice = speech.VOICES[int(rng.integers(len(speech.VOICES)))]

    def colour() -> tuple[float, float, float]:
        base = np.array(_BG_PALETTE[int(rng.integers(len(_BG_PALETTE)))], float)
        return tuple(float(v) for v in np.clip(base + rng.normal(0, 12, 3), 0, 255))

    top = colour()
    bottom = tuple(float(v) for v in np.clip(np.array(top) * rng.uniform(0.6, 1.1), 0, 255))
    return Speaker(
        seed=int(seed),
        voice=voice,
        rate=int(rng.integers(140, 201)),
        pitch=int(rng.integers(30, 71)),
        hue_shift=float(rng.uniform(-5, 5)),
        saturation=float(rng.uniform(0.75, 1.2)),
        brightness=float(rng.uniform(0.85, 1.12)),
        background=("gradient", "flat", "tint")[int(rng.integers(3))],
        bg_colour_top=top,
        bg_colour_bottom=bottom,
        bg_texture=float(rng.uniform(0, 10)),
        face_width=float(rng.uniform(0.95, 1.05)),
        chin_length=float(rng.uniform(-0.03, 0.04)),
        mouth_size=float(rng.uniform(0.93, 1.07)),
        nose_width=float(rng.uniform(0.93, 1.08)),
        brow_raise=float(rng.uniform(-0.02, 0.03)),
        scale=float(rng.uniform(1.08, 1.3)),
        centre=(float(rng.uniform(0.44, 0.56)), float(rng.uniform(0.47, 0.55))),
        open_gain=float(rng.uniform(0.85, 1.15)),
        head_motion=float(rng.uniform(0.6, 1.3)),
        nod_gain=float(rng.uniform(2.5, 5.0)),
        sway_gain=float(rng.uniform(1.0, 3.0)),
    )


@dataclasses.dataclass(frozen=True)
class PortraitSpeaker(Speaker):
    """A speaker whose face comes from real portraits (`thflax.synthetic.portraits`).

    ``sources`` are portrait keys (one photo, or two photos of different people morphed with the
    second one's weight ``mix``), ``identities`` the people they show (in the same order),
    ``portraits`` the portrait set ("builtin" or a folder). ``mirror`` flips the face;
    ``light_angle`` / ``light_strength`` a linear illumination ramp across the person, ``gamma`` and
    ``white_balance`` (RGB gains) its colour.
    """

    sources: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()
    mix: float = 0.0
    mirror: bool = False
    light_angle: float = 0.0  # degrees, direction the light comes from (0 = from the right)
    light_strength: float = 0.0  # relative brightness change over one face width
    gamma: float = 1.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    portraits: str = "builtin"


def make_portrait_speaker(
    seed: int, sources: tuple[str, ...], identities: tuple[str, ...], mix: float = 0.0,
    mirror: bool = False, portraits: str = "builtin",
) -> PortraitSpeaker:
    """Draws a portrait speaker deterministically from ``seed``: voice, motion and face-shape
    tweaks as `make_speaker`, plus illumination, colour, scale and background changes."""
    if len(sources) != len(identities) or not 1 <= len(sources) <= 2:
        raise ValueError(f"one or two sources with their identities, got {sources} / {identities}")
    if len(sources) == 2 and identities[0] == identities[1]:
        raise ValueError(f"a morph needs two different people, got {identities}")
    base = make_speaker(seed).to_dict()
    rng = np.random.default_rng([seed, 0x9E07])
    base.update(
        background=("gradient", "flat", "tint", "photo")[int(rng.integers(4))],
        scale=float(rng.uniform(1.0, 1.35)),
        centre=(float(rng.uniform(0.42, 0.58)), float(rng.uniform(0.46, 0.56))),
        hue_shift=float(rng.uniform(-6, 6)),
    )
    return PortraitSpeaker(
        **base,
        sources=tuple(str(s) for s in sources),
        identities=tuple(str(i) for i in identities),
        mix=float(mix) if len(sources) == 2 else 0.0,
        mirror=bool(mirror),
        light_angle=float(rng.uniform(0, 360)),
        light_strength=float(rng.uniform(0.0, 0.3)),
        gamma=float(rng.uniform(0.85, 1.15)),
        white_balance=tuple(float(v) for v in np.clip(1 + rng.normal(0, 0.04, 3), 0.9, 1.1)),
        portraits=str(portraits),
    )


def speaker_from_dict(d: dict) -> Speaker:
    """The `Speaker` (or `PortraitSpeaker`, if it has ``sources``) of a ``to_dict()`` (e.g. from a
    JSON manifest: lists become tuples; keys that are not fields, like "utterances", are ignored)."""
    cls = PortraitSpeaker if "sources" in d else Speaker
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def neutral_shape(speaker: Speaker) -> np.ndarray:
    """The speaker's neutral, closed-mouth landmarks in photo px, float32 [68, 2] (astronaut photo).

    The astronaut smiles with her mouth open; the renderer needs a closed neutral to open from.
    """
    lm = base_landmarks().astype(np.float64).copy()
    fw = lm[16, 0] - lm[0, 0]
    c = lm.mean(0)
    # Close the photo's (smiling, teeth showing) mouth: lift the lower lip onto
    # the upper one and the jaw with it.
    gap = lm[LOWER_INNER, 1] - lm[UPPER_INNER, 1]  # [3]
    g = float(gap.mean())
    # Pairs coincide exactly, so the triangles between them collapse cleanly.
    lm[list(LOWER_INNER)] = lm[list(UPPER_INNER)]
    lm[[56, 57, 58], 1] -= gap
    lm[[55, 59], 1] -= 0.7 * g
    lm[[48, 54, 60, 64], 1] -= 0.4 * g
    jaw_w = np.array([0.08, 0.25, 0.5, 0.72, 0.8, 0.72, 0.5, 0.25, 0.08])  # points 4..12
    lm[4:13, 1] -= 0.7 * g * jaw_w
    return _vary_shape(lm, speaker, fw, c)


def _vary_shape(lm: np.ndarray, speaker: Speaker, fw: float, c: np.ndarray) -> np.ndarray:
    """The speaker's face-shape tweaks of closed-mouth landmarks ``lm`` (changed in place), given
    the photo's face width ``fw`` and landmark centre ``c``; float32 [68, 2]."""
    # Face shape: jaw width (lower jaw more), chin length, mouth and nose size.
    wt = np.array([0.3, 0.45, 0.6, 0.75, 0.85, 0.9, 0.8, 0.5, 0.0,
                   0.5, 0.8, 0.9, 0.85, 0.75, 0.6, 0.45, 0.3])
    lm[JAW, 0] = c[0] + (lm[JAW, 0] - c[0]) * (1 + (speaker.face_width - 1) * wt)
    chin_w = np.array([0.15, 0.45, 0.75, 1.0, 0.75, 0.45, 0.15])  # points 5..11
    lm[5:12, 1] += speaker.chin_length * fw * chin_w
    mouth = list(MOUTH)
    mc = lm[mouth].mean(0)
    lm[mouth] = mc + (lm[mouth] - mc) * speaker.mouth_size
    nc = lm[list(NOSE[4:])].mean(0)
    lm[31:36, 0] = nc[0] + (lm[31:36, 0] - nc[0]) * speaker.nose_width
    lm[17:27, 1] -= speaker.brow_raise * fw
    return lm.astype(np.float32)


def portrait_neutral_shape(speaker: Speaker, lm0: np.ndarray) -> np.ndarray:
    """Neutral landmarks of a portrait speaker, float32 [68, 2] in source-photo px, from the source's
    landmarks ``lm0`` [68, 2] (its photo is already closed-mouthed, `portraits.close_mouth`)."""
    lm = lm0.astype(np.float64).copy()
    lm[list(LOWER_INNER)] = lm[list(UPPER_INNER)]
    return _vary_shape(lm, speaker, float(lm[16, 0] - lm[0, 0]), lm.mean(0))
