"""A face feature network trained here, for the LTV net's optional perceptual loss.

No pretrained image network (VGG, LPIPS) can be fetched offline, so the features come from a small CNN
trained on the training split's frames to tell the speakers apart and to place the 68 landmarks: its
activations respond to identity (texture, colour) and to geometry (the mouth's shape), which is what
the generator should reproduce. The LTV stage loads it frozen (`config.ltv.perceptual_net`, weight
`config.ltv.perceptual_weight`); generation never needs it.

`distance(net, a, b)`: per layer, the activations are scaled to unit length over channels at each
position (as LPIPS does) and their mean absolute difference is taken; the layers' values are averaged
(LPIPS without its learned per-channel weights, which need human similarity judgements).

    python -m thflax.training.perceptual --config configs/cpu.py \
        --config.data.name=synthetic_talking_heads/people_small --out runs/face_features.msgpack
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from thflax.io import files
from thflax.errors import InputError
from thflax.io.images import to_unit

#: Channels of the feature network's stride-2 levels (64² crops -> 32, 16, 8, 4).
CHANNELS = (16, 32, 64, 128)


class FaceFeatures(nn.Module):
    """Stride-2 3×3 convolutions with GroupNorm: images [B, S, S, 3] in [-1, 1] -> (activations of each
    level, speaker logits [B, num_speakers], landmarks [B, 68, 2] normalised)."""

    num_speakers: int
    channels: Sequence[int] = CHANNELS

    @nn.compact
    def __call__(self, x):
        feats = []
        for i, c in enumerate(self.channels):
            x = nn.Conv(c, (3, 3), (2, 2), padding="SAME", use_bias=False, name=f"conv{i}")(x)
            x = nn.leaky_relu(nn.GroupNorm(num_groups=min(8, c), name=f"norm{i}")(x), 0.2)
            feats.append(x)
        pooled = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_speakers, name="speaker")(pooled)
        landmarks = nn.Dense(68 * 2, name="landmarks")(pooled).reshape(-1, 68, 2) + 0.5
        return feats, logits, landmarks


@dataclasses.dataclass(frozen=True)
class FeatureNet:
    """A trained `FaceFeatures` and its parameters (frozen: the perceptual loss never updates them)."""

    model: FaceFeatures
    params: Any
    image_size: int

    def features(self, images) -> list[jnp.ndarray]:
        """images [B, S, S, 3] in [-1, 1] -> the activations of each level."""
        return self.model.apply({"params": jax.lax.stop_gradient(self.params)}, images)[0]


def distance(net: FeatureNet, a, b) -> jnp.ndarray:
    """Perceptual distance of images a, b [B, S, S, 3] in [-1, 1]: a scalar, 0 when they are equal."""
    def unit(f):
        return f / jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True) + 1e-10)

    fa, fb = net.features(a), net.features(b)
    return jnp.mean(jnp.stack([jnp.mean(jnp.abs(unit(x) - unit(y))) for x, y in zip(fa, fb)]))


def save(net: FeatureNet, path: str, speakers: Sequence[str]) -> None:
    """Writes the network (parameters, layout, the speakers it was trained on) to `path` (msgpack), whole or
    not at all; OutputError (one line) if it cannot."""
    from flax import serialization

    blob = serialization.msgpack_serialize({
        "params": jax.device_get(net.params), "channels": list(net.model.channels),
        "num_speakers": net.model.num_speakers, "image_size": net.image_size, "speakers": list(speakers)})
    files.atomic_write(path, blob)


def load(path: str, image_size: int | None = None) -> FeatureNet:
    """The network `save` wrote; InputError (one line) if it is missing, unreadable or of another size."""
    from flax import serialization

    if not path:
        raise InputError("config.ltv.perceptual_weight > 0 needs config.ltv.perceptual_net (a file that "
                         "`python -m thflax.training.perceptual` writes)")
    try:
        with open(path, "rb") as f:
            blob = serialization.msgpack_restore(f.read())
        model = FaceFeatures(int(blob["num_speakers"]), tuple(int(c) for c in blob["channels"].values())
                             if isinstance(blob["channels"], dict) else tuple(int(c) for c in blob["channels"]))
        net = FeatureNet(model, blob["params"], int(blob["image_size"]))
    except OSError as e:
        raise InputError(f"cannot read the perceptual network {path}: {e.strerror or e}") from e
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path} is not a perceptual network written by thflax.training.perceptual ({e})") from e
    if image_size is not None and net.image_size != image_size:
        raise InputError(f"the perceptual network {path} was trained on {net.image_size}x{net.image_size} crops, "
                         f"the LTV net works at {image_size}x{image_size}")
    return net


def training_frames(config, split: str = "train", every: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                            list[str]]:
    """(frames [N, S, S, 3] uint8, landmarks [N, 68, 2], speaker index [N], speaker names) of every
    `every`-th frame of the split's utterances."""
    from input_pipeline import pipeline

    frames, lms, who, names = [], [], [], {}
    for ex in pipeline.utterances(config, split):
        idx = names.setdefault(ex["speaker"], len(names))
        frames.append(ex["frames"][::every])
        lms.append(ex["landmarks"][::every])
        who.append(np.full(len(frames[-1]), idx, np.int32))
    if not frames:
        raise InputError(f"no utterances in the {split} split of {config.data.name}")
    return np.concatenate(frames), np.concatenate(lms).astype(np.float32), np.concatenate(who), list(names)


def train(frames: np.ndarray, landmarks: np.ndarray, speakers: np.ndarray, num_speakers: int, steps: int = 800,
          batch: int = 64, learning_rate: float = 1e-3, seed: int = 0) -> tuple[FeatureNet, dict[str, float]]:
    """Trains `FaceFeatures` on frames [N, S, S, 3] uint8 to classify the speaker and regress the
    landmarks [N, 68, 2]; returns the network and its last-step metrics (loss, accuracy)."""
    size = int(frames.shape[1])
    model = FaceFeatures(num_speakers)
    params = model.init(jax.random.key(seed), jnp.zeros((1, size, size, 3)))["params"]
    tx = optax.adam(learning_rate)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y, lm):
        def loss_fn(p):
            _, logits, pred = model.apply({"params": p}, to_unit(x))
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            # Landmarks in units of 1/64 of the crop: both terms are O(1) at the start.
            return ce + jnp.mean(jnp.abs(pred - lm)) * 64.0, (ce, jnp.mean(jnp.argmax(logits, -1) == y))

        (loss, (ce, acc)), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt, {"loss": loss, "ce": ce, "accuracy": acc}

    rng = np.random.default_rng(seed)
    metrics = {}
    for _ in range(steps):
        i = rng.integers(0, len(frames), batch)
        x = frames[i]
        flip = rng.random(batch) < 0.5  # mirror images are other people's faces too
        x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        lm = landmarks[i].copy()
        lm[flip, :, 0] = 1.0 - lm[flip, :, 0]  # the points move; their dlib order is left as is
        params, opt, metrics = step(params, opt, x, speakers[i], lm)
    return FeatureNet(model, params, size), {k: float(v) for k, v in metrics.items()}


def main(argv) -> int:
    from absl import flags

    del argv
    config = flags.FLAGS.config  # with its --config.x=y overrides
    out = flags.FLAGS.out
    files.check_folder(out)  # before minutes of training, not after
    frames, lms, who, names = training_frames(config)
    print(f"{len(frames)} frames of {len(names)} speakers ({config.data.name}, train split)", flush=True)
    net, m = train(frames, lms, who, len(names), steps=flags.FLAGS.steps, seed=int(config.seed))
    save(net, out, names)
    print(f"last step: loss {m['loss']:.3f}, speaker accuracy {m['accuracy']:.2f} -> {out}")
    return 0


if __name__ == "__main__":
    from absl import flags

    from thflax import cli

    cli.define_config()
    flags.DEFINE_string("out", None, "Where the network goes (msgpack).", required=True)
    flags.DEFINE_integer("steps", 800, "Training steps (batch 64).", lower_bound=1)
    cli.run(main)
