import jax
import jax.numpy as jnp
import numpy as np
import pytest

from thflax.face import geometry


def _random_faces(n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, (68, 2)).astype(np.float32)
    base[list(geometry.ANCHORS)] = geometry.CANONICAL_ANCHORS  # a face-like anchor triangle
    faces = []
    for _ in range(n):
        ang, s = rng.uniform(-0.5, 0.5), rng.uniform(0.5, 2.0)
        r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32)
        faces.append((base + rng.normal(0, 0.01, base.shape)) @ r.T * s + rng.uniform(-1, 1, 2))
    return np.stack(faces).astype(np.float32)


def test_representation_sizes_match_paper():
    assert len(geometry.MOUTH_REP) * 2 == 42
    assert len(geometry.HEAD_REP) * 2 == 100
    assert geometry.MOUTH_REP[0] == geometry.NOSE_TIP
    assert geometry.HEAD_REP_ANCHORS == (30, 48, 49)


def test_similarity_fit_recovers_known_transform():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(10, 2)).astype(np.float32)
    ang, s, t = 0.7, 1.8, np.array([3.0, -2.0], np.float32)
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32)
    dst = src @ r.T * s + t
    a, b = geometry.similarity_fit(src, dst)
    np.testing.assert_allclose(geometry.similarity_apply(a, b, src), dst, atol=1e-4)
    np.testing.assert_allclose(np.hypot(*a), s, rtol=1e-5)


def test_calibration_maps_anchors_onto_template():
    faces = _random_faces(5)
    mouth = geometry.calibrate_mouth(faces)
    assert mouth.shape == (5, 21, 2)
    anchors = np.asarray(mouth)[:, geometry.MOUTH_REP_ANCHORS]
    # Noisy anchors cannot all match exactly, but the least-squares fit puts them close (noise 0.01).
    assert np.abs(anchors - geometry.CANONICAL_ANCHORS).max() < 0.05


def test_calibration_removes_pose():
    face = _random_faces(1)[0]
    ang = 0.4
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32)
    moved = face @ r.T * 1.7 + np.array([5.0, 2.0], np.float32)
    np.testing.assert_allclose(geometry.calibrate_mouth(face), geometry.calibrate_mouth(moved), atol=1e-4)


def test_merge_round_trip():
    faces = _random_faces(8)
    back = geometry.merge(geometry.calibrate_mouth(faces), geometry.head_points(faces))
    np.testing.assert_allclose(back, faces, atol=1e-4)


def test_merge_follows_head_pose():
    face = _random_faces(1)[0]
    mouth = geometry.calibrate_mouth(face)
    shifted = face + np.array([0.3, -0.1], np.float32)
    out = geometry.merge(mouth, geometry.head_points(shifted))
    np.testing.assert_allclose(out, shifted, atol=1e-4)


def test_merge_is_differentiable_and_batched():
    faces = jnp.asarray(_random_faces(4).reshape(2, 2, 68, 2))
    f = lambda m, h: jnp.sum(geometry.merge(m, h) ** 2)  # noqa: E731
    gm, gh = jax.grad(f, argnums=(0, 1))(geometry.calibrate_mouth(faces), geometry.head_points(faces))
    assert gm.shape == (2, 2, 21, 2) and gh.shape == (2, 2, 50, 2)
    assert np.all(np.isfinite(gm)) and np.abs(np.asarray(gm)).sum() > 0


@pytest.mark.parametrize("n", [1, 3])
def test_similarity_fit_ignores_degenerate_scale_gracefully(n):
    pts = np.zeros((n, 3, 2), np.float32)  # coincident points: must not produce NaN
    a, b = geometry.similarity_fit(pts, pts + 1)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))


def test_scale_head_motion_keeps_1_fixes_0_and_doubles_2():
    """Head points move `scale` times as far from the template's; the calibrated mouth is kept."""
    faces = _random_faces(6, seed=3)
    template, track = faces[0], faces[None, 1:]  # [1, 5, 68, 2] against [1, 68, 2]
    tmpl = template[None]
    head = np.asarray(geometry.head_points(track))
    t_head = np.asarray(geometry.head_points(tmpl))[:, None]
    np.testing.assert_allclose(geometry.scale_head_motion(track, tmpl, 1.0), track, atol=1e-4)
    still = np.asarray(geometry.scale_head_motion(track, tmpl, 0.0))
    np.testing.assert_array_equal(still[..., :48, :], np.broadcast_to(template[:48], still[..., :48, :].shape))
    double = np.asarray(geometry.scale_head_motion(track, tmpl, 2.0))
    np.testing.assert_allclose(double[..., :48, :] - template[:48], 2 * (head[..., :48, :] - t_head[..., :48, :]),
                               atol=1e-4)
    assert np.abs(head[..., :48, :] - t_head[..., :48, :]).max() > 0.1  # the heads do move
    # The lips keep the prediction's shape at every scale: placed by a similarity transform (rotated, scaled,
    # moved) of the calibrated mouth, no other change.
    mouth = geometry.calibrate_mouth(track)[..., 1:, :]
    for scaled in (still, double):
        a, b = geometry.similarity_fit(mouth, scaled[..., 48:, :])
        np.testing.assert_allclose(geometry.similarity_apply(a, b, mouth), scaled[..., 48:, :], atol=1e-4)
