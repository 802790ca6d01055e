"""The face feature network trained here (thflax/models/face_features.py, trained by
thflax/training/face_features.py) and the LTV net's perceptual term."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from thflax.models import face_features
from thflax.training import face_features as feature_training
from thflax.training import tasks
from thflax.errors import InputError
from thflax.io.images import to_unit

pytestmark = pytest.mark.heavy  # trains a network in-process


def _two_people(n: int, size: int = 32, seed: int = 0):
    """n noisy frames of two 'speakers' told apart by where a bright blob sits, with landmarks that
    follow it: (frames uint8 [n, S, S, 3], landmarks [n, 68, 2], speaker [n])."""
    r = np.random.default_rng(seed)
    who = r.integers(0, 2, n).astype(np.int32)
    frames = r.integers(0, 90, (n, size, size, 3)).astype(np.uint8)
    lms = np.empty((n, 68, 2), np.float32)
    for i, w in enumerate(who):
        cx = 0.3 if w == 0 else 0.7
        cy = r.uniform(0.35, 0.65)
        x0, y0 = int((cx - 0.15) * size), int((cy - 0.15) * size)
        frames[i, y0:y0 + size // 3, x0:x0 + size // 3] = 230
        lms[i] = np.stack([np.full(68, cx), np.full(68, cy)], -1) + r.normal(0, 0.01, (68, 2))
    return frames, lms, who


@pytest.fixture(scope="module")
def net():
    frames, lms, who = _two_people(256)
    trained, m = feature_training.train(frames, lms, who, 2, steps=60, batch=32)
    return trained, m


def test_trained_network_tells_the_speakers_apart_on_unseen_frames(net):
    trained, m = net
    frames, _, who = _two_people(64, seed=1)
    # Mirrored in training (mirrors are other people), so here the blob's side decides: the unmirrored
    # frames of held-out samples must be classified far above chance (0.5).
    _, logits, _ = trained.model.apply({"params": trained.params}, to_unit(frames))
    acc = float(np.mean(np.argmax(np.asarray(logits), -1) == who))
    assert m["loss"] > 0 and acc > 0.6, (m, acc)


def test_distance_is_zero_for_equal_images_and_has_a_gradient(net):
    trained, _ = net
    frames, _, _ = _two_people(4, seed=2)
    a = to_unit(frames[:2])
    b = to_unit(frames[2:])
    assert float(face_features.distance(trained, a, a)) == 0.0
    d = float(face_features.distance(trained, a, b))
    assert d > 0.01
    g = jax.grad(lambda x: face_features.distance(trained, x, b))(a)
    assert float(jnp.abs(g).sum()) > 0 and bool(jnp.all(jnp.isfinite(g)))


def test_save_load_round_trip_and_one_line_errors(net, tmp_path):
    trained, _ = net
    path = str(tmp_path / "f.msgpack")
    face_features.save(trained, path, ["a", "b"])
    back = face_features.load(path, 32)
    frames, _, _ = _two_people(2, seed=3)
    x = to_unit(frames)
    for u, v in zip(trained.features(x), back.features(x)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    with pytest.raises(InputError, match="trained on 32x32 crops, the LTV net works at 64x64"):
        face_features.load(path, 64)
    with pytest.raises(InputError, match="cannot read the perceptual network"):
        face_features.load(str(tmp_path / "missing.msgpack"))
    junk = tmp_path / "junk.msgpack"
    junk.write_bytes(b"\x81\xa1a\x01")  # a msgpack map, but not ours
    with pytest.raises(InputError, match="not a perceptual network") as e:
        face_features.load(str(junk))
    assert "\n" not in str(e.value)


def test_ltv_perceptual_term(net, tmp_path):
    from configs import tiny

    trained, _ = net
    config = tiny.get_config()
    config.ltv.image_size = 32
    config.ltv.perceptual_weight = 1.0
    with pytest.raises(InputError, match="needs config.ltv.perceptual_net"):
        tasks.get_task(config, "ltv")
    path = str(tmp_path / "f.msgpack")
    face_features.save(trained, path, ["a", "b"])
    config.ltv.perceptual_net = path
    task = tasks.get_task(config, "ltv")
    frames, lms, _ = _two_people(4, seed=4)
    fake, target = to_unit(frames[:2]), to_unit(frames[2:])
    terms = task.g_loss_terms(fake, jnp.zeros((2, 32, 32, 1)), target, jnp.zeros((2, 4, 4, 1)), jnp.asarray(lms[:2]))
    np.testing.assert_allclose(float(terms["perceptual"]), float(face_features.distance(trained, fake, target)),
                               rtol=1e-6)
