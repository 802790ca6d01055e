"""The lip-sync expert (SyncNet, `thflax.models.syncnet`) trained on the corpus's training split: a stage of
its own (`tasks.STAGES["syncnet"]`, not part of "all"), and its command:

    python -m thflax.training.syncnet_stage --config configs/syncnet.py --workdir runs/syncnet

It writes <workdir>/syncnet/{checkpoints, TensorBoard events} through the shared loop (`trainer.train_stage`:
exact resume, config signature checks), then the validation metrics to <workdir>/syncnet/validation.json.
`export.py --workdir <workdir>` bundles it with the other stages' parameters;
`thflax.measures.lip_sync_expert` loads it from either.

Training (contrastive, multi-way: Chung, Chung & Kang 2019, "Perfect match", the recipe of SyncNet's
second version): a clip of `clip_frames` consecutive frames of one utterance and the 0.2 s of MFCC around
each of its frames; `windows_per_clip` windows of 5 frames, evenly spaced in the clip, are each compared
with the audio windows of the clip at every shift within ±`max_shift` frames, the in-sync one and those
shifted by at least `min_shift` (nearer ones share most of their frames and sound); the loss is the
cross-entropy of a softmax over minus the Euclidean distances, the in-sync audio being the answer. So the
expert learns what LSE-C / LSE-D read off it: the in-sync distance lowest among the offsets of ±15 frames.
Held-out metrics: `accuracy` (the in-sync audio nearest among a window's candidates; chance ~1/25) and
`rank_accuracy` (in-sync nearer than a given shifted candidate; chance 0.5).

Batch (per device): frames [b, L, S, S, 3] uint8 (a clip of L face crops); audio [b, L, n_mfcc, 20] f32
(frame f's MFCC window, the audio of the video window centred on f); valid [b, L] f32 (0 past the
utterance's end, where the clip repeats its last frame).
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


def window_starts(clip_frames: int, windows: int) -> np.ndarray:
    """First frames [W] of the clip's video windows, evenly spaced from 0 to clip_frames - 5."""
    return np.round(np.linspace(0, clip_frames - syncnet.FRAMES, windows)).astype(np.int32)


def candidates(clip_frames: int, windows: int, min_shift: int, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """(allowed [W, L] bool: audio window j is a candidate of video window i, target [W] int: the in-sync
    j, the window's middle frame). Candidates: shift j - target[i] = 0 or min_shift <= |shift| <= max_shift."""
    target = window_starts(clip_frames, windows) + syncnet.FRAMES // 2
    shift = np.abs(np.arange(clip_frames)[None, :] - target[:, None])
    return (shift <= max_shift) & ((shift == 0) | (shift >= min_shift)), target


def multiway_terms(video: jax.Array, audio: jax.Array, allowed: jax.Array, target: np.ndarray):
    """Per window: (cross-entropy [b, W] of the softmax over minus the distances to its candidates, the
    distances [b, W, L]). video [b, W, E], audio [b, L, E], allowed [b, W, L].

    One more candidate is always there: the zero vector, which LSE's distances use for the audio past
    either end of a video (syncnet_python pads with zeros). Unless the in-sync audio is nearer than it,
    offsets that reach past the ends would look in sync (measured: without it, copied frames scored an
    LSE-D below the real video's, their best offset at ±13-15)."""
    d = jnp.sqrt(jnp.sum(jnp.square(video[:, :, None, :] - audio[:, None, :, :]), -1) + 1e-12)
    d_zero = jnp.sqrt(jnp.sum(jnp.square(video), -1) + 1e-12)[..., None]  # [b, W, 1]
    logits = jnp.concatenate([jnp.where(allowed, -d, -jnp.inf), -d_zero], axis=-1)
    logp = jax.nn.log_softmax(logits, axis=-1)
    ce = -jnp.take_along_axis(logp, jnp.asarray(target)[None, :, None], axis=-1)[..., 0]
    return ce, d


def augment(frames: jax.Array, rng: jax.Array, shift: int) -> jax.Array:
    """Each clip [b, L, H, W, 3] (in [-1, 1]) moved by up to `shift` px each way (edge pixels repeated),
    mirrored left-right with probability 1/2, and its brightness and contrast scaled by up to ±20 %: the
    same for every frame of a clip, so timing is untouched and the mouth's place and look are not cues."""
    b, length, h, w, _ = frames.shape
    k_xy, k_flip, k_gain, k_bias = jax.random.split(rng, 4)
    xy = jax.random.randint(k_xy, (b, 2), 0, 2 * shift + 1)
    padded = jnp.pad(frames, ((0, 0), (0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    moved = jax.vmap(lambda clip, o: lax.dynamic_slice(clip, (0, o[0], o[1], 0), (length, h, w, 3)))(padded, xy)
    flip = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1, 1))
    moved = jnp.where(flip, moved[:, :, :, ::-1], moved)
    gain = jax.random.uniform(k_gain, (b, 1, 1, 1, 1), minval=0.8, maxval=1.2)
    bias = jax.random.uniform(k_bias, (b, 1, 1, 1, 1), minval=-0.2, maxval=0.2)
    return jnp.clip(moved * gain + bias, -1.0, 1.0)


class SyncNetTask:
    """The lip-sync expert's stage (a `thflax.training.tasks.Task`)."""

    name = NET

    def __init__(self, config):
        self.config = config
        c = config.syncnet
        if not 0 < int(c.min_shift) <= int(c.max_shift):
            raise InputError(f"config.syncnet needs 0 < min_shift <= max_shift (got {c.min_shift}, {c.max_shift})")
        if int(c.clip_frames) < syncnet.FRAMES + int(c.min_shift) or int(c.windows_per_clip) < 1:
            raise InputError(f"config.syncnet.clip_frames={c.clip_frames} leaves no shifted audio for a window "
                             f"(needs at least {syncnet.FRAMES + int(c.min_shift)}), or windows_per_clip < 1")
        self.model = build.build_syncnet(config, bn_axis_name=AXIS)
        self.infer_model = build.build_syncnet(config)
        self.spec = build.syncnet_input(config)
        self.tx = make_optimizer(c.learning_rate, grad_clip=c.grad_clip)
        self.starts = window_starts(int(c.clip_frames), int(c.windows_per_clip))
        self.allowed, self.target = candidates(int(c.clip_frames), int(c.windows_per_clip), int(c.min_shift),
                                               int(c.max_shift))

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
    def features(self, train: bool) -> tuple[str, ...]:
        del train
        return ("frames", "mfcc")

    def elements_per_example(self, train: bool) -> int:
        del train
        return 1

    def elements(self, example, seed, train: bool):
        """One clip of `clip_frames` consecutive frames at a random start, with each frame's MFCC window.

        frames [1, L, S, S, 3] uint8, audio [1, L, n_mfcc, 20] f32, valid [1, L] f32 (0 where the utterance
        is shorter than the clip: its last frame and window repeat there)."""
        import tensorflow as tf

        del train  # the same sampling for training and held-out clips (eval uses its own seeds)
        c = self.config.syncnet
        length, n_mfcc = int(c.clip_frames), int(c.n_mfcc)
        mfcc = example["mfcc"]
        n = tf.shape(mfcc)[0]
        s1, _ = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        start = tf.random.stateless_uniform([], s1, 0, tf.maximum(n - length, 0) + 1, tf.int32)
        idx = tf.minimum(start + tf.range(length), n - 1)
        frames = tf.map_fn(lambda j: tf.io.decode_jpeg(j, channels=3), tf.gather(example["frames"], idx),
                           fn_output_signature=tf.uint8)
        audio = tf.transpose(tf.gather(mfcc, idx)[:, :, :n_mfcc], [0, 2, 1])  # [L, n_mfcc, 20]
        valid = tf.cast(start + tf.range(length) < n, tf.float32)
        return {"frames": frames[None], "audio": audio[None], "valid": valid[None]}

    # ---- state -----------------------------------------------------------------------------------
    def init_state(self, rng: jax.Array) -> TrainState:
        init_rng, state_rng = jax.random.split(rng)
        variables = build.init_syncnet(self.config, init_rng)
        params = {NET: variables["params"]}
        # A copy: the state is donated to the step, and one buffer cannot be donated twice.
        ema = jax.tree.map(jnp.copy, params) if self.config.syncnet.ema_decay else {}
        return TrainState(step=jnp.array(0, jnp.int32), params=params, batch_stats={NET: variables.get("batch_stats", {})},
                          opt_state={NET: self.tx.init(params[NET])}, ema_params=ema,
                          rng=jax.random.key_data(state_rng))

    def _forward(self, model, variables, batch, train: bool, rng: jax.Array | None = None):
        """(cross-entropy [b, W], distances [b, W, L], allowed [b, W, L], window weights [b, W]) and, when
        training, the new BatchNorm statistics. With `rng`, the clips are augmented (`augment`)."""
        b, length = batch["valid"].shape
        frames = syncnet.video_input(batch["frames"], self.spec)  # [b, L, H, W, 3]
        if rng is not None:
            frames = augment(frames, rng, int(self.config.syncnet.augment_shift))
        idx = self.starts[:, None] + np.arange(syncnet.FRAMES)[None, :]  # [W, 5]
        windows = frames[:, idx].reshape((-1, syncnet.FRAMES) + frames.shape[2:])  # [b·W, 5, H, W, 3]
        audio = batch["audio"].reshape((b * length,) + batch["audio"].shape[2:])
        if train:
            (a, v), upd = model.apply(variables, audio, windows, train=True, mutable=["batch_stats"])
        else:
            (a, v), upd = model.apply(variables, audio, windows), None
        valid = batch["valid"]
        allowed = jnp.asarray(self.allowed)[None] & (valid[:, None, :] > 0)
        weight = valid[:, self.starts + syncnet.FRAMES - 1]  # the window's frames all inside the utterance
        ce, d = multiway_terms(v.reshape(b, len(self.starts), -1), a.reshape(b, length, -1), allowed, self.target)
        return (ce, d, allowed, weight), upd

    def _metrics(self, ce, d, allowed, weight) -> dict[str, jax.Array]:
        count = jnp.maximum(lax.psum(weight.sum(), AXIS), 1.0)
        g = lambda x: lax.psum(jnp.sum(x * weight), AXIS) / count  # noqa: E731 - global mean over windows
        d_sync = jnp.take_along_axis(d, jnp.asarray(self.target)[None, :, None], axis=-1)[..., 0]  # [b, W]
        others = allowed & (jnp.arange(d.shape[-1])[None, None, :] != jnp.asarray(self.target)[None, :, None])
        n_others = jnp.maximum(others.sum(-1), 1)
        nearest = jnp.min(jnp.where(others, d, jnp.inf), -1)
        return {"loss": g(ce), "accuracy": g((d_sync < nearest).astype(jnp.float32)),
                "rank_accuracy": g(jnp.sum((d_sync[..., None] < d) & others, -1) / n_others),
                "d_sync": g(d_sync), "d_shifted": g(jnp.sum(jnp.where(others, d, 0.0), -1) / n_others),
                "candidates": g(others.sum(-1).astype(jnp.float32) + 1.0)}

    # ---- the per-device train step ---------------------------------------------------------------
    def train_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        c = self.config.syncnet
        rng = jax.random.fold_in(rng, lax.axis_index(AXIS))  # each device its own augmentation
        count = jnp.maximum(lax.psum(batch["valid"][:, self.starts + syncnet.FRAMES - 1].sum(), AXIS), 1.0)

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats[NET]}
            (ce, d, allowed, weight), upd = self._forward(self.model, variables, batch, train=True, rng=rng)
            # (GroupNorm experts have no statistics: their collection stays empty.)
            return jnp.sum(ce * weight) / count, (upd.get("batch_stats", {}), ce, d, allowed, weight)

        (loss, (new_bs, ce, d, allowed, weight)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params[NET])
        grads, loss = lax.psum(grads, AXIS), lax.psum(loss, AXIS)
        updates, opt_state = self.tx.update(grads, state.opt_state[NET], state.params[NET])
        params = optax.apply_updates(state.params[NET], updates)
        new = state.replace(params={NET: params}, batch_stats={NET: new_bs}, opt_state={NET: opt_state})
        if c.ema_decay:
            new = new.replace(ema_params={NET: ema_update(state.ema_params[NET], params, c.ema_decay)})
        ok = jnp.isfinite(loss) & all_finite(grads)
        new = select(ok, new, state).replace(step=state.step + 1)
        return new, {**self._metrics(ce, d, allowed, weight), "loss": loss, "finite": ok.astype(jnp.float32),
                     "grad_norm": optax.global_norm(grads)}

    # ---- evaluation ------------------------------------------------------------------------------
    def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        """Held-out accuracy (in-sync audio nearest among a window's candidates), ranking accuracy, mean
        distances and loss; per clip its windows' distances to every audio window."""
        del rng
        params = state.ema_params[NET] if state.ema_params else state.params[NET]
        variables = {"params": params, "batch_stats": state.batch_stats[NET]}
        (ce, d, allowed, weight), _ = self._forward(self.infer_model, variables, batch, train=False)
        return self._metrics(ce, d, allowed, weight), {"distances": d}

    def images(self, batch, outputs) -> dict[str, np.ndarray]:
        """The mouth regions the expert reads: the first 5 frames of up to 4 held-out clips, one row each."""
        x = np.asarray(syncnet.video_input(batch["frames"][:4, :syncnet.FRAMES], self.spec))
        x = np.clip((x + 1.0) * 127.5, 0, 255).astype(np.uint8)
        from thflax.face import plotting

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
    windows = sum(int(np.sum(np.asarray(b["valid"])[:, task.starts + syncnet.FRAMES - 1])) for b in eval_batches)
    return {**scalars, "step": int(np.asarray(state.step)), "windows": windows}


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
              f"accuracy {m['accuracy']:.3f} (in-sync audio nearest of {m['candidates']:.0f} offsets; chance "
              f"{1 / m['candidates']:.2f}), in-sync nearer than a shifted one {m['rank_accuracy']:.3f} (chance 0.5), "
              f"distances {m['d_sync']:.2f} in sync vs {m['d_shifted']:.2f} shifted ({took:.1f} min) -> "
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
