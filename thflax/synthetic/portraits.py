"""Source portraits for the synthetic corpus: real photos, prepared for the renderer.

Built-in set (`builtin_portraits`): ``skimage.data.astronaut()`` (always there) plus the four
one-face photos in the source distribution of ``face_recognition==1.3.0`` (``tests/test_images/``:
obama.jpg, obama2.jpg, obama3.jpg, biden.jpg), fetched on first use with
``python -m pip download --no-deps --no-binary :all: face_recognition==1.3.0`` and cached in
``$THFLAX_CACHE_DIR/portraits`` (default ``~/.cache/thflax/portraits``). Without network or registry
the set is the astronaut alone, with one warning. A user folder (`folder_portraits`) works the same
way: any images with one clear face.

Every photo has an identity: obama, obama2 and obama3 are one person ("obama"). In a user folder an
image in a subfolder belongs to the identity named by the subfolder (``alice/1.jpg`` -> "alice"),
an image directly in the folder to its file name without trailing digits and separators
(``bob_2.png`` -> "bob").

Preparation (`prepare`, everything derived from the photo's own dlib landmarks):
  1. the photo is aligned (similarity on brows, eyes and nose) into a canonical ``CANVAS`` x
     ``CANVAS`` frame in which the face is ``FACE_WIDTH`` px wide (large photos are area-downsampled
     first, so the result stays sharp);
  2. an open mouth is closed by a piecewise-affine warp that moves the upper and lower inner lip onto
     their mean line (outer lips and jaw follow), so the inside of the mouth collapses and the
     renderer can draw its own; the closed seam is lightly inpainted to remove teeth slivers;
  3. a person matte: a geometric prior from the landmarks (face outline, a head/hair ellipse above
     the brows, neck below the jaw, shoulders below that), refined by GrabCut seeded with that prior
     (over the whole photo, and again in a box around the head, so hair is told from the background
     near it, not from everything dark in the photo) and falling back to the (feathered) prior when
     the refinement is implausible.

`compose` builds the source of one synthetic speaker: a single photo, or a landmark-aligned morph
of two photos of different people (both warped to the blend of their landmarks; the face region
cross-dissolved, hair and body from the dominant photo), optionally mirrored.

Never uses matplotlib's sample photo (reserved for independent checks).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import Delaunay

from thflax.errors import InputError, NoFaceError
from thflax.io import files
from thflax.face.points import LOWER_INNER, UPPER_INNER
from thflax.synthetic.base_face import base_landmarks

_log = logging.getLogger(__name__)

ASTRONAUT = "astronaut"
BUILTIN = "builtin"  # the name of the built-in set (astronaut + face_recognition's photos)
#: Photos taken from face_recognition's source archive: file stem -> identity.
FACE_RECOGNITION_PHOTOS = {"obama": "obama", "obama2": "obama", "obama3": "obama", "biden": "biden"}
FACE_RECOGNITION_SPEC = "face_recognition==1.3.0"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

CANVAS = 640  # side of the canonical source photo (px)
FACE_WIDTH = 160.0  # jaw width |p16 - p0| of an aligned face (px)
FACE_CENTRE = (320.0, 288.0)  # mean of the aligned landmarks (px)

# dlib 68-point index of the mirror image of each point.
MIRROR = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65])  # inner lips


@dataclasses.dataclass(frozen=True)
class Portrait:
    """One source photo: `key` is unique in its set, `identity` names the person."""

    key: str
    identity: str
    path: str  # "" for the astronaut (skimage.data)


@dataclasses.dataclass(eq=False)
class Source:
    """A prepared source photo in the canonical frame.

    Attributes:
      photo: uint8 RGB [CANVAS, CANVAS, 3], mouth closed.
      landmarks: float64 [68, 2] of ``photo``; the inner-lip pairs (61, 67), (62, 66), (63, 65)
        coincide (closed mouth).
      alpha: float32 [CANVAS, CANVAS] person matte in [0, 1].
      identities: the people it is made of.
      mouth_gap: the inner-lip gap the original photo had (px of the canonical frame).
    """

    photo: np.ndarray
    landmarks: np.ndarray
    alpha: np.ndarray
    identities: tuple[str, ...]
    mouth_gap: float = 0.0


# ----------------------------------------------------------------------------
# Finding portraits.


def cache_dir() -> Path:
    """Where fetched portraits are kept: ``$THFLAX_CACHE_DIR/portraits`` or ``~/.cache/thflax/portraits``."""
    return Path(files.cache_dir("portraits"))


_warned_fetch = False


def _cached_photos(folder: Path) -> dict[str, Path] | None:
    paths = {k: folder / f"{k}.jpg" for k in FACE_RECOGNITION_PHOTOS}
    return paths if all(p.is_file() and p.stat().st_size > 0 for p in paths.values()) else None


def fetch_face_recognition_photos(folder: str | os.PathLike | None = None, timeout_s: float = 600.0,
                                  warn: bool = True) -> dict[str, Path]:
    """The four one-face photos of face_recognition's source archive, {stem: path}.

    Cached in `folder` (default `cache_dir()`). On first use the source archive is fetched with
    ``sys.executable -m pip download --no-deps --no-binary :all: face_recognition==1.3.0`` and only
    those jpgs are extracted. Returns {} (with one warning per process) when that is impossible.
    """
    global _warned_fetch
    folder = Path(folder) if folder is not None else cache_dir()
    found = _cached_photos(folder)
    if found:
        return found
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="thflax_portraits_") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--disable-pip-version-check", "-q", FACE_RECOGNITION_SPEC, "-d", tmp]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            archives = sorted(Path(tmp).glob("face_recognition-*.tar.gz"))
            if res.returncode != 0 or not archives:
                tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no archive"]
                raise RuntimeError(f"pip download failed: {tail[0]}")
            wanted = {f"{k}.jpg" for k in FACE_RECOGNITION_PHOTOS}
            got = set()
            with tarfile.open(archives[0], "r:gz") as tar:
                for member in tar.getmembers():
                    parts = member.name.split("/")
                    if (member.isfile() and len(parts) >= 3 and parts[-2] == "test_images"
                            and parts[-3] == "tests" and parts[-1] in wanted):
                        data = tar.extractfile(member).read()
                        dst = folder / parts[-1]
                        part = dst.with_suffix(".jpg.part")
                        part.write_bytes(data)
                        os.replace(part, dst)
                        got.add(parts[-1])
            if got != wanted:
                raise RuntimeError(f"the archive lacks {sorted(wanted - got)}")
    except Exception as e:  # noqa: BLE001 - no network, no registry, no pip, a changed archive ...
        if warn and not _warned_fetch:
            _warned_fetch = True
            warnings.warn(f"could not fetch the portraits of {FACE_RECOGNITION_SPEC} into {folder} "
                          f"({type(e).__name__}: {e}); using the astronaut photo only", stacklevel=2)
        return {}
    return _cached_photos(folder) or {}


def builtin_portraits(fetch: bool = True) -> list[Portrait]:
    """The astronaut, plus face_recognition's obama, obama2, obama3 and biden when available."""
    out = [Portrait(ASTRONAUT, ASTRONAUT, "")]
    photos = fetch_face_recognition_photos() if fetch else (_cached_photos(cache_dir()) or {})
    for key in sorted(photos):
        out.append(Portrait(key, FACE_RECOGNITION_PHOTOS[key], str(photos[key])))
    return out


def identity_from_name(stem: str) -> str:
    """"obama2" -> "obama", "jane_doe-3" -> "jane_doe" (trailing digits and separators dropped)."""
    base = re.sub(r"[\s_\-.]*\d+$", "", stem).strip(" _-.")
    return (base or stem).lower()


def folder_portraits(folder: str | os.PathLike) -> list[Portrait]:
    """Portraits in a user folder (see the module docstring for identities); sorted by key."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"portrait folder {root} does not exist")
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTS or path.name.startswith("."):
            continue
        rel = path.relative_to(root)
        key = rel.with_suffix("").as_posix()
        ident = rel.parts[0].lower() if len(rel.parts) > 1 else identity_from_name(path.stem)
        out.append(Portrait(key, ident, str(path)))
    if not out:
        raise InputError(f"no images ({' '.join(IMAGE_EXTS)}) in portrait folder {root}")
    return out


def find_portraits(portraits: str | os.PathLike | None = BUILTIN) -> list[Portrait]:
    """`builtin_portraits()` for None or "builtin", else `folder_portraits(portraits)`."""
    if portraits is None or str(portraits) == BUILTIN:
        return builtin_portraits()
    return folder_portraits(portraits)


@functools.lru_cache(maxsize=8)
def _portrait_index(portraits: str) -> dict[str, Portrait]:
    return {p.key: p for p in find_portraits(portraits)}


def portrait(key: str, portraits: str = BUILTIN) -> Portrait:
    """The portrait `key` of a set ("builtin" or a folder)."""
    index = _portrait_index(str(portraits or BUILTIN))
    if key not in index:
        raise InputError(f"no portrait {key!r} in {portraits} (have: {', '.join(sorted(index))})")
    return index[key]


def load_image(p: Portrait) -> np.ndarray:
    """The portrait's pixels, uint8 RGB [H, W, 3]."""
    if p.key == ASTRONAUT and not p.path:
        import skimage.data

        return np.ascontiguousarray(skimage.data.astronaut())
    img = cv2.imread(p.path, cv2.IMREAD_COLOR)
    if img is None:
        from thflax.errors import ImageError

        raise ImageError(f"cannot read portrait {p.path}")
    return np.ascontiguousarray(img[:, :, ::-1])


# ----------------------------------------------------------------------------
# Landmarks and alignment.


def find_face(image: np.ndarray, name: str = "portrait", max_side: int = 1024) -> tuple[np.ndarray, int]:
    """dlib's 68 landmarks of the best face in a photo, and the number of faces found.

    The detector runs on a copy at most `max_side` px large (fast on big photos); the landmark
    predictor runs on the full-resolution photo.

    Raises:
      NoFaceError: no face with a detection score >= `thflax.face.landmarks.MIN_FACE_SCORE`.
    """
    from thflax.face.landmarks import MIN_FACE_SCORE, FaceLandmarker

    fl = FaceLandmarker()
    h, w = image.shape[:2]
    f = min(1.0, max_side / max(h, w))
    small = image if f == 1.0 else cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    found = fl.detect(small, None, MIN_FACE_SCORE)
    if not found:
        raise NoFaceError(f"no face found in {name}")
    box = tuple(v / f for v in found[0][0])
    return fl.predict(image, box).astype(np.float64), len(found)


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity src [K, 2] -> dst [K, 2] as a 2x3 matrix (no reflection), float64.

    Umeyama's SVD fit in numpy. The same transform as `thflax.face.geometry.similarity_fit` (complex
    closed form, float32 JAX) up to rounding; kept apart because portraits (and so the synthetic
    corpus) need no JAX, and a float32 fit would change the aligned photos and the byte-identical corpus.
    """
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[1, 1] = -1
    r = u @ s @ vt
    scale = np.trace(np.diag(d) @ s) / a.var(0).sum()
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = md - scale * r @ ms
    return m


@functools.lru_cache(maxsize=1)
def template() -> np.ndarray:
    """The canonical landmark layout: the astronaut's landmarks scaled to `FACE_WIDTH` and centred
    on `FACE_CENTRE`, float64 [68, 2] (read-only)."""
    lm = base_landmarks().astype(np.float64)
    t = (lm - lm.mean(0)) * (FACE_WIDTH / (lm[16, 0] - lm[0, 0])) + np.array(FACE_CENTRE)
    t.setflags(write=False)
    return t


_ALIGN_POINTS = np.arange(17, 48)  # brows, nose, eyes: independent of the mouth and jaw opening


def align(image: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Aligns a photo into the canonical frame; returns (photo [CANVAS, CANVAS, 3], landmarks)."""
    m0 = _umeyama(lm[_ALIGN_POINTS], template()[_ALIGN_POINTS])
    m = m0
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    img = image
    if scale < 0.9:  # area-downsample first (sharp, no aliasing), then a near-unit-scale warp
        h, w = image.shape[:2]
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        sx, sy = nw / w, nh / h
        # Pixel centres: x_small = (x + 0.5) * sx - 0.5.
        pre = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        m = (np.vstack([m, [0, 0, 1]]) @ np.linalg.inv(pre))[:2]
    out = cv2.warpAffine(img, m, (CANVAS, CANVAS), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return out, lm @ m0[:, :2].T + m0[:, 2]


# ----------------------------------------------------------------------------
# Piecewise-affine warping.


def _border_points(step: float = 80.0) -> np.ndarray:
    """Fixed control points around the canvas (just outside it)."""
    n = int(np.ceil(CANVAS / step)) + 1
    t = np.linspace(-1.0, CANVAS, n)
    inner = t[1:-1]
    return np.concatenate([
        np.stack([t, np.full(n, -1.0)], -1), np.stack([t, np.full(n, float(CANVAS))], -1),
        np.stack([np.full(n - 2, -1.0), inner], -1), np.stack([np.full(n - 2, float(CANVAS)), inner], -1),
    ])


def warp_piecewise(image: np.ndarray, src: np.ndarray, dst: np.ndarray, tri: np.ndarray,
                   interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Warps `image` so that control points `src` land on `dst` (piecewise affine over `tri`).

    Output has the image's size; pixels outside every destination triangle are copied unchanged.
    Triangles that collapse in `dst` own no pixels (their edge pixels go to larger neighbours).
    """
    h, w = image.shape[:2]
    d, s = dst[tri], src[tri]
    dh = np.concatenate([d, np.ones(d.shape[:2] + (1,))], -1)
    det = np.linalg.det(dh)
    ok = np.abs(det) > 0.5
    x = np.zeros((len(d) + 1, 3, 2))
    x[:-1][ok] = np.linalg.solve(dh[ok], s[ok])
    x[:-1][~ok, 2] = s[~ok].mean(1)
    x[-1] = [[1, 0], [0, 1], [0, 0]]  # identity for pixels outside all triangles
    ids = np.full((h, w), len(d), np.int32)
    pts = np.round(d * 16).astype(np.int32)
    for k in np.argsort(np.abs(det), kind="stable"):
        if ok[k]:
            cv2.fillConvexPoly(ids, pts[k], int(k), cv2.LINE_8, 4)
    x = x.astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = x[ids, 0, 0] * xs + x[ids, 1, 0] * ys + x[ids, 2, 0]
    map_y = x[ids, 0, 1] * xs + x[ids, 1, 1] * ys + x[ids, 2, 1]
    return cv2.remap(image, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)


def _face_ring(lm: np.ndarray, rx: float, ry: float, n: int = 20) -> np.ndarray:
    """n points on an ellipse about the face centre, axes (rx, ry) face widths."""
    fw = float(lm[16, 0] - lm[0, 0])
    c = lm.mean(0)
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([c[0] + rx * fw * np.cos(ang), c[1] + ry * fw * np.sin(ang)], -1)


def inner_gap(lm: np.ndarray) -> float:
    """Mean vertical gap between the paired inner-lip points of lm [68, 2] (px).

    `thflax.measures.metrics.mouth_opening` is the same formula in float32 JAX for the train step;
    this one stays numpy float64 so that preparing portraits (and the corpus) needs no JAX.
    """
    return float(np.mean(lm[LOWER_INNER, 1] - lm[UPPER_INNER, 1]))


def teeth_mask(photo: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """uint8 mask (255) of the open mouth's interior: the inner-lip polygon, plus teeth-like pixels
    (brighter and less red than the lips) inside the outer-lip contour, which dlib's straight
    inner contour misses where a smile curves."""
    h, w = photo.shape[:2]
    fw = float(lm[16, 0] - lm[0, 0])

    def fill(pts):
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [np.round(np.asarray(pts) * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
        return m

    inner = fill(lm[60:68])
    outer = fill(lm[48:60])
    lab = cv2.cvtColor(np.ascontiguousarray(photo), cv2.COLOR_RGB2LAB).astype(np.float32)
    k = max(3, int(0.03 * fw) | 1)
    band = (outer > 0) & ~(cv2.dilate(inner, np.ones((k, k), np.uint8)) > 0)  # the lips themselves
    if band.sum() < 20:
        return inner
    lip_l, lip_a = np.median(lab[..., 0][band]), np.median(lab[..., 1][band])
    spread = max(float(np.percentile(lab[..., 0][band], 90) - lip_l), 6.0)
    teeth = (outer > 0) & (lab[..., 0] > lip_l + 1.5 * spread) & (lab[..., 1] < lip_a + 2.0)
    mask = inner | (teeth.astype(np.uint8) * 255)
    k2 = max(3, int(0.015 * fw) | 1)
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k2, k2)))


def paint_out_teeth(photo: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The photo with the open mouth's interior (`teeth_mask`) inpainted from the lips around it."""
    return cv2.inpaint(np.ascontiguousarray(photo), teeth_mask(photo, lm), 4, cv2.INPAINT_TELEA)


def close_mouth(photo: np.ndarray, lm: np.ndarray, min_gap: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Closes an open mouth: the upper and lower inner lip move onto their mean line.

    The outer lips move with the inner lip of their side (so the lips keep their thickness), the
    mouth corners stay, the jaw rises with the lower lip; control points on a ring around the face
    and on the canvas border stay fixed. The inside of the mouth (teeth, tongue) collapses onto the
    seam, which is then inpainted over a thin band to remove slivers dlib's straight contour missed.

    Returns:
      (photo, landmarks) with the inner-lip pairs coinciding exactly.
    """
    lm = np.asarray(lm, np.float64)
    out = lm.copy()
    up, lo = np.array(UPPER_INNER), np.array(LOWER_INNER)
    mean = (lm[up] + lm[lo]) / 2
    du, dl = mean - lm[up], mean - lm[lo]  # moves of the upper / lower inner lip
    out[up], out[lo] = mean, mean
    out[[50, 51, 52]] += du
    out[[49, 53]] += 0.6 * du[[0, 2]]
    out[[58, 57, 56]] += dl
    out[[59, 55]] += 0.6 * dl[[0, 2]]
    g = float(-dl[:, 1].mean())  # how far the lower lip rises
    jaw_w = np.array([0.08, 0.25, 0.5, 0.72, 0.8, 0.72, 0.5, 0.25, 0.08])  # points 4..12
    out[4:13, 1] -= 0.7 * g * jaw_w
    gap = inner_gap(lm)
    if gap <= min_gap and np.abs(out - lm).max() < 1.0:
        out[lo] = out[up]  # already closed: just make the pairs coincide
        return photo, out
    fixed = np.concatenate([_face_ring(lm, 0.85, 1.05), _border_points()])
    ctrl_src = np.concatenate([lm, fixed])
    ctrl_dst = np.concatenate([out, fixed])
    tri = Delaunay(ctrl_src).simplices
    warped = warp_piecewise(paint_out_teeth(photo, lm), ctrl_src, ctrl_dst, tri)
    # A thin band along the closed seam, a little past the inner corners.
    fw = float(lm[16, 0] - lm[0, 0])
    seam = out[[60, 61, 62, 63, 64]].copy()
    seam[0] += (out[60] - out[64]) / np.linalg.norm(out[60] - out[64]) * 0.01 * fw
    seam[-1] += (out[64] - out[60]) / np.linalg.norm(out[64] - out[60]) * 0.01 * fw
    mask = np.zeros(photo.shape[:2], np.uint8)
    thick = max(2, int(round(0.02 * fw)))
    cv2.polylines(mask, [np.round(seam * 16).astype(np.int32)], False, 255, thick, cv2.LINE_8, 4)
    warped = cv2.inpaint(np.ascontiguousarray(warped), mask, 3, cv2.INPAINT_TELEA)
    return warped, out


# ----------------------------------------------------------------------------
# Matte.


# The head box of the matte's second GrabCut pass, in face widths: half its width, its top above
# the brows, its bottom below the chin.
_HEAD_BOX = (1.3, 1.3, 0.3)


def _prior_masks(lm: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(prior, core) uint8 masks of the person from its landmarks: prior = face outline + head/hair
    ellipse above the brows + neck below the jaw + shoulders; core = surely the person."""
    fw = float(lm[16, 0] - lm[0, 0])
    cx = float(lm[[0, 16, 27, 8], 0].mean())
    brow_y = float(lm[17:27, 1].mean())
    chin = lm[8]
    prior = np.zeros(shape, np.uint8)
    core = np.zeros(shape, np.uint8)

    def poly(mask, pts, val=255):
        cv2.fillPoly(mask, [np.round(np.asarray(pts) * 16).astype(np.int32)], val, cv2.LINE_8, 4)

    def ell(mask, c, axes, val=255):
        cv2.ellipse(mask, (int(round(c[0] * 16)), int(round(c[1] * 16))),
                    (int(round(axes[0] * 16)), int(round(axes[1] * 16))), 0, 0, 360, val, -1, cv2.LINE_8, 4)

    # Face outline (jaw) closed over the brows.
    brows = lm[17:27][::-1].copy()
    brows[:, 1] -= 0.08 * fw
    outline = np.concatenate([lm[0:17], brows])
    poly(prior, outline)
    ell(prior, (cx, brow_y + 0.02 * fw), (0.6 * fw, 0.66 * fw))  # head and hair
    # Neck: from the jaw sides down past the chin.
    neck_w = 0.36 * fw
    neck_top = float(min(lm[4, 1], lm[12, 1]))
    neck_bot = float(chin[1] + 0.55 * fw)
    poly(prior, [(chin[0] - neck_w, neck_top), (chin[0] + neck_w, neck_top),
                 (chin[0] + 1.1 * neck_w, neck_bot), (chin[0] - 1.1 * neck_w, neck_bot)])
    # Shoulders: sloping out from the neck to the bottom of the canvas.
    y0 = float(chin[1] + 0.3 * fw)
    y1 = float(chin[1] + 0.85 * fw)
    h = shape[0]
    poly(prior, [(chin[0] - 0.45 * fw, y0), (chin[0] + 0.45 * fw, y0), (chin[0] + 1.7 * fw, y1),
                 (chin[0] + 2.0 * fw, h + 1), (chin[0] - 2.0 * fw, h + 1), (chin[0] - 1.7 * fw, y1)])
    # Core: the inner face, a narrow neck, the chest.
    c = lm.mean(0)
    ell(core, c, (0.36 * fw, 0.45 * fw))
    poly(core, [(chin[0] - 0.2 * fw, c[1]), (chin[0] + 0.2 * fw, c[1]),
                (chin[0] + 0.2 * fw, neck_bot), (chin[0] - 0.2 * fw, neck_bot)])
    ell(core, (chin[0], y1 + 0.3 * fw), (1.05 * fw, 0.35 * fw))
    cv2.rectangle(core, (int(chin[0] - 1.0 * fw), int(y1 + 0.3 * fw)), (int(chin[0] + 1.0 * fw), h), 255, -1)
    core &= prior
    return prior, core


def _grabcut(photo: np.ndarray, seeds: np.ndarray, box: tuple[int, int, int, int], f: float) -> np.ndarray:
    """GrabCut of ``photo`` [H, W, 3] inside ``box`` = (x0, y0, x1, y1), seeded with ``seeds`` (uint8
    [H, W] of cv2.GC_* labels), at ``f`` times the resolution; the foreground as uint8 0/1 [H, W]
    (0 outside the box). Raises cv2.error on a degenerate colour model."""
    x0, y0, x1, y1 = box
    h, w = photo.shape[:2]
    sw, sh = max(1, int(round((x1 - x0) * f))), max(1, int(round((y1 - y0) * f)))
    small = cv2.resize(np.ascontiguousarray(seeds[y0:y1, x0:x1]), (sw, sh), interpolation=cv2.INTER_NEAREST)
    img = cv2.resize(np.ascontiguousarray(photo[y0:y1, x0:x1]), (sw, sh), interpolation=cv2.INTER_AREA)
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation uses OpenCV's RNG
    cv2.grabCut(np.ascontiguousarray(img[:, :, ::-1]), small, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    fg = ((small == cv2.GC_FGD) | (small == cv2.GC_PR_FGD)).astype(np.uint8)
    out = np.zeros((h, w), np.uint8)
    out[y0:y1, x0:x1] = cv2.resize(fg, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return out


def person_matte(photo: np.ndarray, lm: np.ndarray, refine: bool = True) -> np.ndarray:
    """Soft person matte of a canonical photo from its landmarks, float32 [H, W] in [0, 1].

    The landmark prior (`_prior_masks`) seeds GrabCut: the core is certain foreground, the prior
    probable foreground, a band around it probable background, everything farther certain
    background. Two passes: one over the whole photo (body and shoulders) and one in a box around
    the head alone, whose background colours are only those near the head: over the whole photo,
    dark hair in front of a dark flag matched the background seen elsewhere (a suit, a dark border),
    and the cut ran straight through the hair. The union of both keeps its largest blob, is filled
    and clipped to the widened prior; if its area is far from the prior's (a failed segmentation),
    the prior itself is used.
    """
    h, w = photo.shape[:2]
    fw = float(lm[16, 0] - lm[0, 0])
    prior, core = _prior_masks(lm, (h, w))
    fg = (prior > 127).astype(np.uint8)
    if refine:
        near = cv2.dilate(prior, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.7 * fw) | 1,) * 2))
        mask = np.full((h, w), cv2.GC_BGD, np.uint8)
        mask[near > 127] = cv2.GC_PR_BGD
        mask[prior > 127] = cv2.GC_PR_FGD
        mask[core > 127] = cv2.GC_FGD
        cx, brow_y, chin_y = float(lm[[0, 16, 27, 8], 0].mean()), float(lm[17:27, 1].mean()), float(lm[8, 1])
        head = (int(max(cx - _HEAD_BOX[0] * fw, 0)), int(max(brow_y - _HEAD_BOX[1] * fw, 0)),
                int(min(cx + _HEAD_BOX[0] * fw, w)), int(min(chin_y + _HEAD_BOX[2] * fw, h)))
        try:
            ref = _grabcut(photo, mask, (0, 0, w, h), 0.5)
            if head[2] > head[0] and head[3] > head[1]:
                try:
                    ref |= _grabcut(photo, mask, head, 0.5)
                except cv2.error as e:  # the whole-photo pass still holds
                    _log.info("GrabCut of the head failed (%s)", e)
            ref = _main_blob_filled(ref & (near > 127).astype(np.uint8))
            ratio = ref.sum() / max(fg.sum(), 1)
            if 0.6 <= ratio <= 1.5:
                fg = ref | (core > 127).astype(np.uint8)
            else:
                _log.info("matte refinement rejected (area %.2f of the prior); using the prior", ratio)
        except cv2.error as e:  # e.g. a degenerate colour model
            _log.info("GrabCut failed (%s); using the landmark prior", e)
    fg = _main_blob_filled(fg)
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), max(1.0, 0.012 * fw))
    return alpha


def _main_blob_filled(fg: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=4)
    if n > 1:
        fg = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    inv = (1 - fg).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    h, w = fg.shape
    for k in range(1, n):
        x, y, bw, bh, _ = stats[k]
        if x > 0 and y > 0 and x + bw < w and y + bh < h:
            fg[labels == k] = 1  # a hole not touching the border
    return fg


# ----------------------------------------------------------------------------
# Sources: single photos, mirrors and morphs.


@functools.lru_cache(maxsize=16)
def prepare(p: Portrait) -> Source:
    """The canonical, closed-mouth, matted source of one portrait (cached per process)."""
    image = load_image(p)
    lm, _ = find_face(image, p.path or p.key)
    photo, lm_c = align(image, lm)
    gap = inner_gap(lm_c)
    photo, lm_c = close_mouth(photo, lm_c)
    alpha = person_matte(photo, lm_c)
    for a in (photo, lm_c, alpha):
        a.setflags(write=False)
    return Source(photo, lm_c, alpha, (p.identity,), gap)


def mirror(src: Source) -> Source:
    """The mirror image (landmark indices swapped so that point k is still dlib's point k)."""
    photo = np.ascontiguousarray(src.photo[:, ::-1])
    alpha = np.ascontiguousarray(src.alpha[:, ::-1])
    lm = src.landmarks[MIRROR].copy()
    lm[:, 0] = (src.photo.shape[1] - 1) - lm[:, 0]
    return Source(photo, lm, alpha, src.identities, src.mouth_gap)


def _face_mask(lm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """float32 mask of the face (jaw outline closed above the brows), feathered inwards."""
    fw = float(lm[16, 0] - lm[0, 0])
    brows = lm[17:27][::-1].copy()
    brows[:, 1] -= 0.12 * fw
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(np.concatenate([lm[0:17], brows]) * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
    k = int(0.1 * fw) | 1
    m = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), 0.05 * fw)


_MORPH_POINTS = np.array([i for i in range(68) if i not in LOWER_INNER])  # lower inner = upper inner


def morph(a: Source, b: Source, ratio: float) -> Source:
    """A landmark-aligned morph: both photos warped to (1 - ratio) * a + ratio * b landmarks.

    The face (inside the jaw, up to above the brows) is the cross-dissolve of the two warped photos,
    its colour matched to the dominant photo (the one with the larger weight); hair, ears, neck,
    body and matte come from the dominant photo warped to the shared shape.
    """
    if set(a.identities) & set(b.identities):
        raise ValueError(f"morphs are between different people, got {a.identities} and {b.identities}")
    r = float(ratio)
    shared = (1 - r) * a.landmarks + r * b.landmarks
    fixed = np.concatenate([_face_ring(shared, 1.1, 1.35, 16), _border_points()])
    dst = np.concatenate([shared[_MORPH_POINTS], fixed])
    tri = Delaunay(dst).simplices

    def warp(s: Source, img):
        return warp_piecewise(img, np.concatenate([s.landmarks[_MORPH_POINTS], fixed]), dst, tri)

    wa = warp(a, a.photo).astype(np.float32)
    wb = warp(b, b.photo).astype(np.float32)
    dom, dom_w = (a, wa) if r <= 0.5 else (b, wb)
    blend = (1 - r) * wa + r * wb
    face_m = _face_mask(shared, a.photo.shape[:2])
    inside = face_m > 0.5
    # Colour transfer (mean and spread per Lab channel over the face) to the dominant photo's face,
    # so the cross-dissolved face meets the dominant's neck and ears without a seam.
    lab_b = cv2.cvtColor(np.clip(blend / 255.0, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)
    lab_d = cv2.cvtColor((dom_w / 255.0).astype(np.float32), cv2.COLOR_RGB2LAB)
    mb, sb = lab_b[inside].mean(0), lab_b[inside].std(0) + 1e-3
    md, sd = lab_d[inside].mean(0), lab_d[inside].std(0) + 1e-3
    lab_b = (lab_b - mb) * np.clip(sd / sb, 0.5, 2.0) + md
    blend = cv2.cvtColor(lab_b.astype(np.float32), cv2.COLOR_LAB2RGB) * 255.0
    fm = face_m[..., None]
    photo = np.clip(fm * blend + (1 - fm) * dom_w + 0.5, 0, 255).astype(np.uint8)
    alpha = np.maximum(warp(dom, dom.alpha), face_m).astype(np.float32)
    lm = shared.copy()
    lm[list(LOWER_INNER)] = lm[list(UPPER_INNER)]
    return Source(photo, lm, alpha, a.identities + b.identities, max(a.mouth_gap, b.mouth_gap))


@functools.lru_cache(maxsize=16)
def compose(keys: tuple[str, ...], mix: float = 0.0, mirrored: bool = False,
            portraits: str = BUILTIN) -> Source:
    """The source of one speaker: `keys` = (photo,) or (photo, partner photo) of different people;
    `mix` = the partner's weight in a morph; `mirrored` flips the result. Cached per process."""
    if not 1 <= len(keys) <= 2:
        raise ValueError(f"a speaker is made of one or two photos, got {keys}")
    srcs = [prepare(portrait(k, portraits)) for k in keys]
    src = srcs[0] if len(srcs) == 1 else morph(srcs[0], srcs[1], mix)
    if mirrored:
        src = mirror(src)
    for arr in (src.photo, src.landmarks, src.alpha):
        arr.setflags(write=False)
    return src


def clear_caches() -> None:
    """Forgets prepared sources and portrait indexes (e.g. after the cache folder changed)."""
    for f in (prepare, compose, _portrait_index):
        f.cache_clear()


__all__ = [
    "ASTRONAUT", "BUILTIN", "CANVAS", "FACE_WIDTH", "Portrait", "Source", "builtin_portraits",
    "cache_dir", "compose", "fetch_face_recognition_photos", "find_face", "find_portraits",
    "folder_portraits", "identity_from_name", "load_image", "mirror", "morph", "person_matte",
    "prepare", "close_mouth", "portrait", "warp_piecewise",
]
