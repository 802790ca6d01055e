"""Stage 1: training the STL net (speech -> landmarks). Pure functions over `TrainState`.

`train_step(state, batch, rng) -> (state, metrics)` is a per-device body for
`thflax.training.parallel.data_parallel`: losses are normalised by the global number of (unpadded) frames and
gradients summed over devices, so 1 device and N devices give the same update for the same global
batch. A step whose loss or gradients are not finite leaves the state unchanged (apart from `step`)
and reports `finite = 0`, which the training loop turns into an error.

Batch (per device): mfcc [b, L, W, n] f32, landmarks [b, L, 68, 2] f32 normalised, template
[b, 68, 2] f32 normalised, mask [b, L] f32.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from thflax.training import losses
from thflax.measures import metrics
from thflax.models import build, stl
from thflax.training.parallel import AXIS
from thflax.training.train_state import TrainState, all_finite, ema_update, make_optimizer, select


class STLTask:
    """The STL stage (a `thflax.training.tasks.Task`)."""

    name = "stl"

    def __init__(self, config):
        self.config = config
        self.model = build.build_stl(config, bn_axis_name=AXIS)
        self.infer_model = build.build_stl(config)
        c = config.stl
        self.tx = make_optimizer(c.learning_rate, grad_clip=c.grad_clip)

    def signature(self) -> dict[str, Any]:
        return build.signature(self.config, self.name)

    def check_data(self, metadata) -> None:
        del metadata  # any prepared dataset has MFCC windows and landmarks

    # ---- tf.data elements ------------------------------------------------------------------------
    def features(self, train: bool) -> tuple[str, ...]:
        del train
        return ("mfcc", "landmarks", "landmarks_raw")  # never the frames: most of a record's bytes

    def elements_per_example(self, train: bool) -> int:
        del train
        return 1

    def elements(self, example, seed, train: bool):
        """One random clip of `clip_len` frames and a template (unsmoothed) from a random frame of the utterance.

        mfcc [1, L, W, n], landmarks [1, L, 68, 2], template [1, 68, 2], mask [1, L] (0 = padding
        where the utterance is shorter than L).
        """
        import tensorflow as tf

        del train  # the same sampling for training and held-out clips (eval uses its own seeds)
        clip_len = int(self.config.stl.clip_len)
        lm, mfcc = example["landmarks"], example["mfcc"]
        n = tf.shape(lm)[0]
        s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        start = tf.random.stateless_uniform([], s1, 0, tf.maximum(n - clip_len, 0) + 1, tf.int32)
        ref = tf.random.stateless_uniform([], s2, 0, n, tf.int32)
        idx = tf.minimum(start + tf.range(clip_len), n - 1)  # repeat the last frame when n < clip_len
        mask = tf.cast(start + tf.range(clip_len) < n, tf.float32)
        # The template is dlib's unsmoothed landmarks of the reference frame, as generation takes them from
        # a photo (and evaluation from frame 0); the targets stay the smoothed track.
        out = {"mfcc": tf.gather(mfcc, idx), "landmarks": tf.gather(lm, idx),
               "template": example["landmarks_raw"][ref], "mask": mask}
        return {k: v[None] for k, v in out.items()}

    # ---- state -----------------------------------------------------------------------------------
    def init_state(self, rng: jax.Array) -> TrainState:
        init_rng, state_rng = jax.random.split(rng)
        variables = build.init_stl(self.config, init_rng)
        params = {"stl": variables["params"]}
        # A copy: the state is donated to the step, and one buffer cannot be donated twice.
        ema = jax.tree.map(jnp.copy, params) if self.config.stl.ema_decay else {}
        return TrainState(step=jnp.array(0, jnp.int32), params=params,
                          batch_stats={"stl": variables["batch_stats"]},
                          opt_state={"stl": self.tx.init(params["stl"])}, ema_params=ema,
                          rng=jax.random.key_data(state_rng))

    # ---- the per-device train step ---------------------------------------------------------------
    def train_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        del rng  # the STL step is deterministic
        c = self.config.stl
        tgt = stl.targets(batch["landmarks"], bool(c.split))
        mask = batch["mask"]
        count = lax.psum(mask.sum(), AXIS)
        weights = {"mouth": 1.0, "head": float(c.head_weight), "full": 1.0}
        velocity_weight = float(c.velocity_weight)
        # Frame pairs (t, t+1) both inside the utterance: the velocity term's frames.
        pairs = mask[:, 1:] * mask[:, :-1]
        pair_count = jnp.maximum(lax.psum(pairs.sum(), AXIS), 1.0)

        def loss_fn(params):
            (out, _), upd = self.model.apply(
                {"params": params, "batch_stats": state.batch_stats["stl"]}, batch["mfcc"], batch["template"],
                train=True, mutable=["batch_stats"])
            terms = {}
            for k, t in tgt.items():
                per_frame = losses.landmark_loss(out[k] - t, c.loss, c.wing_w, c.wing_eps).mean((-2, -1))
                terms[k] = jnp.sum(per_frame * mask) / count  # this device's share of the global mean
            total = sum(weights[k] * v for k, v in terms.items())
            if velocity_weight:
                # The head's frame-to-frame motion against the target's: a per-frame position loss alone
                # is met best by a damped, averaged head where the motion is not predictable.
                k = "head" if "head" in tgt else "full"
                vel = jnp.diff(out[k], axis=1) - jnp.diff(tgt[k], axis=1)
                per_pair = losses.landmark_loss(vel, c.loss, c.wing_w, c.wing_eps).mean((-2, -1))
                terms["velocity"] = jnp.sum(per_pair * pairs) / pair_count
                total = total + velocity_weight * terms["velocity"]
            return total, (terms, upd["batch_stats"], out["landmarks"])

        (loss, (terms, new_bs, pred)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["stl"])
        # Each device holds the gradient of its share; their sum is the gradient of the global mean.
        grads = lax.psum(grads, AXIS)
        loss, terms = lax.psum(loss, AXIS), lax.psum(terms, AXIS)
        updates, opt_state = self.tx.update(grads, state.opt_state["stl"], state.params["stl"])
        params = optax.apply_updates(state.params["stl"], updates)
        new = state.replace(params={"stl": params}, batch_stats={"stl": new_bs}, opt_state={"stl": opt_state})
        if c.ema_decay:
            new = new.replace(ema_params={"stl": ema_update(state.ema_params["stl"], params, c.ema_decay)})
        ok = jnp.isfinite(loss) & all_finite(grads)
        new = select(ok, new, state).replace(step=state.step + 1)
        scale = stl.LANDMARK_SCALE
        frame_lmd = metrics.frame_lmd(pred * scale, batch["landmarks"] * scale)
        out_metrics = {"loss": loss, "finite": ok.astype(jnp.float32), "grad_norm": optax.global_norm(grads),
                       "lmd_mouth": lax.psum(jnp.sum(frame_lmd * mask), AXIS) / count,
                       **{f"loss_{k}": v for k, v in terms.items()}}
        return new, out_metrics

    # ---- evaluation ------------------------------------------------------------------------------
    def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        """Per-device eval body: held-out mouth LMD of the model and of the template baseline (px @256)."""
        del rng
        params = state.ema_params["stl"] if state.ema_params else state.params["stl"]
        out, _ = self.infer_model.apply({"params": params, "batch_stats": state.batch_stats["stl"]},
                                        batch["mfcc"], batch["template"], train=False)
        scale = stl.LANDMARK_SCALE
        mask = batch["mask"]
        count = lax.psum(mask.sum(), AXIS)
        true = batch["landmarks"] * scale
        pred = out["landmarks"] * scale
        tmpl = jnp.broadcast_to(batch["template"][:, None] * scale, true.shape)
        gm = lambda v: lax.psum(jnp.sum(v * mask), AXIS) / count  # noqa: E731
        m = {"lmd_mouth": gm(metrics.frame_lmd(pred, true)), "lmd_mouth_template": gm(metrics.frame_lmd(tmpl, true)),
             # Head points are not centred: where the head is *is* the head motion.
             "lmd_head": gm(metrics.frame_lmd(pred, true, metrics.NON_MOUTH, center=False)),
             "lmd_head_template": gm(metrics.frame_lmd(tmpl, true, metrics.NON_MOUTH, center=False)),
             "mouth_open": gm(metrics.mouth_opening(pred)), "mouth_open_true": gm(metrics.mouth_opening(true))}
        return m, pred / scale

    def images(self, batch, pred) -> dict[str, np.ndarray]:
        """Predicted (red) vs true (green) landmarks for a few frames of the first eval clip."""
        from thflax.face import plotting

        frames = np.linspace(0, pred.shape[1] - 1, 6).astype(int)
        panel = plotting.landmark_panel(batch["landmarks"][0, frames], pred[0, frames], size=128)
        return {"landmarks_pred_vs_true": panel[None]}

