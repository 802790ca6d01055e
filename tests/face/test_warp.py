"""Tests for thflax.face.warp: the landmark-driven thin-plate-spline flow, the bilinear warp and the photo path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from thflax.testing import face_landmarks

from thflax.face import warp as W


_face = face_landmarks


def _moved(lm: np.ndarray, angle_deg=5.0, zoom=1.03, shift=(0.02, -0.01)) -> np.ndarray:
    th = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    c = lm.mean(0)
    return ((lm - c) @ rot.T * zoom + c + np.asarray(shift)).astype(np.float32)


def _sample(field, points):
    """Bilinear samples of field [B, H, W, K] at normalised points [B, N, 2] -> [B, N, K] (via warp)."""
    return W.warp(field, jnp.asarray(points)[:, :, None, :])[:, :, 0]


def _image(batch, size, channels=3, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (batch,) + size + (channels,)), jnp.float32)


def test_anchors_on_the_border():
    a = W.anchors(4)
    assert a.shape == (16, 2) and a.dtype == np.float32
    on_border = (np.isclose(a, 0) | np.isclose(a, 1)).any(-1)
    assert on_border.all()
    assert len({tuple(p) for p in a.tolist()}) == 16  # no duplicates
    for corner in ((0, 0), (1, 0), (1, 1), (0, 1)):
        assert any(np.allclose(p, corner) for p in a)
    assert W.anchors(1).shape == (4, 2)
    with pytest.raises(ValueError):
        W.anchors(0)


# Shapes shared across tests where possible: every new (batch, size, grid) compiles the spline again.
@pytest.mark.parametrize("size,grid", [(64, 4), ((37, 50), 4), (64, 1)])
def test_identity(size, grid):
    lm = np.stack([_face(), _moved(_face())])
    flow = W.tps_flow(lm, lm, size, grid=grid)
    h, w = (size, size) if isinstance(size, int) else size
    assert flow.shape == (2, h, w, 2) and flow.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(flow), np.asarray(W.identity_flow(size, 2)), atol=1e-4)
    image = _image(2, (h, w))
    np.testing.assert_allclose(np.asarray(W.warp(image, flow)), np.asarray(image), atol=1e-4)


def test_identity_flow_is_the_pixel_grid():
    flow = np.asarray(W.identity_flow((3, 4)))
    assert flow.shape == (3, 4, 2)
    np.testing.assert_allclose(flow[1, 2], [2 / 4, 1 / 3])  # (x, y) of row 1, column 2
    assert W.identity_flow(8, batch=5).shape == (5, 8, 8, 2)


@pytest.mark.parametrize("grid,max_px", [(1, 0.5), (4, 1.0)])
def test_flow_maps_target_landmarks_to_source(grid, max_px):
    """Interpolation: sampling the flow at the dst landmarks gives the src landmarks."""
    size = 128
    src = np.stack([_face(0.0), _face(0.2)])
    dst = np.stack([_moved(_face(0.5)), _moved(_face(0.0), -4.0, 0.97, (-0.02, 0.01))])
    flow = W.tps_flow(src, dst, size, grid=grid)
    err = np.linalg.norm(np.asarray(_sample(flow, dst)) - src, axis=-1) * size  # pixels
    assert err.max() < max_px, err.max()
    assert np.median(err) < 0.1, np.median(err)


def test_numpy_twin_agrees():
    src, dst = _face(0.0), _moved(_face(0.6))
    flow_j = np.asarray(W.tps_flow(src[None], dst[None], 64))[0]
    flow_n = W.tps_flow_numpy(src, dst, 64)
    assert flow_n.shape == (64, 64, 2) and flow_n.dtype == np.float32
    np.testing.assert_allclose(flow_j, flow_n, atol=0.01 / 64)  # a hundredth of a pixel


def test_border_anchors_stay_fixed():
    size = 64
    src, dst = _face(0.0), _moved(_face(0.8), 6.0, 1.05, (0.03, 0.02))
    flow = np.asarray(W.tps_flow(np.stack([src, src]), np.stack([dst, src]), size, grid=1))[0]
    disp = np.linalg.norm(flow - np.asarray(W.identity_flow(size)), axis=-1) * size  # pixels
    # Anchors that are pixel centres (x or y = 0, at multiples of size / 4) do not move.
    for t in range(0, size, size // 4):
        assert disp[0, t] < 0.05 and disp[t, 0] < 0.05, (t, disp[0, t], disp[t, 0])
    border = np.concatenate([disp[0], disp[-1], disp[:, 0], disp[:, -1]])
    assert border.max() < 0.25 * disp.max(), (border.max(), disp.max())


def test_translation_of_the_face():
    """Landmarks moved rigidly (anchors not): the face moves by t, smoothly fading to 0 at the border."""
    size = 64
    t = np.array([0.06, -0.04], np.float32)
    src = _face()
    dst = src + t
    flow = np.asarray(W.tps_flow(np.stack([src, src]), np.stack([dst, src]), size, grid=1))[0]
    disp = flow - np.asarray(W.identity_flow(size))  # backward map: -t on the face
    at_lm = np.asarray(_sample(jnp.asarray(flow)[None], dst[None]))[0] - dst
    np.testing.assert_allclose(at_lm, np.broadcast_to(-t, at_lm.shape), atol=0.3 / size)
    # No overshoot beyond the translation, and everything moves the same way.
    assert np.linalg.norm(disp, axis=-1).max() <= 1.15 * np.linalg.norm(t)
    assert (disp @ -t >= -1e-3 * float(t @ t)).all()
    # No folds: the map's Jacobian determinant is positive everywhere.
    fx, fy = flow[..., 0] * size, flow[..., 1] * size
    det = np.gradient(fx, axis=1) * np.gradient(fy, axis=0) - np.gradient(fx, axis=0) * np.gradient(fy, axis=1)
    assert det.min() > 0.2, det.min()
    # A blob at the face centre moves by t.
    yy, xx = np.mgrid[0:size, 0:size] / size
    c = src.mean(0)
    blob = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * 0.03**2)).astype(np.float32)
    out = np.asarray(W.warp(jnp.asarray(blob)[None, ..., None], jnp.asarray(flow)[None]))[0, ..., 0]
    centroid = np.array([(out * xx).sum(), (out * yy).sum()]) / out.sum()
    np.testing.assert_allclose(centroid, c + t, atol=0.5 / size)


@pytest.mark.heavy
def test_warp_is_differentiable():
    size = 64
    image = _image(2, (size, size))
    flow = W.tps_flow(np.stack([_face(), _face()]), np.stack([_moved(_face(0.5)), _face(0.3)]), size)
    target = _image(2, (size, size), seed=1)

    def loss(img, fl):
        return jnp.mean((W.warp(img, fl) - target) ** 2)

    g_img, g_flow = jax.jit(jax.grad(loss, argnums=(0, 1)))(image, flow)  # jitted: compiles faster than eager
    for g in (g_img, g_flow):
        g = np.asarray(g)
        assert np.isfinite(g).all() and np.abs(g).max() > 0
    # The flow gradient matches a central finite difference where the sample point is away from the
    # bilinear kinks at whole pixels (float32: loose tolerance).
    frac = np.asarray(flow) * size % 1.0
    ok = np.argwhere((np.abs(frac - 0.5) < 0.3).all(-1))
    eps = 1e-3
    for i, j, k in ok[:: max(len(ok) // 3, 1)][:3]:
        for c in range(2):
            delta = jnp.zeros_like(flow).at[i, j, k, c].set(eps)
            fd = (loss(image, flow + delta) - loss(image, flow - delta)) / (2 * eps)
            np.testing.assert_allclose(float(g_flow[i, j, k, c]), float(fd), rtol=0.05, atol=1e-4)

    # And through the spline, to the target landmarks.
    def lm_loss(dst):
        return jnp.mean((W.warp(image[:1], W.tps_flow(_face()[None], dst, size)) - target[:1]) ** 2)

    g_lm = np.asarray(jax.jit(jax.grad(lm_loss))(jnp.asarray(_moved(_face()))[None]))
    assert np.isfinite(g_lm).all() and np.abs(g_lm).max() > 0


def test_batched_equals_per_example():
    size = 64
    src = np.stack([_face(0.4), _moved(_face(0.1))])
    dst = np.stack([_moved(_face(0.7)), _face(0.9)])
    flows = W.tps_flow(src, dst, size)
    image = _image(2, (size, size), channels=5)
    out = W.warp(image, flows)
    for b in range(2):
        flow_b = W.tps_flow(src[b], dst[b], size)  # unbatched input -> unbatched output
        assert flow_b.shape == (size, size, 2)
        np.testing.assert_allclose(np.asarray(flows[b]), np.asarray(flow_b), atol=1e-5)  # < 1e-3 px
        np.testing.assert_allclose(np.asarray(out[b]), np.asarray(W.warp(image[b:b + 1], flows[b:b + 1])[0]),
                                   atol=1e-6)


def test_jit_and_shapes():
    size = 32
    fn = jax.jit(lambda s, d, im: W.warp(im, W.tps_flow(s, d, size)))
    src, dst = jnp.asarray(_face())[None], jnp.asarray(_moved(_face(0.5)))[None]
    image = _image(1, (size, size))
    eager = W.warp(image, W.tps_flow(src, dst, size))
    np.testing.assert_allclose(np.asarray(fn(src, dst, image)), np.asarray(eager), atol=1e-5)
    # Features at a lower resolution: the flow at that size; output size follows the flow.
    feats = _image(1, (16, 16), channels=24).astype(jnp.bfloat16)
    flow = W.tps_flow(src, dst, (8, 12))
    assert flow.shape == (1, 8, 12, 2)
    out = W.warp(feats, flow)  # the output takes the flow's size
    assert out.shape == (1, 8, 12, 24) and out.dtype == jnp.bfloat16
    with pytest.raises(ValueError):
        W.tps_flow(src, dst[:, :60], size)
    with pytest.raises(ValueError):
        W.warp(image[0], W.tps_flow(src, dst, size)[0])


def test_warp_edge_clamping():
    image = jnp.arange(12, dtype=jnp.float32).reshape(1, 3, 4, 1)
    pts = jnp.asarray([[[-0.5, -0.5], [2.0, 0.0], [0.0, 2.0], [0.375, 0.5]]], jnp.float32)  # normalised
    vals = np.asarray(_sample(image, pts))[0, :, 0]
    # (x, y) in pixels: (-2, -1.5) -> corner 0; (8, 0) -> row 0 last column 3; (0, 6) -> last row first
    # column 8; (1.5, 1.5) -> mean of pixels 5, 6, 9, 10.
    np.testing.assert_allclose(vals, [0.0, 3.0, 8.0, 7.5], atol=1e-6)


def _photo_scene(side=384):
    """A checkerboard photo with a face's landmarks (pixels) and red dots drawn at some of them."""
    yy, xx = np.mgrid[0:side, 0:side]
    photo = np.zeros((side, side, 3), np.uint8)
    photo[..., 1] = np.where(((yy // 8) + (xx // 8)) % 2 == 0, 200, 40)
    photo[..., 2] = (xx * 255 // side).astype(np.uint8)
    src = _face(0.0) * side
    dst = _moved(_face(0.6), 4.0, 1.04, (0.015, -0.01)) * side
    dots = (30, 57, 8)  # nose tip, lower lip, chin
    for k in dots:
        photo[..., 0] = np.maximum(photo[..., 0], (255 * np.exp(
            -((xx - src[k, 0]) ** 2 + (yy - src[k, 1]) ** 2) / (2 * 1.5**2))).astype(np.uint8))
    return photo, src, dst, dots


def test_warp_numpy_moves_landmarks_and_keeps_the_rest():
    photo, src, dst, dots = _photo_scene()
    out = W.warp_numpy(photo, src, dst)
    assert out.shape == photo.shape and out.dtype == np.uint8
    yy, xx = np.mgrid[0:photo.shape[0], 0:photo.shape[1]]
    red = out[..., 0].astype(np.float64)
    for k in dots:
        win = (np.abs(xx - dst[k, 0]) < 6) & (np.abs(yy - dst[k, 1]) < 6)
        wgt = np.where(win, red, 0.0)
        centroid = np.array([(wgt * xx).sum(), (wgt * yy).sum()]) / wgt.sum()
        assert np.linalg.norm(centroid - dst[k]) < 1.0, (k, centroid, dst[k])
    # Outside the face box nothing changes, bit for bit, and the box's own edge pixels neither.
    x0, y0, x1, y1 = W.face_box(src, dst, photo.shape[:2])
    assert 0 < x0 < x1 < photo.shape[1] and 0 < y0 < y1 < photo.shape[0]
    inner = np.zeros(photo.shape[:2], bool)
    inner[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = True
    np.testing.assert_array_equal(out[~inner], photo[~inner])
    assert (out[inner] != photo[inner]).any()
    # The checkerboard stays sharp: still only (nearly) its two levels away from the square edges.
    assert np.abs(out[inner][..., 1].astype(int) - 120).mean() > 0.8 * 80


def test_warp_numpy_identity_and_grayscale():
    photo, src, _, _ = _photo_scene(128)
    np.testing.assert_array_equal(W.warp_numpy(photo, src, src), photo)
    gray = photo[..., 1].copy()
    assert W.warp_numpy(gray, src, src + 2.0).shape == gray.shape
    with pytest.raises(ValueError):
        W.warp_numpy(photo.astype(np.float32), src, src)
