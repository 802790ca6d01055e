"""Face model and renderer for the synthetic talking-head corpus.

One real photo (``skimage.data.astronaut()``) is animated by piecewise-affine
warping. Control points are dlib's 68 landmarks of the photo (deformed by a
phoneme-driven viseme model and moved by a 3-D-ish head pose), two rings of
points around the head (hair/neck, then shoulders) and fixed points on the
frame border. Every frame pixel is mapped back to the photo through the affine
map of the destination triangle it falls into, and sampled with ``cv2.remap``.
The mouth interior (cavity, teeth, tongue) is drawn inside the inner-lip
contour, so a landmarker sees the opening where the ground truth says it is.

Any other portrait (`PortraitSpeaker`, photos from `thflax.synthetic.portraits`: real photos,
landmark-aligned morphs of two people, mirror images) goes through the same renderer; its matte,
closed mouth and anchor rings are derived from that photo's own dlib landmarks. A plain `Speaker`
keeps the astronaut path (hand-placed matte and closed mouth) unchanged, bit for bit.

Coordinate frames:
  * photo: pixels of the 512x512 astronaut photo, where the base landmarks live (for a
    `PortraitSpeaker`: the canonical `portraits.CANVAS`-square source photo);
  * frame: pixels of the rendered video frame (size = (W, H), default 360x288).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial import Delaunay

from thflax.face.landmarks import _dlib_models
from thflax.io import speech

# dlib 68-point index groups.
JAW = np.arange(0, 17)
NOSE = np.arange(27, 36)
MOUTH = np.arange(48, 68)
INNER_LIP = np.arange(60, 68)
UPPER_INNER = np.array([61, 62, 63])
LOWER_INNER = np.array([67, 66, 65])  # paired with UPPER_INNER (61<->67, 62<->66, 63<->65)

POSE_NAMES: tuple[str, ...] = ("yaw_deg", "pitch_deg", "roll_deg", "tx_px", "ty_px", "scale")
# Pose limits keep dlib tracking reliably (it is trained on mostly frontal faces).
MAX_YAW, MAX_PITCH, MAX_ROLL = 14.0, 10.0, 9.0

_RING1_POINTS = 16  # hair / neck ring: moves rigidly with the head
_RING2_POINTS = 16  # shoulders ring: moves with a fraction of the head motion
_RING2_FOLLOW = 0.3
_BORDER_STEP = 60  # spacing of fixed points on the frame border (px)
_BORDER_MARGIN = 18  # ring points closer than this to the frame edge are dropped
# The astronaut's jaw width |p16 - p0| in its photo (px) and brow-to-chin height / jaw width: a
# portrait is scaled so that its face has the astronaut's size in the frame, and its anchor rings
# are stretched vertically by its own height / width ratio relative to the astronaut's.
_REF_FACE_WIDTH = 93.0
_REF_HEIGHT_RATIO = 0.929


# ----------------------------------------------------------------------------
# The photo and its landmarks (computed once per process).


@functools.lru_cache(maxsize=1)
def base_photo() -> np.ndarray:
    """The source photo, uint8 RGB [512, 512, 3]."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


def detect_landmarks(image: np.ndarray, upsample: int = 1) -> np.ndarray | None:
    """dlib's 68 landmarks of the largest detected face.

    Args:
      image: uint8 RGB [H, W, 3].
    Returns:
      float32 [68, 2] (x, y) pixel coordinates, or None if no face is found.
    """
    detector, predictor = _dlib_models()
    # dlib silently misreads non-contiguous views (e.g. BGR->RGB ``[..., ::-1]``).
    image = np.ascontiguousarray(image, dtype=np.uint8)
    rects = detector(image, upsample)
    if len(rects) == 0:
        return None
    # The astronaut photo also yields a false detection on the suit; the face is
    # the largest rectangle.
    rect = max(rects, key=lambda r: r.area())
    shape = predictor(image, rect)
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32)


@functools.lru_cache(maxsize=1)
def base_landmarks() -> np.ndarray:
    """dlib's 68 landmarks of the photo, float32 [68, 2] in photo pixels (read-only)."""
    pts = detect_landmarks(base_photo(), 1)
    if pts is None:
        raise RuntimeError("dlib found no face in the astronaut photo")
    pts.setflags(write=False)
    return pts


@functools.lru_cache(maxsize=1)
def person_alpha() -> np.ndarray:
    """Soft foreground (person) matte of the photo, float32 [512, 512] in [0, 1].

    GrabCut seeded with the face, neck ring and suit as certain foreground and
    the image sides as certain background; used to swap backgrounds per speaker.
    """
    img = base_photo()
    lm = base_landmarks()
    c = lm.mean(0)
    fw = lm[16, 0] - lm[0, 0]  # face width, ~93 px
    mask = np.full(img.shape[:2], cv2.GC_PR_BGD, np.uint8)
    cx, cy = int(c[0]), int(c[1])
    cv2.ellipse(mask, (cx, cy - 20), (int(0.86 * fw), int(1.08 * fw)), 0, 0, 360, cv2.GC_PR_FGD, -1)
    cv2.rectangle(mask, (30, cy + 45), (370, 511), cv2.GC_PR_FGD, -1)
    cv2.ellipse(mask, (cx, cy), (int(0.43 * fw), int(0.54 * fw)), 0, 0, 360, cv2.GC_FGD, -1)
    cv2.ellipse(mask, (cx - 16, cy + 97), (int(0.99 * fw), int(0.73 * fw)), 0, 0, 360, cv2.GC_FGD, -1)
    cv2.rectangle(mask, (120, 260), (300, 511), cv2.GC_FGD, -1)
    cv2.rectangle(mask, (300, 350), (511, 511), cv2.GC_FGD, -1)
    mask[:, :12] = cv2.GC_BGD
    mask[:300, 470:] = cv2.GC_BGD
    mask[:6, :] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)  # GrabCut's GMM init uses OpenCV's RNG: keep it deterministic.
    cv2.grabCut(np.ascontiguousarray(img[:, :, ::-1]), mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    # Keep the main blob and fill holes so stray background islands do not flicker.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=4)
    if n > 1:
        fg = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    inv = (1 - fg).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    for k in range(1, n):
        x, y, w, h, _ = stats[k]
        if x > 0 and y > 0 and x + w < img.shape[1] and y + h < img.shape[0]:
            fg[labels == k] = 1  # hole not touching the border
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 1.5)
    alpha.setflags(write=False)
    return alpha


def _depth_proxy(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth of each landmark towards the camera (photo px), for yaw and pitch.

    For yaw the face is a vertical cylinder of radius r ~ half the face width
    about the head's vertical axis (the contour sits on the silhouette, z ~ 0);
    for pitch, a horizontal cylinder about an axis r behind the face (brows and
    jaw sides curve back a little). The nose and lips stand out in both.

    Returns:
      (z_yaw, z_pitch): float64 [68] each.
    """
    c = lm.mean(0)
    r = 0.55 * (lm[16, 0] - lm[0, 0])
    dx = np.clip((lm[:, 0] - c[0]) / r, -1.0, 1.0)
    bonus = np.zeros(68)
    bonus[27:31] = np.linspace(0.08, 0.38, 4)  # nose bridge to tip
    bonus[31:36] = [0.12, 0.2, 0.24, 0.2, 0.12]  # nostrils
    bonus[48:68] = 0.1  # lips
    z_yaw = r * np.sqrt(1.0 - dx**2) + bonus * r
    profile = np.full(68, 0.9)
    profile[[0, 1, 2, 3, 13, 14, 15, 16]] = 0.5
    profile[17:27] = 0.8
    z_pitch = r * profile + bonus * r
    return z_yaw, z_pitch


# ----------------------------------------------------------------------------
# Speakers.


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


def _speaker_shape(speaker: Speaker) -> np.ndarray:
    """The speaker's neutral, closed-mouth landmarks in photo px, float32 [68, 2]."""
    lm = base_landmarks().astype(np.float64).copy()
    fw = lm[16, 0] - lm[0, 0]
    c = lm.mean(0)
    # Close the photo's (smiling, teeth showing) mouth: lift the lower lip onto
    # the upper one and the jaw with it.
    gap = lm[LOWER_INNER, 1] - lm[UPPER_INNER, 1]  # [3]
    g = float(gap.mean())
    # Pairs coincide exactly, so the triangles between them collapse cleanly.
    lm[LOWER_INNER] = lm[UPPER_INNER]
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
    mc = lm[MOUTH].mean(0)
    lm[MOUTH] = mc + (lm[MOUTH] - mc) * speaker.mouth_size
    nc = lm[NOSE[4:]].mean(0)
    lm[31:36, 0] = nc[0] + (lm[31:36, 0] - nc[0]) * speaker.nose_width
    lm[17:27, 1] -= speaker.brow_raise * fw
    return lm.astype(np.float32)


def _portrait_shape(speaker: Speaker, lm0: np.ndarray) -> np.ndarray:
    """Neutral landmarks of a portrait speaker (its source photo is already closed-mouthed)."""
    lm = lm0.astype(np.float64).copy()
    lm[LOWER_INNER] = lm[UPPER_INNER]
    return _vary_shape(lm, speaker, float(lm[16, 0] - lm[0, 0]), lm.mean(0))


# ----------------------------------------------------------------------------
# Viseme model.

# Targets per phoneme class: (opening 0..1, width -1 rounded .. +1 spread).
_VOWEL_TARGETS: dict[str, tuple[float, float]] = {
    # open
    "a": (0.9, 0.25), "a#": (0.8, 0.2), "A:": (1.0, 0.05), "A@": (0.9, 0.0), "aa": (0.95, 0.2),
    "V": (0.75, 0.1), "0": (0.8, -0.3), "Q": (0.8, -0.3), "A": (0.9, 0.05),
    # mid
    "E": (0.6, 0.35), "e": (0.55, 0.4), "e@": (0.6, 0.3), "@": (0.42, 0.0), "3": (0.45, 0.0),
    "3:": (0.45, 0.0), "@2": (0.4, 0.0), "@5": (0.4, 0.0), "@L": (0.4, 0.0), "a2": (0.55, 0.1),
    # close, spread
    "i": (0.22, 0.7), "i:": (0.22, 0.75), "I": (0.28, 0.55), "I2": (0.28, 0.5), "I#": (0.28, 0.4),
    "i@": (0.3, 0.5), "i@3": (0.3, 0.5),
    # rounded
    "u:": (0.22, -0.85), "U": (0.3, -0.6), "O:": (0.6, -0.6), "O": (0.6, -0.55), "O@": (0.55, -0.5),
    "o@": (0.5, -0.6), "o": (0.45, -0.7), "U@": (0.35, -0.5),
}
# Diphthongs: (first half, second half).
_DIPHTHONGS: dict[str, tuple[str, str]] = {
    "aI": ("a", "I"), "aU": ("a", "U"), "eI": ("e", "I"), "oU": ("o", "U"), "OI": ("O:", "I"),
    "aI@": ("a", "@"), "aU@": ("a", "@"), "eI@": ("e", "@"), "I@": ("I", "@"), "e@": ("E", "@"),
    "aI3": ("a", "3"), "aU3": ("a", "3"),
}
_CONSONANT_TARGETS: dict[str, tuple[float, float]] = {
    "p": (0.0, 0.0), "b": (0.0, 0.0), "m": (0.0, 0.0),
    "f": (0.08, 0.1), "v": (0.08, 0.1),
    "T": (0.22, 0.1), "D": (0.22, 0.1),
    "t": (0.2, 0.15), "d": (0.2, 0.15), "n": (0.2, 0.15), "l": (0.28, 0.1), "s": (0.15, 0.3),
    "z": (0.15, 0.3), "t#": (0.2, 0.15), "d#": (0.2, 0.15), "n-": (0.2, 0.1), "l/": (0.28, 0.0),
    "S": (0.2, -0.45), "Z": (0.2, -0.45), "tS": (0.2, -0.45), "dZ": (0.2, -0.45),
    "r": (0.25, -0.4), "r-": (0.25, -0.4), "w": (0.15, -0.9), "j": (0.2, 0.5),
    "h": (0.4, 0.0), "k": (0.3, 0.05), "g": (0.3, 0.05), "N": (0.3, 0.05), "x": (0.3, 0.0),
    "?": (0.1, 0.0),
}
BILABIALS = frozenset({"p", "b", "m"})
LABIODENTALS = frozenset({"f", "v"})


def _clean(mnemonic: str) -> str:
    """Strips eSpeak stress marks ('secondary ,primary) and other prosody marks."""
    return mnemonic.replace("'", "").replace(",", "").replace("=", "").strip()


def viseme_target(mnemonic: str) -> tuple[float, float]:
    """(opening 0..1, width -1..1) target of one eSpeak phoneme mnemonic.

    Pauses and unknown symbols are treated by their first letter (vowel-like ->
    mid opening, otherwise a slightly open consonant); pauses close the mouth.
    """
    p = _clean(mnemonic)
    if not p or p.startswith("_"):
        return 0.0, 0.0
    for table in (_CONSONANT_TARGETS, _VOWEL_TARGETS):
        if p in table:
            return table[p]
    if p in _DIPHTHONGS:
        a, b = _DIPHTHONGS[p]
        oa, wa = viseme_target(a)
        ob, wb = viseme_target(b)
        return (oa + ob) / 2, (wa + wb) / 2
    # eSpeak variants like "u:#" or "@-": fall back to the longest known prefix.
    for n in range(len(p) - 1, 0, -1):
        if p[:n] in _CONSONANT_TARGETS or p[:n] in _VOWEL_TARGETS or p[:n] in _DIPHTHONGS:
            return viseme_target(p[:n])
    return (0.45, 0.0) if p[0] in "aeiouAEIOUV03@" else (0.2, 0.0)


def mouth_trajectory(
    phonemes: list[tuple[float, float, str]],
    num_frames: int,
    fps: float = 25.0,
    smoothing_s: float = 0.035,
    lead_s: float = 0.02,
) -> np.ndarray:
    """Smoothed articulation parameters sampled at the video frame times.

    Targets are laid out at 200 Hz (silence = closed, neutral), smoothed with a
    Gaussian of ``smoothing_s`` (coarticulation: short phonemes do not reach
    their target) and shifted ``lead_s`` earlier, since lips move slightly before
    the sound. Bilabials then force full closure through a narrow gate, because
    /p b m/ cannot be produced with open lips whatever the context.

    Args:
      phonemes: (start_s, end_s, mnemonic) from ``speech.synthesize``.
      num_frames: T.
    Returns:
      float32 [T, 2]: (opening 0..~1, width -1..1) at times t / fps.
    """
    hz = 200.0
    duration = num_frames / fps
    n = int(math.ceil(duration * hz)) + 1
    tgt = np.zeros((n, 2), np.float64)
    closure = np.zeros(n, np.float64)
    labio = np.zeros(n, np.float64)
    min_closure = int(round(0.05 * hz))  # a bilabial seals the lips for >= 50 ms
    for start, end, name in phonemes:
        i0, i1 = int(round(start * hz)), max(int(round(end * hz)), int(round(start * hz)) + 1)
        i0, i1 = min(i0, n), min(i1, n)
        p = _clean(name)
        if p in BILABIALS and i1 - i0 < min_closure:
            # eSpeak can make a /b/ very short; real lips still close fully.
            mid = (i0 + i1) // 2
            c0, c1 = max(mid - min_closure // 2, 0), min(mid + min_closure // 2, n)
            closure[c0:c1] = 1.0
        if p in _DIPHTHONGS:  # glide: first half to the first vowel, second half to the second
            a, b = _DIPHTHONGS[p]
            mid = (i0 + i1) // 2
            tgt[i0:mid] = viseme_target(a)
            tgt[mid:i1] = viseme_target(b)
        else:
            tgt[i0:i1] = viseme_target(name)
        if p in BILABIALS:
            closure[i0:i1] = 1.0
        elif p in LABIODENTALS:
            labio[i0:i1] = 1.0
    sigma = smoothing_s * hz
    smooth = gaussian_filter1d(tgt, sigma, axis=0, mode="nearest")
    gate = np.clip(1.6 * gaussian_filter1d(closure, 0.4 * sigma, mode="nearest"), 0, 1)
    lgate = np.clip(1.6 * gaussian_filter1d(labio, 0.4 * sigma, mode="nearest"), 0, 1)
    smooth[:, 0] *= 1.0 - gate
    smooth[:, 0] = np.minimum(smooth[:, 0], (1.0 - lgate) + lgate * 0.08)
    # Snap the Gaussian tails to exact closure (a sub-pixel gap is not a gap).
    smooth[smooth[:, 0] < 0.02, 0] = 0.0
    t_frames = np.arange(num_frames) / fps + lead_s
    grid = np.arange(n) / hz
    out = np.stack([np.interp(t_frames, grid, smooth[:, k]) for k in range(2)], -1)
    return out.astype(np.float32)


def deform_mouth(shape: np.ndarray, opening: float, width: float, open_gain: float = 1.0) -> np.ndarray:
    """Applies one articulation state to a closed-mouth shape (photo px).

    Args:
      shape: float [68, 2] neutral closed-mouth landmarks.
      opening: 0 (closed) .. ~1 (open vowel).
      width: -1 (rounded/protruded) .. +1 (spread).
    Returns:
      float32 [68, 2].
    """
    out = shape.astype(np.float64).copy()
    mw = float(np.linalg.norm(shape[54] - shape[48]))
    gap = max(opening, 0.0) * open_gain * 0.4 * mw  # inner-lip gap (px) at the centre
    up, down = 0.12 * gap, 0.88 * gap  # the upper lip lifts a little, the jaw does the rest
    out[[61, 62, 63], 1] -= up * np.array([0.85, 1.0, 0.85])
    out[[50, 51, 52], 1] -= 0.6 * up
    out[[49, 53], 1] -= 0.4 * up
    out[[65, 66, 67], 1] += down * np.array([0.85, 1.0, 0.85])
    out[[56, 57, 58], 1] += down * np.array([0.9, 0.95, 0.9])
    out[[55, 59], 1] += 0.75 * down
    out[[48, 54, 60, 64], 1] += 0.32 * down
    jaw_w = np.array([0.08, 0.25, 0.5, 0.72, 0.8, 0.72, 0.5, 0.25, 0.08])  # points 4..12
    out[4:13, 1] += down * jaw_w
    # Width: corners move most, lips in between partly; rounding also pouts the
    # lips (thicker vertically) and narrows the opening horizontally.
    mc = out[MOUTH].mean(0)
    k = 0.09 * width if width > 0 else 0.16 * width
    wt = np.ones(20)
    wt[[0, 6, 12, 16]] = 1.0  # corners 48, 54, 60, 64
    wt[[1, 5, 7, 11, 13, 15, 17, 19]] = 0.6
    wt[[2, 4, 8, 10, 14, 18]] = 0.3
    wt[[3, 9]] = 0.0
    out[MOUTH, 0] = mc[0] + (out[MOUTH, 0] - mc[0]) * (1 + k * wt)
    if width < 0:
        pout = -width * 0.04 * mw
        out[[49, 50, 51, 52, 53], 1] -= pout
        out[[55, 56, 57, 58, 59], 1] += pout
    return out.astype(np.float32)


# ----------------------------------------------------------------------------
# Head pose.


def _smooth_noise(rng: np.random.Generator, n: int, sigma_frames: float) -> np.ndarray:
    """Unit-variance low-pass Gaussian noise [n]."""
    pad = int(3 * sigma_frames) + 1
    x = gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma_frames, mode="wrap")[pad:pad + n]
    return x / (x.std() + 1e-8) if n > 1 else x


def speech_energy(audio: np.ndarray, num_frames: int, sample_rate: int = 16000, fps: float = 25.0) -> np.ndarray:
    """Per-frame speech energy in [0, 1], float32 [T].

    RMS over a window centred on each frame time, in dB mapped so that -50 dB
    (relative to the loudest frame) or less is 0 and the loudest frame is 1.
    """
    hop = sample_rate / fps
    win = int(round(hop))
    padded = np.pad(audio.astype(np.float64), (win, win))
    centres = (np.arange(num_frames) * hop).astype(int) + win
    rms = np.array([np.sqrt(np.mean(padded[c - win // 2 : c + win // 2] ** 2)) for c in centres])
    db = 20 * np.log10(rms + 1e-9)
    db -= db.max() if len(db) else 0.0
    return np.clip(1 + db / 50.0, 0, 1).astype(np.float32)


def head_poses(
    speaker: Speaker,
    audio: np.ndarray,
    num_frames: int,
    rng: np.random.Generator,
    fps: float = 25.0,
    sample_rate: int = 16000,
    head_motion_scale: float = 1.0,
) -> np.ndarray:
    """Head pose trajectory: random smooth motion plus speech-driven nods.

    The speech-driven part follows the energy envelope 120 ms late (the head
    dips and bobs while speaking, more at loud onsets), so part of the motion is
    predictable from audio; the rest is low-pass noise the audio cannot explain.

    ``head_motion_scale`` multiplies the whole trajectory's deviation from the
    rest pose (frontal, centred, scale 1), random and speech-driven parts and
    per-utterance offsets alike: the same motion, k times smaller (< 1: a
    stiller, more frontal head, GRID-like; see `input_pipeline.synthetic`). It
    draws the same random numbers whatever its value, and at 1.0 the arithmetic
    is skipped, so the default trajectories are bit-identical to those made
    before the parameter existed.

    Returns:
      float32 [T, 6]: yaw, pitch, roll (degrees; pitch > 0 = nod down), tx, ty
      (frame px at 288-px height), scale (multiplier).
    """
    t = num_frames
    e = speech_energy(audio, t, sample_rate, fps)
    e = gaussian_filter1d(e.astype(np.float64), 2.0, mode="nearest")
    delay = 3  # frames (120 ms)
    e_d = np.concatenate([np.full(delay, e[0]), e[:-delay]]) if t > delay else e
    onset = np.clip(np.gradient(e_d), 0, None) * 6.0
    a = speaker.head_motion
    yaw = 4.5 * a * _smooth_noise(rng, t, 14) + rng.uniform(-2, 2)
    pitch = 2.0 * a * _smooth_noise(rng, t, 10) + speaker.nod_gain * (e_d + onset) - 1.0
    roll = 2.0 * a * _smooth_noise(rng, t, 16) + rng.uniform(-1.5, 1.5)
    tx = 3.0 * a * _smooth_noise(rng, t, 18)
    ty = 1.5 * a * _smooth_noise(rng, t, 14) + speaker.sway_gain * e_d
    scale = 1.0 + 0.01 * a * _smooth_noise(rng, t, 20) + 0.01 * e_d
    def soft(x, m):  # smooth saturation instead of flat plateaus at the limits
        return m * np.tanh(x / m)

    poses = np.stack([
        soft(yaw, MAX_YAW), soft(pitch, MAX_PITCH), soft(roll, MAX_ROLL),
        soft(tx, 12.0), soft(ty, 8.0), 1.0 + soft(scale - 1.0, 0.05),
    ], -1)
    if head_motion_scale != 1.0:  # after every draw: the random stream is the same for any scale
        k = float(head_motion_scale)
        poses[:, :5] *= k
        poses[:, 5] = 1.0 + k * (poses[:, 5] - 1.0)
    return poses.astype(np.float32)


# ----------------------------------------------------------------------------
# Renderer.


def _ellipse(centre: np.ndarray, axes: tuple[float, float], n: int) -> np.ndarray:
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False) + np.pi / n
    return np.stack([centre[0] + axes[0] * np.cos(ang), centre[1] + axes[1] * np.sin(ang)], -1)


def _rgb_to_hsv_shift(img: np.ndarray, hue_deg: float, sat: float, val: float) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_deg * 256.0 / 360.0) % 256.0
    hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * val, 0, 255)
    return cv2.cvtColor(hsv.round().astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


@functools.lru_cache(maxsize=1)
def closed_mouth_photo() -> np.ndarray:
    """The photo with its teeth painted over with lip texture, uint8 [512, 512, 3].

    The astronaut smiles with teeth showing up to the mouth corners. Warped
    shut, those teeth would leave bright slivers at the corners, so the region
    between the inner lips (extended to the outer corners) is inpainted from
    the surrounding lips; the renderer draws its own mouth interior when open.
    """
    img = base_photo()
    lm = base_landmarks().astype(np.float64)
    # The inner-lip polygon, its lower edge pushed down and corners out a little:
    # dlib's straight segments cut the curved smile, leaving teeth just outside.
    poly = lm[INNER_LIP].copy()
    poly[[5, 6, 7], 1] += 2.0
    poly[0] += (lm[60] - lm[64]) / np.linalg.norm(lm[60] - lm[64]) * 2.0
    poly[4] += (lm[64] - lm[60]) / np.linalg.norm(lm[64] - lm[60]) * 2.0
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
    out = cv2.inpaint(np.ascontiguousarray(img), mask, 4, cv2.INPAINT_TELEA)
    out.setflags(write=False)
    return out


def speaker_photo(speaker: Speaker) -> np.ndarray:
    """The photo recoloured and with the speaker's background, uint8 [512, 512, 3]."""
    img = closed_mouth_photo()
    alpha = person_alpha()[..., None]
    person = _rgb_to_hsv_shift(img, speaker.hue_shift, speaker.saturation, speaker.brightness)
    bg = _background(speaker, img)
    out = alpha * person.astype(np.float32) + (1 - alpha) * bg
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def portrait_speaker_photo(speaker: PortraitSpeaker, src) -> np.ndarray:
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


@dataclasses.dataclass
class Clip:
    """A rendered utterance.

    Attributes:
      frames: uint8 RGB [T, H, W, 3].
      landmarks: float32 [T, 68, 2] ground-truth landmarks in frame px.
      poses: float32 [T, 6] (see ``POSE_NAMES``).
      mouth_opening: float32 [T] inner-lip gap |p62 - p66| in frame px.
      articulation: float32 [T, 2] viseme state (opening 0..1, width -1..1).
      audio: float32 [T * sample_rate / fps] utterance audio padded/trimmed to
        exactly the video duration.
      fps, sample_rate: rates.
    """

    frames: np.ndarray
    landmarks: np.ndarray
    poses: np.ndarray
    mouth_opening: np.ndarray
    articulation: np.ndarray
    audio: np.ndarray
    fps: float
    sample_rate: int


class Renderer:
    """Piecewise-affine renderer of one speaker at one frame size."""

    def __init__(self, speaker: Speaker, size: tuple[int, int] = (360, 288)):
        self.speaker = speaker
        self.size = (int(size[0]), int(size[1]))
        w, h = self.size
        portrait = isinstance(speaker, PortraitSpeaker)
        if portrait:
            from thflax.synthetic import portraits

            src = portraits.compose(speaker.sources, speaker.mix, speaker.mirror,
                                    speaker.portraits or portraits.BUILTIN)
            self.src_img = portrait_speaker_photo(speaker, src)
            lm0 = src.landmarks.astype(np.float64)
            self.neutral = _portrait_shape(speaker, lm0).astype(np.float64)
            self.interpolation = cv2.INTER_CUBIC  # keeps real photos sharp under sub-pixel motion
        else:
            self.src_img = speaker_photo(speaker)
            lm0 = base_landmarks().astype(np.float64)
            self.neutral = _speaker_shape(speaker).astype(np.float64)  # photo px
            self.interpolation = cv2.INTER_LINEAR
        self.z_yaw, self.z_pitch = _depth_proxy(lm0)
        self.face_centre = lm0.mean(0)
        self.face_width = float(lm0[16, 0] - lm0[0, 0])
        # Photo -> frame similarity (no rotation): frame = s * (photo - c) + f.
        self.s = speaker.scale * h / 288.0
        self.frame_centre = np.array([speaker.centre[0] * w, speaker.centre[1] * h])
        fw = self.face_width
        ring_c = self.face_centre + np.array([0.0, -0.1 * fw])
        if portrait:
            # Same face size in the frame as the astronaut's; rings scaled from the landmark extent.
            self.s *= _REF_FACE_WIDTH / fw
            k = float(lm0[8, 1] - lm0[17:27, 1].mean()) / fw / _REF_HEIGHT_RATIO
            k = float(np.clip(k, 0.85, 1.2))
            ring1 = _ellipse(ring_c, (0.95 * fw, 1.2 * k * fw), _RING1_POINTS)
            ring2 = _ellipse(ring_c + np.array([0.0, 0.2 * k * fw]), (1.7 * fw, 1.9 * k * fw), _RING2_POINTS)
        else:
            ring1 = _ellipse(ring_c, (0.95 * fw, 1.2 * fw), _RING1_POINTS)
            ring2 = _ellipse(ring_c + np.array([0.0, 0.2 * fw]), (1.7 * fw, 1.9 * fw), _RING2_POINTS)
        # Drop ring points near or beyond the frame edge: they would fold over
        # the fixed border points when the head moves.
        def inside(p):
            f = self.to_frame(p)
            m = _BORDER_MARGIN
            return (f[:, 0] > m) & (f[:, 0] < w - m) & (f[:, 1] > m) & (f[:, 1] < h - m)

        self.ring1 = ring1[inside(ring1)]
        self.ring2 = ring2[inside(ring2)]
        bx = np.linspace(-1, w, max(2, int(math.ceil(w / _BORDER_STEP)) + 1))
        by = np.linspace(-1, h, max(2, int(math.ceil(h / _BORDER_STEP)) + 1))[1:-1]
        border = np.concatenate([
            np.stack([bx, np.full_like(bx, -1)], -1), np.stack([bx, np.full_like(bx, h)], -1),
            np.stack([np.full_like(by, -1), by], -1), np.stack([np.full_like(by, w), by], -1),
        ])
        self.border_frame = border
        # Source (photo) positions of all control points, in a fixed order.
        self.src = np.concatenate([lm0, self.ring1, self.ring2, self.to_photo(border)])
        self.n1, self.n2 = len(self.ring1), len(self.ring2)
        # Triangulate the neutral destination once; the topology is reused for
        # every frame so the warp stays continuous over time.
        # (Half-open mouth: with a closed one the inner-lip points coincide.)
        half_open = deform_mouth(self.neutral, 0.5, 0.0)
        tri = Delaunay(self._dest(half_open, np.array([0, 0, 0, 0, 0, 1.0]))).simplices
        self.tri = tri.astype(np.int64)
        self.id_dtype = np.uint8 if len(self.tri) < 255 else np.uint16
        ys, xs = np.mgrid[0:h, 0:w]
        self.xs = xs.astype(np.float32)
        self.ys = ys.astype(np.float32)

    # -- coordinate helpers --------------------------------------------------
    def to_frame(self, p: np.ndarray) -> np.ndarray:
        return (p - self.face_centre) * self.s + self.frame_centre

    def to_photo(self, f: np.ndarray) -> np.ndarray:
        return (f - self.frame_centre) / self.s + self.face_centre

    def _pose_points(
        self, p: np.ndarray, z_yaw: np.ndarray | float, z_pitch: np.ndarray | float,
        pose: np.ndarray, follow: float = 1.0,
    ) -> np.ndarray:
        """Moves photo-px points by a head pose; returns frame px.

        Yaw/pitch rotate each point about a vertical/horizontal axis behind the
        face using its depth proxy (points nearer the camera, like the nose tip,
        move more; the head silhouette, z = 0, stays); roll, scale and
        translation are a 2-D similarity about a pivot under the chin (the
        neck). ``follow`` scales the whole pose (for points that only partly
        follow the head).
        """
        yaw, pitch, roll = np.deg2rad(np.asarray(pose[:3], np.float64) * follow)
        c = self.face_centre
        x = c[0] + (p[:, 0] - c[0]) * math.cos(yaw) + z_yaw * math.sin(yaw)
        y = c[1] + (p[:, 1] - c[1]) * math.cos(pitch) + z_pitch * math.sin(pitch)
        pivot = c + np.array([0.0, 0.75 * self.face_width])
        sc = 1.0 + (float(pose[5]) - 1.0) * follow
        cr, sr = math.cos(roll) * sc, math.sin(roll) * sc
        dx, dy = x - pivot[0], y - pivot[1]
        q = np.stack([pivot[0] + cr * dx - sr * dy, pivot[1] + sr * dx + cr * dy], -1)
        hscale = self.size[1] / 288.0
        return self.to_frame(q) + np.array([pose[3], pose[4]], np.float64) * follow * hscale

    def landmarks(self, shape: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """Frame-px landmarks [68, 2] of a photo-px shape under a pose."""
        return self._pose_points(shape, self.z_yaw, self.z_pitch, pose)

    def _dest(self, shape: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """Frame-px positions of all control points, in ``self.src`` order."""
        lm = self._pose_points(shape, self.z_yaw, self.z_pitch, pose)
        r1 = self._pose_points(self.ring1, 0.0, 0.0, pose)
        r2 = self._pose_points(self.ring2, 0.0, 0.0, pose, follow=_RING2_FOLLOW)
        return np.concatenate([lm, r1, r2, self.border_frame])

    # -- rendering -----------------------------------------------------------
    def render_frame(self, shape: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Renders one frame.

        Args:
          shape: float [68, 2] deformed landmarks in photo px.
          pose: float [6] head pose.
        Returns:
          (frame uint8 [H, W, 3], landmarks float32 [68, 2] in frame px).
        """
        w, h = self.size
        dst = self._dest(shape, pose)
        d = dst[self.tri]  # [K, 3, 2]
        s = self.src[self.tri]  # [K, 3, 2]
        # Affine frame->photo per triangle: [x, y, 1] @ X = src, X: [K, 3, 2].
        dh = np.concatenate([d, np.ones(d.shape[:2] + (1,))], -1)
        det = np.linalg.det(dh)  # twice the signed area
        # Triangles that (nearly) collapse as the lips close would get huge,
        # unstable affine maps; any pixel they still own takes the colour of
        # their source centroid instead.
        ok = np.abs(det) > 0.5
        X = np.zeros((len(d), 3, 2))
        X[ok] = np.linalg.solve(dh[ok], s[ok])
        X[~ok, 2] = s[~ok].mean(1)
        ids = np.zeros((h, w), self.id_dtype)
        pts = np.round(d * 16).astype(np.int32)
        # Small triangles first, so the pixels on their edges go to the larger,
        # well-conditioned neighbours drawn later.
        for k in np.argsort(np.abs(det), kind="stable"):
            cv2.fillConvexPoly(ids, pts[k], int(k), cv2.LINE_8, 4)
        X = X.astype(np.float32)
        map_x = X[ids, 0, 0] * self.xs + X[ids, 1, 0] * self.ys + X[ids, 2, 0]
        map_y = X[ids, 0, 1] * self.xs + X[ids, 1, 1] * self.ys + X[ids, 2, 1]
        frame = cv2.remap(self.src_img, map_x, map_y, self.interpolation, borderMode=cv2.BORDER_REFLECT101)
        lm = dst[:68]
        self._draw_mouth(frame, lm)
        return frame, lm.astype(np.float32)

    def _draw_mouth(self, frame: np.ndarray, lm: np.ndarray) -> None:
        """Draws the mouth interior inside the inner-lip contour (in place).

        Rendered 4x supersampled in a small crop, so edges are anti-aliased and
        the visible opening matches the ground-truth contour to sub-pixel level.
        """
        inner = lm[INNER_LIP]
        gap = float(np.linalg.norm(lm[62] - lm[66]))
        mw = float(np.linalg.norm(lm[64] - lm[60]))
        h, w = frame.shape[:2]
        x0 = int(max(math.floor(inner[:, 0].min()) - 3, 0))
        y0 = int(max(math.floor(inner[:, 1].min()) - 4, 0))
        x1 = int(min(math.ceil(inner[:, 0].max()) + 4, w))
        y1 = int(min(math.ceil(inner[:, 1].max()) + 4, h))
        if x1 <= x0 or y1 <= y0:
            return
        ss = 4
        cw, ch = (x1 - x0) * ss, (y1 - y0) * ss

        def to_crop(p: np.ndarray) -> np.ndarray:
            # Pixel centres: frame pixel (i, j) covers [i-.5, i+.5]; crop sample k
            # of pixel i sits at i - .5 + (k + .5) / ss.
            return np.round(((p - [x0, y0]) * ss + (ss - 1) / 2.0) * 16).astype(np.int32)

        crop = frame[y0:y1, x0:x1].astype(np.float32)
        mask = np.zeros((ch, cw), np.uint8)
        cv2.fillPoly(mask, [to_crop(inner)], 255, cv2.LINE_8, 4)
        # Interior colour layers, drawn back to front.
        col = np.empty((ch, cw, 3), np.float32)
        col[:] = (62, 18, 22)  # dark cavity
        if gap > 1.0:
            # Tongue: a low ellipse resting on the lower lip.
            tc = lm[66] - [0, 0.2 * gap]
            centre = tuple(int(v) for v in to_crop(tc[None])[0])
            axes = (int(0.3 * mw * ss * 16), int(max(0.28 * gap, 0.5) * ss * 16))
            cv2.ellipse(col, centre, axes, 0, 0, 360, (150, 62, 72), -1, cv2.LINE_8, 4)
            # Upper teeth: a band under the upper inner lip, not reaching the
            # corners, shaded darker towards the sides and the biting edge, with
            # faint gaps between the front teeth.
            th = min(0.42 * gap, 0.14 * mw)
            c60, c64 = lm[60] * 0.75 + lm[61] * 0.25, lm[64] * 0.75 + lm[63] * 0.25
            upper = np.stack([c60, lm[61], lm[62], lm[63], c64])
            upper[:, 1] -= 1.0  # tuck under the lip so no cavity line shows above the teeth
            teeth = np.concatenate([upper, (upper + [0, th + 1.0])[::-1]])
            tmask = np.zeros((ch, cw), np.uint8)
            cv2.fillPoly(tmask, [to_crop(teeth)], 255, cv2.LINE_8, 4)
            u = (np.arange(cw, dtype=np.float32) + 0.5) / ss + x0 - 0.5 - float(lm[62, 0])
            v = (np.arange(ch, dtype=np.float32) + 0.5) / ss + y0 - 0.5 - float(lm[62, 1])
            half = max(0.5 * mw, 1.0)
            shade = (1.0 - 0.45 * np.clip(np.abs(u) / half, 0, 1) ** 2)[None, :] * (
                1.0 - 0.15 * np.clip(v / max(th, 1.0), 0, 1)
            )[:, None]
            tooth = 0.13 * mw  # central incisor width
            gaps = np.zeros(cw, np.float32)
            for k in (-2, -1, 0, 1, 2):
                gaps = np.maximum(gaps, np.clip(1.0 - np.abs(u - k * tooth) * ss / 3.0, 0, 1))
            shade = shade * (1.0 - 0.25 * gaps[None, :])
            tcol = np.array([226, 220, 204], np.float32) * shade[..., None]
            tm = (tmask > 0)[..., None]
            col = np.where(tm, tcol, col)
            if gap > 0.35 * mw:  # lower teeth show when wide open
                # Lower teeth: a thin band above the lower inner lip.
                lower = np.stack([lm[65] * 0.8 + lm[64] * 0.2, lm[65], lm[66], lm[67], lm[67] * 0.8 + lm[60] * 0.2])
                lower[:, 1] += 1.0
                band = np.concatenate([lower, (lower - [0, 0.12 * gap + 1.0])[::-1]])
                cv2.fillPoly(col, [to_crop(band)], (196, 190, 178), cv2.LINE_8, 4)
        alpha = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        colour = cv2.resize(col, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        # The colour was drawn over the whole crop; weight it by coverage so only
        # the inside of the contour is painted.
        out = crop * (1 - alpha[..., None]) + colour * alpha[..., None]
        # A closed mouth still shows a dark seam where the lips meet.
        seam = float(np.clip(1.0 - gap / 3.0, 0.0, 1.0)) * 0.5
        if seam > 0:
            line = np.zeros((y1 - y0, x1 - x0), np.uint8)
            pts = np.stack([lm[60], lm[61], lm[62], lm[63], lm[64]])
            cv2.polylines(line, [np.round((pts - [x0, y0]) * 16).astype(np.int32)], False, 255, 1, cv2.LINE_AA, 4)
            a = seam * line.astype(np.float32)[..., None] / 255.0
            out = out * (1 - a) + np.array([70, 30, 35], np.float32) * a
        frame[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def get_renderer(speaker: Speaker, size: tuple[int, int] = (360, 288)) -> Renderer:
    """A cached Renderer (building one costs the matte, recolouring and triangulation)."""
    return Renderer(speaker, size)


def frames_covering_audio(num_samples: int, sample_rate: int = 16000, fps: float = 25.0) -> int:
    """T = ceil(duration * fps): the fewest frames whose video covers all of the audio.

    Rounds up, unlike `thflax.io.audio.num_video_frames` (the whole frames an audio covers, rounded down):
    the renderer makes T frames and pads the audio to T / fps seconds, so no speech is cut. (With a
    whole number of samples per frame, e.g. 640 at 16 kHz / 25 fps, `thflax.io.audio.num_video_frames` of
    the padded audio is T again.)
    """
    return int(math.ceil(num_samples * fps / sample_rate - 1e-9))


def render_clip(
    speaker: Speaker,
    utterance: speech.Utterance,
    fps: float = 25.0,
    size: tuple[int, int] = (360, 288),
    rng: np.random.Generator | None = None,
    on_frame: Callable[[np.ndarray], None] | None = None,
    head_motion_scale: float = 1.0,
) -> Clip:
    """Renders the talking-head video of one utterance.

    T = ceil(audio duration * fps); the audio is zero-padded to exactly T / fps
    seconds (16000 / 25 = 640 samples per frame). Frame t shows time t / fps.

    Args:
      speaker: appearance and motion style.
      utterance: speech with phoneme timings (16 kHz).
      fps: video frame rate.
      size: (W, H) of the frames.
      rng: randomness of the head motion (default: seeded from the speaker).
      on_frame: called with each frame as soon as it is rendered (e.g. to feed
        a video encoder running in parallel).
      head_motion_scale: amplitude of all head motion (`head_poses`); 1 = default.
    Returns:
      A Clip.
    """
    if rng is None:
        rng = np.random.default_rng([speaker.seed, 0xC11])
    sr = utterance.sample_rate
    t = frames_covering_audio(len(utterance.audio), sr, fps)
    n_audio = int(round(t * sr / fps))
    audio = np.zeros(n_audio, np.float32)
    audio[: min(n_audio, len(utterance.audio))] = utterance.audio[:n_audio]
    art = mouth_trajectory(utterance.phonemes, t, fps)
    poses = head_poses(speaker, audio, t, rng, fps, sr, head_motion_scale=head_motion_scale)
    renderer = get_renderer(speaker, tuple(size))
    w, h = renderer.size
    frames = np.empty((t, h, w, 3), np.uint8)
    lms = np.empty((t, 68, 2), np.float32)
    for i in range(t):
        shape = deform_mouth(renderer.neutral, float(art[i, 0]), float(art[i, 1]), speaker.open_gain)
        frames[i], lms[i] = renderer.render_frame(shape, poses[i])
        if on_frame is not None:
            on_frame(frames[i])
    opening = np.linalg.norm(lms[:, 62] - lms[:, 66], axis=-1).astype(np.float32)
    return Clip(frames=frames, landmarks=lms, poses=poses, mouth_opening=opening,
                articulation=art, audio=audio, fps=float(fps), sample_rate=sr)
