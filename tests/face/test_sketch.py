"""Tests for thflax.face.sketch: the differentiable landmark rasteriser."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from thflax.face import geometry
from thflax.face.sketch import (
    NUM_SKETCH_CHANNELS,
    SKETCH_CHANNEL_NAMES,
    SKETCH_GROUPS,
    default_thickness,
    draw_sketch,
)

SIZE = 64


def _parked(corner=(0.97, 0.97)):
    """All 68 points at one far corner: every segment degenerates to a point there."""
    return np.tile(np.asarray(corner, np.float32), (68, 1))


def _with_group_on_line(group_index, y=0.5, x0=0.25, x1=0.75):
    """Landmarks whose group `group_index` polylines lie on the horizontal line y, the rest parked."""
    lm = _parked()
    idx = sorted(set(geometry.FACE_PARTS[SKETCH_GROUPS[group_index][0]]))  # the group's first polyline
    lm[idx, 0] = np.linspace(x0, x1, len(idx))
    lm[idx, 1] = y
    return lm


def _reference(lm, size, sigma):
    """Brute-force numpy rasteriser (same pixel convention: pixel (i, j) centred at (x, y) = (j, i))."""
    pts = np.asarray(lm, np.float64) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.zeros((size, size, len(SKETCH_GROUPS)))
    for c, group in enumerate(SKETCH_GROUPS):
        best = np.full((size, size), np.inf)
        for part in group:
            poly = geometry.FACE_PARTS[part]
            for s, e in zip(poly[:-1], poly[1:]):
                a, b = pts[s], pts[e]
                ab = b - a
                l2 = max(ab @ ab, 1e-12)
                t = np.clip(((xx - a[0]) * ab[0] + (yy - a[1]) * ab[1]) / l2, 0, 1)
                d2 = (xx - a[0] - t * ab[0]) ** 2 + (yy - a[1] - t * ab[1]) ** 2
                best = np.minimum(best, d2)
        out[..., c] = np.exp(-best / (2 * sigma**2))
    return out


def _random_faces(n, seed=0):
    """Plausible-ish faces: a mean-like shape jittered and shifted."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.25, 0.75, (68, 2)).astype(np.float32)
    return (base[None] + rng.normal(0, 0.03, (n, 68, 2))).astype(np.float32)


def test_channel_layout():
    assert NUM_SKETCH_CHANNELS == 6 == len(SKETCH_CHANNEL_NAMES)
    parts = [p for g in SKETCH_GROUPS for p in g]
    assert sorted(parts) == sorted(geometry.FACE_PARTS), "every polyline drawn exactly once"


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_shape_dtype_range(dtype):
    lm = _random_faces(3)
    out = draw_sketch(lm, SIZE, dtype=dtype)
    assert out.shape == (3, SIZE, SIZE, NUM_SKETCH_CHANNELS)
    assert out.dtype == dtype
    o = np.asarray(out, np.float32)
    assert o.min() >= 0 and o.max() <= 1
    single = draw_sketch(lm[0], SIZE, dtype=dtype)
    assert single.shape == (SIZE, SIZE, NUM_SKETCH_CHANNELS)


def test_bad_shape_raises():
    with pytest.raises(ValueError):
        draw_sketch(np.zeros((2, 20, 2), np.float32), SIZE)


@pytest.mark.parametrize("group", range(len(SKETCH_GROUPS)))
def test_on_line_is_one_far_is_zero_and_right_channel(group):
    lm = _with_group_on_line(group, y=0.5)
    out = np.asarray(draw_sketch(lm[None], SIZE))[0]
    row = int(0.5 * SIZE)  # pixel row whose centre lies on the line
    # On the segment (well inside its x range): ≈ 1 in this group's channel only.
    on = out[row, int(0.3 * SIZE):int(0.7 * SIZE)]
    assert np.all(on[:, group] > 0.99)
    others = [c for c in range(NUM_SKETCH_CHANNELS) if c != group]
    assert np.all(on[:, others] < 1e-6)
    # Far from every line (top-left area): ≈ 0 in every channel.
    assert np.all(out[:10, :10] < 1e-6)
    # Intensity one σ away from the line is exp(-1/2).
    sigma = default_thickness(SIZE)
    assert sigma == pytest.approx(1.0)
    np.testing.assert_allclose(out[row + 1, SIZE // 2, group], math.exp(-0.5), rtol=1e-5)
    # Beyond the segment's end the intensity decays with the distance to the end point.
    end_col = int(0.75 * SIZE)  # the segment ends exactly on this pixel centre
    np.testing.assert_allclose(out[row, end_col + 2, group], math.exp(-4 / 2), rtol=1e-4)


def test_pixel_convention_matches_crop():
    """A landmark at normalised (j/size, i/size) lights pixel (row i, column j)."""
    lm = _parked()
    lm[0:17] = [10 / SIZE, 20 / SIZE]  # the whole jaw collapsed onto one point
    out = np.asarray(draw_sketch(lm, SIZE))
    assert np.unravel_index(np.argmax(out[..., 0]), out.shape[:2]) == (20, 10)
    assert out[20, 10, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("size,thickness", [(32, None), (64, None), (96, 2.5)])
def test_matches_bruteforce_reference(size, thickness):
    lm = _random_faces(2, seed=size)
    out = np.asarray(draw_sketch(lm, size, thickness=thickness))
    sigma = default_thickness(size) if thickness is None else thickness
    for b in range(2):
        np.testing.assert_allclose(out[b], _reference(lm[b], size, sigma), atol=2e-5)


def test_default_thickness_scales():
    assert default_thickness(64) == pytest.approx(1.0)
    assert default_thickness(256) == pytest.approx(2.0)


def test_jit_matches_eager_and_batch_independence():
    lm = _random_faces(4, seed=1)
    f = jax.jit(draw_sketch, static_argnums=(1,))
    eager = np.asarray(draw_sketch(lm, SIZE))
    jitted = np.asarray(f(lm, SIZE))
    np.testing.assert_allclose(jitted, eager, atol=1e-6)
    # Each frame alone gives the same image; changing another frame changes nothing.
    for b in range(4):
        np.testing.assert_allclose(np.asarray(f(lm[b:b + 1], SIZE))[0], jitted[b], atol=1e-6)
    lm2 = lm.copy()
    lm2[1:] = _random_faces(3, seed=9)
    np.testing.assert_allclose(np.asarray(f(lm2, SIZE))[0], jitted[0], atol=1e-6)


@pytest.mark.heavy
def test_gradient_matches_broadcast_formulation():
    from thflax.face import sketch

    lm = jnp.asarray(_random_faces(2, seed=5))
    w = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, NUM_SKETCH_CHANNELS)), jnp.float32)
    g_fast = jax.grad(lambda x: jnp.sum(draw_sketch(x, 32) * w))(lm)
    # The plain autodiff of the broadcast formula is the reference. Compiled without XLA's optimisation
    # passes (tests/conftest.py turns them off) it yields NaNs, while the custom gradient under test
    # stays finite: compile the reference with them.
    from tests.helpers import optimized

    with optimized():
        g_ref = jax.jit(jax.grad(
            lambda x: jnp.sum(jnp.exp(-sketch._group_min_d2_broadcast(x, 32) / 2 / default_thickness(32) ** 2) * w)
        ))(lm)
    assert np.all(np.isfinite(np.asarray(g_fast)))
    np.testing.assert_allclose(np.asarray(g_fast), np.asarray(g_ref), rtol=1e-4, atol=1e-4)


@pytest.mark.heavy
def test_gradient_finite_and_moves_lines():
    lm = jnp.asarray(_random_faces(2, seed=3))
    target = draw_sketch(lm + 0.01, SIZE)

    def loss(x):
        return jnp.mean((draw_sketch(x, SIZE) - target) ** 2)

    g = jax.jit(jax.grad(loss))(lm)
    assert np.all(np.isfinite(np.asarray(g)))
    assert float(jnp.abs(g).sum()) > 0
    # A small step along the negative gradient lowers the loss (the rasteriser is usefully differentiable).
    assert float(loss(lm - 1e-3 * g / jnp.abs(g).max())) < float(loss(lm))


def test_degenerate_segments_are_finite():
    out = draw_sketch(_parked()[None], SIZE)
    assert np.all(np.isfinite(np.asarray(out)))
    g = jax.grad(lambda x: draw_sketch(x, 32).sum())(jnp.asarray(_parked()[None]))
    assert np.all(np.isfinite(np.asarray(g)))
