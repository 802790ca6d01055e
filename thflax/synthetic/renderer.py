"""Renderer of the synthetic talking-head corpus: one utterance -> frames, landmarks, poses.

A speaker's photo (`thflax.synthetic.appearance`) is animated by piecewise-affine warping. Control
points are the photo's 68 landmarks (deformed by the viseme model, `thflax.synthetic.visemes`, and
moved by a 3-D-ish head pose, `thflax.synthetic.head_motion`), two rings of points around the head
(hair/neck, then shoulders) and fixed points on the frame border. Every frame pixel is mapped back
to the photo through the affine map of the destination triangle it falls into, and sampled with
``cv2.remap``. The mouth interior (cavity, teeth, tongue; shaded per pixel, `_mouth_colour`) is drawn
inside the inner-lip contour, so a landmarker sees the opening where the ground truth says it is.

Any other portrait (`PortraitSpeaker`, photos from `thflax.synthetic.portraits`: real photos,
landmark-aligned morphs of two people, mirror images) goes through the same renderer; its matte,
closed mouth and anchor rings are derived from that photo's own dlib landmarks. A plain `Speaker`
keeps the astronaut path (hand-placed matte and closed mouth); the mouth interior is common to both.

Coordinate frames:
  * photo: pixels of the 512x512 astronaut photo, where the base landmarks live (for a
    `PortraitSpeaker`: the canonical `portraits.CANVAS`-square source photo);
  * frame: pixels of the rendered video frame (size = (W, H), default 360x288).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Callable

import cv2
import numpy as np
from scipy.spatial import Delaunay

from thflax.io import speech
from thflax.synthetic import blinks, portraits
from thflax.synthetic.appearance import portrait_speaker_photo, speaker_photo
from thflax.face import eyes
from thflax.face.points import INNER_LIP
from thflax.synthetic.base_face import base_landmarks
from thflax.synthetic.head_motion import head_poses
from thflax.synthetic.speakers import PortraitSpeaker, Speaker, neutral_shape, portrait_neutral_shape
from thflax.synthetic.visemes import deform_mouth, mouth_trajectory

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


def _ellipse(centre: np.ndarray, axes: tuple[float, float], n: int) -> np.ndarray:
    """``n`` points [n, 2] evenly spaced in angle on an axis-aligned ellipse (an anchor ring)."""
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False) + np.pi / n
    return np.stack([centre[0] + axes[0] * np.cos(ang), centre[1] + axes[1] * np.sin(ang)], -1)


@dataclasses.dataclass
class Clip:
    """A rendered utterance.

    Attributes:
      frames: uint8 RGB [T, H, W, 3].
      landmarks: float32 [T, 68, 2] ground-truth landmarks in frame px.
      poses: float32 [T, 6] (see `thflax.synthetic.head_motion.POSE_NAMES`).
      mouth_opening: float32 [T] inner-lip gap |p62 - p66| in frame px.
      articulation: float32 [T, 2] viseme state (opening 0..1, width -1..1).
      audio: float32 [T * sample_rate / fps] utterance audio padded/trimmed to
        exactly the video duration.
      fps, sample_rate: rates.
      eye_closure: float32 [T] eyelid closure 0 (open) .. 1 (closed) of the blinks
        (`thflax.synthetic.blinks`); the landmarks' eye points follow it.
    """

    frames: np.ndarray
    landmarks: np.ndarray
    poses: np.ndarray
    mouth_opening: np.ndarray
    articulation: np.ndarray
    audio: np.ndarray
    fps: float
    sample_rate: int
    eye_closure: np.ndarray | None = None


class Renderer:
    """Piecewise-affine renderer of one speaker at one frame size."""

    def __init__(self, speaker: Speaker, size: tuple[int, int] = (360, 288)):
        self.speaker = speaker
        self.size = (int(size[0]), int(size[1]))
        w, h = self.size
        portrait = isinstance(speaker, PortraitSpeaker)
        if portrait:
            src = portraits.compose(speaker.sources, speaker.mix, speaker.mirror,
                                    speaker.portraits or portraits.BUILTIN)
            self.src_img = portrait_speaker_photo(speaker, src)
            lm0 = src.landmarks.astype(np.float64)
            self.neutral = portrait_neutral_shape(speaker, lm0).astype(np.float64)
            self.interpolation = cv2.INTER_CUBIC  # keeps real photos sharp under sub-pixel motion
        else:
            self.src_img = speaker_photo(speaker)
            lm0 = base_landmarks().astype(np.float64)
            self.neutral = neutral_shape(speaker).astype(np.float64)  # photo px
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
    def render_frame(self, shape: np.ndarray, pose: np.ndarray,
                     eye_closure: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Renders one frame.

        Args:
          shape: float [68, 2] deformed landmarks in photo px (eyes open).
          pose: float [6] head pose.
          eye_closure: 0 (open) .. 1 (closed) eyelids (`thflax.face.eyes.close_eyes`). The warp keeps
            the open eye (a warp to the closed lid points would only squash the eye, iris and all);
            the lid is then drawn over it (`_draw_lids`), so a closure of 0 renders the same bytes as
            before blinks existed.
        Returns:
          (frame uint8 [H, W, 3], landmarks float32 [68, 2] in frame px, eyelids moved).
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
        if eye_closure > 0:
            closed = eyes.close_eyes(lm, eye_closure).astype(np.float64)
            for eye in (eyes.RIGHT_EYE, eyes.LEFT_EYE):
                _draw_lid(frame, lm[list(eye)], closed[list(eye)], float(eye_closure))
            return frame, closed.astype(np.float32)
        return frame, lm.astype(np.float32)

    def _draw_mouth(self, frame: np.ndarray, lm: np.ndarray) -> None:
        """Draws the mouth interior inside the inner-lip contour (in place).

        Rendered 4x supersampled in a small crop, so edges are anti-aliased and
        the visible opening matches the ground-truth contour to sub-pixel level.
        Layers, back to front: the cavity (darker the farther from the lips, i.e.
        the deeper), the tongue, the lower teeth (when wide open), the upper
        teeth; all shaded per pixel in the mouth's own axes (`_mouth_colour`).
        """
        inner = lm[list(INNER_LIP)]
        gap = float(np.linalg.norm(lm[62] - lm[66]))
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
        # Frame coordinates of the samples' centres.
        xs = (np.arange(cw, dtype=np.float32) + 0.5) / ss + (x0 - 0.5)
        ys = (np.arange(ch, dtype=np.float32) + 0.5) / ss + (y0 - 0.5)
        # Distance of each sample inside the opening to the lips (frame px): how deep it sits.
        if mask.any():
            depth = cv2.distanceTransform(mask, cv2.DIST_L2, 3) / ss
            col = _mouth_colour(lm, xs, ys, depth, gap)
        else:  # closed: nothing shows through (the coverage below is 0), only the seam is drawn
            col = np.zeros((ch, cw, 3), np.float32)
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


# Mouth interior colours (RGB) and shapes. The cavity goes from _CAVITY_LIT at the lips to _CAVITY_DEEP
# where it is deepest; teeth are _TEETH where fully lit.
_CAVITY_LIT = np.array([70, 22, 26], np.float32)
_CAVITY_DEEP = np.array([14, 3, 5], np.float32)
_TONGUE = np.array([166, 70, 80], np.float32)
_TEETH = np.array([240, 234, 218], np.float32)
# Visible widths of the teeth from the midline outwards, as fractions of the inner-mouth width: central
# and lateral incisors, canine, premolars, narrower the more they turn away from the camera.
_UPPER_TEETH = np.cumsum([0.15, 0.115, 0.095, 0.075, 0.065, 0.06]).astype(np.float32)
_LOWER_TEETH = np.cumsum([0.105, 0.1, 0.09, 0.08, 0.07, 0.065]).astype(np.float32)


def _teeth_row(a: np.ndarray, mw: float, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each sample falls in its tooth, from its distance ``a`` to the midline (frame px) [N]:
    (c, gap_line) [N] each: c = (2 t - 1)^2 for t in [0, 1] across the tooth (0 in its middle, 1 next
    to its neighbours), gap_line 1 on the thin dark line between two teeth, 0 away from it."""
    edges = bounds * np.float32(mw)
    k = np.minimum(np.searchsorted(edges, a), len(edges) - 1)
    left = np.where(k > 0, edges[np.maximum(k - 1, 0)], np.float32(0))
    right = edges[k]
    t = np.clip((a - left) / (right - left), 0.0, 1.0)
    to_gap = np.minimum(a - left, np.abs(right - a))  # frame px to the nearest gap
    return (2 * t - 1) ** 2, np.clip(1.0 - to_gap / np.float32(0.4), 0.0, 1.0)


def _mouth_colour(lm: np.ndarray, xs: np.ndarray, ys: np.ndarray, depth: np.ndarray, gap: float) -> np.ndarray:
    """Colour of the mouth interior, float32 [len(ys), len(xs), 3], at frame positions (xs [W], ys [H]).

    Computed in the mouth's axes (u along 60 -> 64, v across, down from the upper inner lip's middle, 62):
    the cavity from `depth` [H, W] (distance to the lips, frame px: the farther, the darker); a tongue
    resting on the lower lip, lit at its front and darker towards the back, the sides and along its
    middle; upper teeth under the upper lip and, when the mouth is wide open, lower teeth above the lower
    lip: per tooth (`_teeth_row`) rounded, with dark gaps and little notches between the tips, shadowed
    under the lip and brighter at the biting edge, darker towards the mouth corners (farther back).
    Each layer is shaded only at the samples it covers (vectorised over those).
    """
    f32 = np.float32
    mw = max(float(np.linalg.norm(lm[64] - lm[60])), 1.0)
    half = 0.5 * mw
    e = (lm[64] - lm[60]) / mw
    o = lm[62]
    gx, gy = xs[None, :] - f32(o[0]), ys[:, None] - f32(o[1])
    u = gx * f32(e[0]) + gy * f32(e[1])  # [H, W]
    v = gy * f32(e[0]) - gx * f32(e[1])

    def uv(p):
        d = p - o
        return float(d[0] * e[0] + d[1] * e[1]), float(d[1] * e[0] - d[0] * e[1])

    a = np.abs(u)
    side = np.minimum(a / f32(half), 1.0) ** 2  # 0 at the middle, 1 at the corners
    deep = np.minimum(depth / f32(max(0.45 * gap, 0.8)), 1.0) ** f32(0.8)
    deep = 1.0 - (1.0 - deep) * (1.0 - 0.5 * side)
    # One plane per colour channel: 2-D array arithmetic is several times faster than [H, W, 3] broadcasts.
    planes = [f32(lit) + f32(dp - lit) * deep for lit, dp in zip(_CAVITY_LIT, _CAVITY_DEEP)]
    if gap <= 1.0:
        return cv2.merge(planes)
    # Tongue: a low ellipse resting on the lower lip; soft at its back edge.
    tu, tv = uv(lm[66])
    tv -= 0.2 * gap
    du, dv = (u - f32(tu)) / f32(0.3 * mw), (v - f32(tv)) / f32(max(0.28 * gap, 0.5))
    on = du**2 + dv**2 < 1.0
    du, dv = du[on], dv[on]
    t_alpha = np.minimum((1.0 - du**2 - dv**2) / f32(0.15), 1.0)
    front = np.clip((dv + 1.0) / f32(1.6), 0.0, 1.0)  # 0 at its back (top) edge, 1 at its front
    shade = (0.55 + 0.45 * front) * (1.0 - 0.3 * du**2)
    shade *= 1.0 - 0.15 * np.exp(-((du / f32(0.08)) ** 2)) * (1.0 - front)  # the groove along its middle
    shade += 0.12 * np.exp(-((du / f32(0.4)) ** 2) - ((dv - f32(0.1)) / f32(0.4)) ** 2)  # a soft sheen at its front
    for plane, tongue in zip(planes, _TONGUE):
        c = plane[on]
        plane[on] = c + (tongue * shade - c) * t_alpha
    if gap > 0.35 * mw:  # lower teeth show when wide open: the incisors' tips above the lower lip
        # Their biting edge is a shallow arch over the lowest inner-lip point; below it the lower lip
        # hides them (the inner-lip polygon clips), so only the middle ones show over its V.
        hl = f32(0.16 * gap + 1.0)
        v66 = uv(lm[66])[1]
        bottom = max(uv(lm[k])[1] for k in (65, 66, 67))  # the lower lip hides everything below
        on = (a <= 0.6 * half) & (v >= v66 - hl) & (v <= bottom)
        aa, vv = a[on], v[on]
        c2, line = _teeth_row(aa, mw, _LOWER_TEETH)
        edge = f32(v66) - hl * (1.0 - 0.25 * (aa / f32(0.6 * half)) ** 2 - 0.15 * c2 * c2 * c2)
        r = vv - edge  # down from the biting edge; the tips' corners are rounded off
        lit = 1.0 - np.clip(r / hl, 0.0, 1.0)
        shade = (0.55 + 0.35 * lit) * (1.0 - 0.55 * side[on]) * (1 - 0.12 * c2 * c2) * (1 - 0.45 * line)
        teeth = r >= 0
        idx, shade = np.flatnonzero(on)[teeth], shade[teeth]
        for plane, tooth in zip(planes, _TEETH):
            plane.reshape(-1)[idx] = tooth * shade
    # Upper teeth: under the upper inner lip, not reaching the corners.
    th = f32(min(0.42 * gap, 0.14 * mw) + 1.0)
    pts = np.array([uv(lm[60] * 0.75 + lm[61] * 0.25), uv(lm[61]), (0.0, 0.0), uv(lm[63]),
                    uv(lm[64] * 0.75 + lm[63] * 0.25)])
    pts = pts[np.argsort(pts[:, 0])]
    on = (u >= pts[0, 0]) & (u <= pts[-1, 0]) & (v >= pts[:, 1].min() - 1.0) & (v <= pts[:, 1].max() + th)
    aa, vv = a[on], v[on]
    r = vv - np.interp(u[on], pts[:, 0], pts[:, 1]).astype(f32) + 1.0  # from 1 px above the lip: no cavity line shows
    c2, line = _teeth_row(aa, mw, _UPPER_TEETH)
    th_t = th * (1.0 - 0.15 * c2 * c2 * c2)  # the tips' corners are rounded off
    lit = np.clip(r / (0.85 * th_t), 0.0, 1.0)
    shade = (0.62 + 0.38 * lit * (2 - lit)) * (1.0 - 0.55 * side[on]) * (1 - 0.14 * c2 * c2) * (1 - 0.45 * line)
    teeth = (r >= 0) & (r <= th_t)
    idx, shade = np.flatnonzero(on)[teeth], shade[teeth]
    for plane, tooth in zip(planes, _TEETH):
        plane.reshape(-1)[idx] = tooth * shade
    return cv2.merge(planes)


def _lid_curve(p: np.ndarray, n: int = 12) -> np.ndarray:
    """A smooth curve [3 * n + 1, 2] through 4 points [4, 2] (corner, two lid points, corner):
    Catmull-Rom, so a lid edge is an arc, not a polyline with kinks at the landmarks."""
    q = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])
    s = np.linspace(0.0, 1.0, n, endpoint=False)[:, None]
    out = []
    for k in range(1, 4):
        a, b, c, d = q[k - 1], q[k], q[k + 1], q[k + 2]
        out.append(0.5 * (2 * b + (c - a) * s + (2 * a - 5 * b + 4 * c - d) * s**2 + (3 * b - a - 3 * c + d) * s**3))
    return np.concatenate(out + [p[-1:]])


def _draw_lid(frame: np.ndarray, open_eye: np.ndarray, closed_eye: np.ndarray, closure: float) -> None:
    """Draws one eye's upper lid lowered to `closed_eye` over the open eye of `frame` (in place).

    The frame was warped with the eye open (`open_eye` [6, 2], frame px, dlib's eye order); the lid
    covers the lens between the open upper lid and the lowered one (`closed_eye` [6, 2]), a little
    above the open edge too, since the lashes move down with the lid. Its colour is the skin just
    above the eye (a band between the lid and the brow, spread down smoothly, so the light's
    gradient carries over), shaded a little darker towards the edge; a dark lash line follows the lowered edge.
    Supersampled 4x in a small crop like the mouth interior (`Renderer._draw_mouth`), so a partly
    closed lid moves smoothly by sub-pixel steps.
    """
    h, w = frame.shape[:2]
    axis = open_eye[3] - open_eye[0]
    width = float(np.linalg.norm(axis))
    if width < 2.0 or closure <= 0:
        return
    up = np.array([axis[1], -axis[0]]) / width  # perpendicular to the corner-to-corner axis
    gap = 0.5 * (np.linalg.norm(open_eye[1] - open_eye[5]) + np.linalg.norm(open_eye[2] - open_eye[4]))
    if float(np.dot(open_eye[1] - open_eye[5], up)) < 0:
        up = -up
    top = _lid_curve(open_eye[:4])
    # The lashes of the open eye sit just above its edge: cover them (they are redrawn at the new edge).
    lift = np.linspace(0.0, 1.0, len(top)) * (1 - np.linspace(0.0, 1.0, len(top))) * 4  # 0 at the corners
    top_cover = top + (min(0.5 * gap, 2.5) * closure) * lift[:, None] * up
    edge = _lid_curve(np.stack([closed_eye[0], closed_eye[1], closed_eye[2], closed_eye[3]]))
    lens = np.concatenate([top_cover, edge[::-1]])
    band = np.concatenate([top + (0.6 * gap + 1.5) * up, (top + (1.2 * gap + 2.5) * up)[::-1]])
    pts = np.concatenate([lens, band])
    x0 = int(max(math.floor(pts[:, 0].min()) - 3, 0))
    y0 = int(max(math.floor(pts[:, 1].min()) - 3, 0))
    x1 = int(min(math.ceil(pts[:, 0].max()) + 4, w))
    y1 = int(min(math.ceil(pts[:, 1].max()) + 4, h))
    if x1 <= x0 or y1 <= y0:
        return
    crop = frame[y0:y1, x0:x1].astype(np.float32)
    ss = 4

    def to_crop(p: np.ndarray, k: int = ss) -> np.ndarray:
        return np.round(((p - [x0, y0]) * k + (k - 1) / 2.0) * 16).astype(np.int32)

    bmask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(bmask, [to_crop(band, 1)], 255, cv2.LINE_8, 4)
    bm = (bmask > 0).astype(np.float32)
    if bm.sum() < 3:  # a tiny eye: the crop's top row instead
        bm[:1] = 1.0
    # The skin colour above the eye, spread smoothly down over the lens (a normalised blur of the
    # band's pixels only): keeps the light's gradient across the lid, leaves out the eye's own colours.
    sig = max(0.8 * gap, 1.5)
    num = cv2.GaussianBlur(crop * bm[..., None], (0, 0), sig)
    den = cv2.GaussianBlur(bm, (0, 0), sig)[..., None]
    skin_field = num / np.maximum(den, 1e-3)
    skin = (crop[bm > 0]).mean(0)
    mask = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.uint8)
    cv2.fillPoly(mask, [to_crop(lens)], 255, cv2.LINE_8, 4)
    alpha = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    # Soften the upper rim: the lid meets the real skin without a seam.
    alpha = np.maximum(alpha, cv2.GaussianBlur(alpha, (0, 0), 0.8))
    # Shading: the lid darkens a little towards its edge (it curves away from the light there).
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    centre_top = top[len(top) // 2]
    depth = ((xx - centre_top[0]) * -up[0] + (yy - centre_top[1]) * -up[1]) / max(gap, 1.0)
    shade = 1.0 - 0.1 * np.clip(depth, 0.0, 1.0)
    colour = skin_field * shade[..., None]
    out = crop * (1 - alpha[..., None]) + colour * alpha[..., None]
    # Lashes along the lowered edge, darker the more the eye is closed (they bunch up).
    line = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.polylines(line, [np.round((edge - [x0, y0]) * 16).astype(np.int32)], False, 255, 1, cv2.LINE_AA, 4)
    a = (0.45 + 0.35 * closure) * line.astype(np.float32)[..., None] / 255.0
    out = out * (1 - a) + (skin * 0.3)[None, None, :] * a
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
    blink_rng: np.random.Generator | None = None,
    blink_rate: float | None = None,
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
      blink_rng: randomness of the blink timings (default: seeded from the speaker and the
        utterance's text). A stream apart from `rng`, so the head motion is the same with blinks.
      blink_rate: blinks per minute (default: the speaker's habitual rate,
        `thflax.synthetic.blinks.blink_rate`); 0 renders no blinks.
    Returns:
      A Clip.
    """
    if rng is None:
        rng = np.random.default_rng([speaker.seed, 0xC11])
    if blink_rng is None:
        blink_rng = np.random.default_rng([speaker.seed, 0xB11, zlib.crc32(utterance.text.encode())])
    sr = utterance.sample_rate
    t = frames_covering_audio(len(utterance.audio), sr, fps)
    n_audio = int(round(t * sr / fps))
    audio = np.zeros(n_audio, np.float32)
    audio[: min(n_audio, len(utterance.audio))] = utterance.audio[:n_audio]
    art = mouth_trajectory(utterance.phonemes, t, fps)
    poses = head_poses(speaker, audio, t, rng, fps, sr, head_motion_scale=head_motion_scale)
    closure = blinks.eye_closure(speaker, utterance.phonemes, t, blink_rng, fps, blink_rate)
    renderer = get_renderer(speaker, tuple(size))
    w, h = renderer.size
    frames = np.empty((t, h, w, 3), np.uint8)
    lms = np.empty((t, 68, 2), np.float32)
    for i in range(t):
        shape = deform_mouth(renderer.neutral, float(art[i, 0]), float(art[i, 1]), speaker.open_gain)
        frames[i], lms[i] = renderer.render_frame(shape, poses[i], float(closure[i]))
        if on_frame is not None:
            on_frame(frames[i])
    opening = np.linalg.norm(lms[:, 62] - lms[:, 66], axis=-1).astype(np.float32)
    return Clip(frames=frames, landmarks=lms, poses=poses, mouth_opening=opening,
                articulation=art, audio=audio, fps=float(fps), sample_rate=sr, eye_closure=closure)
