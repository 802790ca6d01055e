"""The face feature network for the LTV net's optional perceptual loss: its definition, the perceptual
distance and the file it is saved in.

No pretrained image network (VGG, LPIPS) can be fetched offline, so the features come from a small CNN
trained on the training split's frames to tell the speakers apart and to place the 68 landmarks
(`thflax.training.face_features` trains it): its activations respond to identity (texture, colour) and to
geometry (the mouth's shape), which is what the generator should reproduce. The LTV stage loads it frozen
(`config.ltv.perceptual_net`, weight `config.ltv.perceptual_weight`); generation never needs it. Kept apart
from the trainer so that loading it for the LTV stage pulls in neither the trainer nor the input pipeline.

`distance(net, a, b)`: per layer, the activations are scaled to unit length over channels at each
position (as LPIPS does) and their mean absolute difference is taken; the layers' values are averaged
(LPIPS without its learned per-channel weights, which need human similarity judgements).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from thflax.errors import InputError
from thflax.io import files

#: Channels of the feature network's stride-2 levels (64² crops -> 32, 16, 8, 4).
CHANNELS = (16, 32, 64, 128)

#: The command that writes the network's file (named in the errors of `load`).
TRAIN_COMMAND = "python -m thflax.training.face_features"


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
                         f"`{TRAIN_COMMAND}` writes)")
    try:
        with open(path, "rb") as f:
            blob = serialization.msgpack_restore(f.read())
        model = FaceFeatures(int(blob["num_speakers"]), tuple(int(c) for c in blob["channels"].values())
                             if isinstance(blob["channels"], dict) else tuple(int(c) for c in blob["channels"]))
        net = FeatureNet(model, blob["params"], int(blob["image_size"]))
    except OSError as e:
        raise InputError(f"cannot read the perceptual network {path}: {e.strerror or e}") from e
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path} is not a perceptual network written by `{TRAIN_COMMAND}` ({e})") from e
    if image_size is not None and net.image_size != image_size:
        raise InputError(f"the perceptual network {path} was trained on {net.image_size}x{net.image_size} crops, "
                         f"the LTV net works at {image_size}x{image_size}")
    return net
