"""Trains the face feature network (`thflax.models.face_features`) that the LTV net's optional perceptual
loss compares frames in, and its command line, which writes the network's file for
`config.ltv.perceptual_net`:

    python -m thflax.training.face_features --config configs/cpu.py \
        --config.data.name=synthetic_talking_heads/people_small --out runs/face_features.msgpack

The network learns to classify each training-split frame's speaker and to regress its 68 landmarks, so that
its activations respond to identity and to the mouth's shape (see `thflax.models.face_features`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from thflax.errors import InputError
from thflax.io import files
from thflax.io.images import to_unit
from thflax.models.face_features import FaceFeatures, FeatureNet, save


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


def main(argv: list[str]) -> int:
    """The command line: trains on `config.data`'s training split and writes the network to --out."""
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
