"""The lip-sync expert (SyncNet, `thflax.models.syncnet`) trained on the corpus's training split: a stage of
its own (`tasks.STAGES["syncnet"]`, not part of "all"), and its command:

    python -m thflax.training.syncnet_stage --config configs/syncnet.py --workdir runs/syncnet

It writes <workdir>/syncnet/{checkpoints, TensorBoard events} through the shared loop (`trainer.train_stage`:
exact resume, config signature checks), then the validation metrics to <workdir>/syncnet/validation.json.
`export.py --workdir <workdir>` bundles it with the other stages' parameters;
`thflax.measures.lip_sync_expert` loads it from either.

Training pairs (contrastive, as SyncNet's recipe): a window of 5 consecutive face crops with the 0.2 s of
MFCC that goes with them (in sync), and the same frames with the MFCC of a window shifted by
`min_shift`..`max_shift` frames within the same utterance (off sync). The loss is Chung & Zisserman's:
the squared distance of in-sync embeddings plus the squared shortfall of shifted ones below the margin.
Held-out metrics: `accuracy` (a pair called in sync when its distance is below margin / 2; half the
pairs are) and `rank_accuracy` (the in-sync audio nearer than the shifted one).

Batch (per device): frames [b, 5, S, S, 3] uint8 face crops; audio, audio_shifted [b, n_mfcc, 20] f32;
shift [b] int32 (frames, for inspection); mask [b] f32 (0 where the utterance was too short to shift).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from thflax.errors import InputError
from thflax.models import build, syncnet
from thflax.training.parallel import AXIS
from thflax.training.train_state import TrainState, all_finite, ema_update, make_optimizer, select

NET = "syncnet"
#: Validation metrics the command writes next to the checkpoints.
VALIDATION_FILE = "validation.json"


def pair_distances(video: jax.Array, audio: jax.Array, audio_shifted: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Euclidean distances [b] of the video embeddings to the in-sync and to the shifted audio ones."""
    def dist(a):
        return jnp.sqrt(jnp.sum(jnp.square(video - a), -1) + 1e-12)

    return dist(audio), dist(audio_shifted)


def contrastive_terms(d_sync: jax.Array, d_shifted: jax.Array, margin: float) -> jax.Array:
    """Per-window loss [b]: d_sync² + max(margin - d_shifted, 0)², halved (one positive, one negative pair)."""
    return 0.5 * (jnp.square(d_sync) + jnp.square(jnp.maximum(margin - d_shifted, 0.0)))


class SyncNetTask:
    """The lip-sync expert's stage (a `thflax.training.tasks.Task`)."""

    name = NET

    def __init__(self, config):
        self.config = config
        c = config.syncnet
        if not 0 < int(c.min_shift) <= int(c.max_shift):
            raise InputError(f"config.syncnet needs 0 < min_shift <= max_shift (got {c.min_shift}, {c.max_shift})")
        self.model = build.build_syncnet(config, bn_axis_name=AXIS)
        self.infer_model = build.build_syncnet(config)
        self.spec = build.syncnet_input(config)
        self.tx = make_optimizer(c.learning_rate, grad_clip=c.grad_clip)

    def signature(self) -> dict[str, Any]:
        return build.signature(self.config, self.name)

    def check_data(self, metadata) -> None:
        """5 frames must span the 20 MFCC frames of a window (0.2 s: 25 fps, 10 ms hop), and the dataset
        must have the coefficients the audio tower reads."""
        fps, hop = float(metadata.get("fps", 25.0)), float(metadata.get("hop_seconds", 0.01))
        window, n = int(metadata.get("mfcc_window", 20)), int(metadata.get("n_mfcc", 20))
        if abs(syncnet.FRAMES / fps - syncnet.MFCC_FRAMES * hop) > 1e-6 or window != syncnet.MFCC_FRAMES:
            raise InputError(f"the lip-sync expert reads {syncnet.FRAMES} frames with {syncnet.MFCC_FRAMES} MFCC "
                             f"frames (0.2 s at 25 fps and a 10 ms hop); the dataset has {fps:g} fps, "
                             f"{window}-frame windows at a {hop * 1000:g} ms hop")
        if n < int(self.config.syncnet.n_mfcc):
            raise InputError(f"config.syncnet.n_mfcc={self.config.syncnet.n_mfcc} but the dataset has {n} MFCC "
                             f"coefficients")

    # ---- tf.data elements ------------------------------------------------------------------------
    def elements_per_example(self, train: bool) -> int:
        del train
        return int(self.config.syncnet.windows_per_example)

    def elements(self, example, seed, train: bool):
        """`windows_per_example` windows of one utterance, each with its in-sync and a shifted audio window.

        The audio window of the frames v..v+4 is the dataset's window of their middle frame v+2 (its 20 MFCC
        frames cover the 0.2 s of the five frames); the shifted one is that of another middle frame c' with
        min_shift <= |c' - (v+2)| <= max_shift, drawn uniformly among those inside the utterance.
        """
        import tensorflow as tf

        del train  # the same sampling for training and held-out windows (eval uses its own seeds)
        c = self.config.syncnet
        p, half = int(c.windows_per_example), syncnet.FRAMES // 2
        lo_shift, hi_shift, n_mfcc = int(c.min_shift), int(c.max_shift), int(c.n_mfcc)
        mfcc = example["mfcc"]
        n = tf.shape(mfcc)[0]
        s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        start = tf.random.stateless_uniform([p], s1, 0, tf.maximum(n - syncnet.FRAMES, 0) + 1, tf.int32)
        centre = start + half
        left_lo, left_hi = tf.maximum(half, centre - hi_shift), centre - lo_shift
        right_lo, right_hi = centre + lo_shift, tf.minimum(n - 1 - half, centre + hi_shift)
        n_left = tf.maximum(left_hi - left_lo + 1, 0)
        n_right = tf.maximum(right_hi - right_lo + 1, 0)
        total = n_left + n_right
        u = tf.cast(tf.floor(tf.random.stateless_uniform([p], s2) * tf.cast(total, tf.float32)), tf.int32)
        u = tf.minimum(u, tf.maximum(total - 1, 0))
        shifted = tf.where(u < n_left, left_lo + u, right_lo + u - n_left)
        shifted = tf.where(total > 0, shifted, centre)  # too short to shift: masked out of the loss
        idx = tf.minimum(start[:, None] + tf.range(syncnet.FRAMES)[None, :], n - 1)  # [p, 5]
        jpegs = tf.gather(example["frames"], tf.reshape(idx, [-1]))
        frames = tf.map_fn(lambda j: tf.io.decode_jpeg(j, channels=3), jpegs, fn_output_signature=tf.uint8)
        size = tf.shape(frames)[1:]
        window = lambda i: tf.transpose(tf.gather(mfcc, i)[:, :, :n_mfcc], [0, 2, 1])  # noqa: E731 - [p, n, 20]
        return {"frames": tf.reshape(frames, tf.concat([[p, syncnet.FRAMES], size], 0)),
                "audio": window(centre), "audio_shifted": window(shifted),
                "shift": shifted - centre, "mask": tf.cast(total > 0, tf.float32)}

    # ---- state -----------------------------------------------------------------------------------
    def init_state(self, rng: jax.Array) -> TrainState:
        init_rng, state_rng = jax.random.split(rng)
        variables = build.init_syncnet(self.config, init_rng)
        params = {NET: variables["params"]}
        # A copy: the state is donated to the step, and one buffer cannot be donated twice.
        ema = jax.tree.map(jnp.copy, params) if self.config.syncnet.ema_decay else {}
        return TrainState(step=jnp.array(0, jnp.int32), params=params, batch_stats={NET: variables["batch_stats"]},
                          opt_state={NET: self.tx.init(params[NET])}, ema_params=ema,
                          rng=jax.random.key_data(state_rng))

    def _embed(self, model, variables, batch, train: bool):
        """(video [b, E], in-sync audio [b, E], shifted audio [b, E]) and, when training, the new statistics."""
        frames = syncnet.video_input(batch["frames"], self.spec)
        audio = jnp.concatenate([batch["audio"], batch["audio_shifted"]])
        if train:
            (a, v), upd = model.apply(variables, audio, frames, train=True, mutable=["batch_stats"])
        else:
            (a, v), upd = model.apply(variables, audio, frames), None
        a_sync, a_shifted = jnp.split(a, 2)
        return (v, a_sync, a_shifted), upd

    def _metrics(self, d_sync, d_shifted, mask, count) -> dict[str, jax.Array]:
        thr = 0.5 * float(self.config.syncnet.margin)
        g = lambda x: lax.psum(jnp.sum(x * mask), AXIS) / count  # noqa: E731 - global mean over windows
        return {"accuracy": g(0.5 * ((d_sync < thr).astype(jnp.float32) + (d_shifted >= thr).astype(jnp.float32))),
                "rank_accuracy": g((d_sync < d_shifted).astype(jnp.float32)),
                "d_sync": g(d_sync), "d_shifted": g(d_shifted)}

    # ---- the per-device train step ---------------------------------------------------------------
    def train_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        del rng  # deterministic
        c = self.config.syncnet
        mask = batch["mask"]
        count = jnp.maximum(lax.psum(mask.sum(), AXIS), 1.0)

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats[NET]}
            (v, a, a_shifted), upd = self._embed(self.model, variables, batch, train=True)
            d_sync, d_shifted = pair_distances(v, a, a_shifted)
            loss = jnp.sum(contrastive_terms(d_sync, d_shifted, float(c.margin)) * mask) / count  # this device's share
            return loss, (upd["batch_stats"], d_sync, d_shifted)

        (loss, (new_bs, d_sync, d_shifted)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params[NET])
        grads, loss = lax.psum(grads, AXIS), lax.psum(loss, AXIS)
        updates, opt_state = self.tx.update(grads, state.opt_state[NET], state.params[NET])
        params = optax.apply_updates(state.params[NET], updates)
        new = state.replace(params={NET: params}, batch_stats={NET: new_bs}, opt_state={NET: opt_state})
        if c.ema_decay:
            new = new.replace(ema_params={NET: ema_update(state.ema_params[NET], params, c.ema_decay)})
        ok = jnp.isfinite(loss) & all_finite(grads)
        new = select(ok, new, state).replace(step=state.step + 1)
        return new, {"loss": loss, "finite": ok.astype(jnp.float32), "grad_norm": optax.global_norm(grads),
                     **self._metrics(d_sync, d_shifted, mask, count)}

    # ---- evaluation ------------------------------------------------------------------------------
    def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        """Held-out accuracy, ranking accuracy and mean distances; per window the two distances."""
        del rng
        params = state.ema_params[NET] if state.ema_params else state.params[NET]
        variables = {"params": params, "batch_stats": state.batch_stats[NET]}
        (v, a, a_shifted), _ = self._embed(self.infer_model, variables, batch, train=False)
        d_sync, d_shifted = pair_distances(v, a, a_shifted)
        mask = batch["mask"]
        count = jnp.maximum(lax.psum(mask.sum(), AXIS), 1.0)
        m = self._metrics(d_sync, d_shifted, mask, count)
        m["loss"] = lax.psum(jnp.sum(contrastive_terms(d_sync, d_shifted, float(self.config.syncnet.margin)) * mask),
                             AXIS) / count
        return m, {"d_sync": d_sync, "d_shifted": d_shifted}

    def images(self, batch, outputs) -> dict[str, np.ndarray]:
        """The mouth regions the expert reads: the 5 frames of 4 held-out windows, one row each."""
        from thflax.face import plotting

        x = np.asarray(syncnet.video_input(batch["frames"][:4], self.spec))
        x = np.clip((x + 1.0) * 127.5, 0, 255).astype(np.uint8)
        return {"mouth_windows": plotting.image_grid([list(row) for row in x])[None]}


def validation_metrics(task: SyncNetTask, state: TrainState, data) -> dict[str, float]:
    """The expert's held-out metrics on `data`'s eval split (`config.data.eval_split`; what the trainer logs
    at its last step): accuracy, rank_accuracy, distances, loss, plus step and windows; {} without one."""
    from thflax.training import parallel, trainer

    eval_batches = data.eval()
    if not eval_batches:
        return {}
    mesh = parallel.make_mesh()
    scalars, _ = trainer.evaluate(state, [parallel.global_batch(b, mesh) for b in eval_batches],
                                  parallel.data_parallel_eval(task.eval_step, mesh))
    return {**scalars, "step": int(np.asarray(state.step)), "windows": int(sum(len(b["mask"]) for b in eval_batches))}


def train_expert(config, workdir: str, builder=None) -> dict[str, float]:
    """Trains the expert into <workdir>/syncnet (resuming from its checkpoints; a finished one is only
    restored), writes its validation metrics to <workdir>/syncnet/validation.json and returns them."""
    from input_pipeline import pipeline
    from thflax.io import files
    from thflax.training import tasks, trainer

    task = tasks.get_task(config, NET)
    data = pipeline.StageData(config, task, builder)
    state = trainer.train_stage(config, workdir, task, data)
    metrics = validation_metrics(task, state, data)
    files.atomic_write(os.path.join(workdir, NET, VALIDATION_FILE),
                       json.dumps({"split": config.data.eval_split, "data": config.data.name, **metrics},
                                  indent=1).encode())
    return metrics


def main(argv) -> int:
    """The command line: trains on `config.data`'s training split and reports the validation accuracy."""
    import time

    from absl import flags

    del argv
    config = flags.FLAGS.config
    workdir = os.path.abspath(flags.FLAGS.workdir)
    t0 = time.time()
    m = train_expert(config, workdir)
    took = (time.time() - t0) / 60
    if m:
        print(f"lip-sync expert: step {m['step']}, validation ({m['windows']} windows of {config.data.name}): "
              f"accuracy {m['accuracy']:.3f}, in-sync nearer than shifted {m['rank_accuracy']:.3f}, distances "
              f"{m['d_sync']:.2f} in sync vs {m['d_shifted']:.2f} shifted ({took:.1f} min) -> "
              f"{os.path.join(workdir, NET)}")
    else:
        print(f"lip-sync expert trained ({took:.1f} min) -> {os.path.join(workdir, NET)}; the dataset has no "
              f"validation split: no held-out accuracy")
    return 0


if __name__ == "__main__":
    from absl import flags

    from thflax import cli

    cli.define_config(os.path.join(os.path.dirname(cli.DEFAULT_CONFIG), "syncnet.py"), "Expert configuration.")
    flags.DEFINE_string("workdir", "runs/syncnet", "Where the checkpoints, TensorBoard events and validation.json go.")
    cli.run(main)
