"""Stage 2: training the LTV net (landmarks + reference frame -> frame). Pure functions over `TrainState`.

One train state holds both networks: `params`/`opt_state` are dicts with "generator" and
"discriminator", each with its own Adam (the paper: 1e-4). One step updates both (eq. 10,
L = L_d + L_g + L_mse): the generator runs forward once; the discriminator is updated on that batch's
fakes (BCE: real -> 1, fake -> 0), and the generator on the non-saturating BCE against the same
discriminator plus `mse_weight` · pixel MSE (and optional L1, mouth-region L1, mask, feature-matching and
perceptual terms, and the expert sync loss, `thflax.training.sync_loss`, off in the paper config):
`g_loss_terms` lists every generator term, each weighted by `config.ltv.<term>_weight`, and all
gradients come from `jax.value_and_grad` (adding a term is one line there). Gradients
are averaged over devices with `lax.pmean` (no masks here: every device holds the same number of
equally-weighted pairs, so the mean of means is the global mean). A non-finite loss or gradient
leaves both networks unchanged and reports `finite = 0`.

Batch (per device): reference, target [b, S, S, 3] uint8; landmarks, ref_landmarks [b, 68, 2]
normalised crop coordinates. Images are mapped to [-1, 1]; landmark sketches are drawn on the fly
(`thflax.face.sketch`), so the dataset stores landmarks only. With `config.ltv.sync_weight` > 0 a training
batch also has sync_landmarks [b, 5, 68, 2] (5 consecutive frames around the target), sync_mfcc
[b, 2·max_shift + 1, 20, n_mfcc] and sync_valid [b, 2·max_shift + 1] (`sync_windows`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from thflax.training import losses, sync_loss
from thflax.measures import metrics
from thflax.face import eyes, sketch, warp
from thflax.errors import InputError
from thflax.io.images import to_uint8, to_unit
from thflax.models import build, face_features, ltv, syncnet
from thflax.training.parallel import AXIS
from thflax.training.train_state import TrainState, all_finite, ema_update, make_optimizer, select

G, D = "generator", "discriminator"


class LTVTask:
    """The LTV stage (a `thflax.training.tasks.Task`)."""

    name = "ltv"

    def __init__(self, config):
        self.config = config
        c = config.ltv
        self.size = int(c.image_size)
        self.generator = build.build_generator(config)
        self.discriminator = build.build_discriminator(config)
        self.tx = {n: make_optimizer(c.learning_rate, b1=c.adam_b1, grad_clip=c.grad_clip) for n in (G, D)}
        # A frozen face feature network trained on this corpus (thflax.training.face_features), for the perceptual term.
        self.perceptual = face_features.load(c.perceptual_net, self.size) if c.perceptual_weight else None
        # The frozen lip-sync expert of the sync loss (refused in one line if missing or reading other crops).
        self.expert = sync_loss.load_expert(config) if c.sync_weight else None

    def signature(self) -> dict[str, Any]:
        return build.signature(self.config, self.name)

    def check_data(self, metadata) -> None:
        size = int(metadata["crop_size"])
        if size != self.size:
            raise InputError(f"config.ltv.image_size={self.size} but the dataset has {size}x{size} crops; "
                             f"set --config.ltv.image_size={size} or pick a dataset with {self.size}x{self.size} crops")

    # ---- tf.data elements ------------------------------------------------------------------------
    def features(self, train: bool) -> tuple[str, ...]:
        return ("frames", "landmarks") + (("mfcc",) if train and self.config.ltv.sync_weight else ())

    def elements_per_example(self, train: bool) -> int:
        return int(self.config.ltv.pairs_per_example) if train else 1

    def elements(self, example, seed, train: bool):
        """(reference, target) frame pairs of one utterance, each target with a different reference frame.

        reference, target [P, S, S, 3] uint8; landmarks, ref_landmarks [P, 68, 2] normalised.
        """
        import tensorflow as tf

        pairs = self.elements_per_example(train)
        n = tf.shape(example["landmarks"])[0]
        s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        tgt = tf.random.stateless_uniform([pairs], s1, 0, n, tf.int32)
        share = float(self.config.ltv.closed_eye_share) if train else 0.0
        if share > 0:  # off: no extra draw, the stream stays the one without it
            tgt = closed_eye_targets(example["landmarks"], tgt, share, seed)
        # A different frame of the same utterance (identical pairs teach nothing and make PSNR infinite).
        ref = (tgt + tf.random.stateless_uniform([pairs], s2, 1, tf.maximum(n, 2), tf.int32)) % n
        dec = lambda i: tf.io.decode_jpeg(tf.gather(example["frames"], i), channels=3)  # noqa: E731
        out = {"reference": tf.map_fn(dec, ref, fn_output_signature=tf.uint8),
               "target": tf.map_fn(dec, tgt, fn_output_signature=tf.uint8),
               "landmarks": tf.gather(example["landmarks"], tgt),
               "ref_landmarks": tf.gather(example["landmarks"], ref)}
        if train and self.config.ltv.sync_weight:
            out.update(sync_windows(example, tgt, int(self.config.syncnet.max_shift)))
        return out

    def _sketch(self, batch):
        """The target landmarks' sketch [b, S, S, C]: the discriminator's condition (and the generator's)."""
        return sketch.draw_sketch(batch["landmarks"], self.size)

    def generate(self, params, reference, batch, target_sketch):
        """Generator forward: (image [-1, 1], mask) for reference [b, S, S, 3] in [-1, 1] and the batch's
        landmarks. The target sketch drawn for the discriminator is passed on, not drawn twice."""
        return self.generator.apply({"params": params}, reference, batch["ref_landmarks"], batch["landmarks"],
                                    target_sketch=target_sketch)

    # ---- state -----------------------------------------------------------------------------------
    def init_state(self, rng: jax.Array) -> TrainState:
        g_rng, d_rng, s_rng = jax.random.split(rng, 3)
        gp = build.init_generator(self.config, g_rng)["params"]
        ref, sk, _ = ltv.dummy_inputs(self.size)
        dp = jax.jit(lambda k: self.discriminator.init(k, ref, sk))(d_rng)["params"]
        params = {G: gp, D: dp}
        # A copy: the state is donated to the step, and one buffer cannot be donated twice.
        ema = {G: jax.tree.map(jnp.copy, gp)} if self.config.ltv.ema_decay else {}
        return TrainState(step=jnp.array(0, jnp.int32), params=params, batch_stats={},
                          opt_state={G: self.tx[G].init(gp), D: self.tx[D].init(dp)}, ema_params=ema,
                          rng=jax.random.key_data(s_rng))

    # ---- the per-device train step ---------------------------------------------------------------
    def g_loss_terms(self, fake, mask, target, disc_logits, landmarks, fm=None) -> dict[str, jax.Array]:
        """Every generator loss term (unweighted); `generator_loss` weights them by config.ltv.<term>_weight.

        landmarks: the target's [b, 68, 2] (normalised), for the mouth term (when its weight is on).
        fm: the discriminator's (fake, real) activations, when the feature-matching term is on."""
        terms = {"gan": losses.g_loss(disc_logits),
                 "mse": jnp.mean(jnp.square(fake - target)),
                 "l1": jnp.mean(jnp.abs(fake - target)),
                 # L1 on the attention mask: where the generator cannot beat the reference's own pixels,
                 # copying them is preferred (weight 0 in the paper config).
                 "mask": jnp.mean(mask)}
        if fm is not None:
            terms["fm"] = losses.feature_matching(*fm)
        if self.perceptual is not None:
            terms["perceptual"] = face_features.distance(self.perceptual, fake, target)
        if self.config.ltv.mouth_weight:
            # The mouth is ~1-2 % of the crop: in the whole-image terms an unpainted (warped, closed)
            # mouth costs almost nothing, so the network learns to leave it to the warp. This term is
            # the L1 inside the target's outer lip contour, averaged over that region only.
            lips = metrics.polygon_mask(landmarks[:, metrics.OUTER_LIP], fake.shape[1])[..., None]
            terms["mouth"] = jnp.sum(jnp.abs(fake - target) * lips) / (3.0 * jnp.maximum(jnp.sum(lips), 1.0))
        if self.config.ltv.eyes_weight:
            # A warp can only squeeze the open eye into a slit; a closed lid must be painted, and blink
            # frames are a few % of the corpus, each eye ~1 % of the crop. L1 over both lid regions
            # (brow to lower lid: their area stays when the eye closes), averaged over them.
            lids = sum(metrics.polygon_mask(landmarks[:, list(region)], fake.shape[1])
                       for region in (eyes.RIGHT_LID_REGION, eyes.LEFT_LID_REGION))[..., None]
            lids = jnp.minimum(lids, 1.0)
            terms["eyes"] = jnp.sum(jnp.abs(fake - target) * lids) / (3.0 * jnp.maximum(jnp.sum(lids), 1.0))
        return terms

    def generate_with_windows(self, params, reference, batch, target_sketch):
        """`generate` for the pairs, and the sync loss's windows: (image, mask) [b, ...] of the pairs, and the
        windows' frames [b, 5, S, S, 3] in [-1, 1], each window's five from its pair's reference (as generation
        makes every frame of a video from one photo).

        One generator call for both (it has no batch statistics: the pairs' images are those `generate` makes),
        because two batched TPS solves side by side (the warp generator's LU custom calls, each splitting its
        batch over XLA:CPU's thread pool) deadlocked the step on a 2-core machine."""
        b, k = reference.shape[0], syncnet.FRAMES
        lms = batch["sync_landmarks"].reshape((b * k,) + batch["sync_landmarks"].shape[2:])  # [b·5, 68, 2]
        both = lambda x, y: jnp.concatenate([x, y], 0)  # noqa: E731
        fake, mask = self.generator.apply(
            {"params": params}, both(reference, jnp.repeat(reference, k, 0)),
            both(batch["ref_landmarks"], jnp.repeat(batch["ref_landmarks"], k, 0)), both(batch["landmarks"], lms),
            target_sketch=both(target_sketch, sketch.draw_sketch(lms, self.size)))
        return fake[:b], mask[:b], fake[b:].reshape((b, k) + fake.shape[1:])

    def sync_term(self, frames, batch) -> jax.Array:
        """The expert sync loss, mean over the batch, of generated windows [b, 5, S, S, 3] in [-1, 1]."""
        return jnp.mean(sync_loss.sync_loss(self.expert, frames, batch["sync_mfcc"], batch["sync_valid"],
                                            int(self.config.syncnet.min_shift)))

    def train_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        del rng  # no stochastic layers
        c = self.config.ltv
        ref, tgt = to_unit(batch["reference"]), to_unit(batch["target"])
        sk = self._sketch(batch)
        gp, dp = state.params[G], state.params[D]
        disc = lambda p, img, **kw: self.discriminator.apply({"params": p}, img, sk, **kw)  # noqa: E731

        def generator_loss(p):
            if c.sync_weight:
                fake, mask, windows = self.generate_with_windows(p, ref, batch, sk)
            else:
                fake, mask = self.generate(p, ref, batch, sk)
            if c.fm_weight:  # the discriminator's activations on the fake and (no gradient) the real image
                logits, fake_feats = disc(dp, fake, features=True)
                fm = (fake_feats, disc(dp, tgt, features=True)[1])
            else:
                logits, fm = disc(dp, fake), None
            terms = self.g_loss_terms(fake, mask, tgt, logits, batch["landmarks"], fm)
            if c.sync_weight:
                terms["sync"] = self.sync_term(windows, batch)
            # Each term's weight is config.ltv.<term>_weight, read by its name (no second list to keep in step).
            return sum(c[f"{k}_weight"] * v for k, v in terms.items()), (terms, fake)

        def discriminator_loss(p, fake):
            return losses.d_loss(disc(p, tgt), disc(p, fake))

        # The generator runs forward once; the discriminator sees its output without a path back into it.
        (loss_g, (terms, fake)), grad_g = jax.value_and_grad(generator_loss, has_aux=True)(gp)
        loss_d, grad_d = jax.value_and_grad(discriminator_loss)(dp, lax.stop_gradient(fake))
        grad_g, grad_d = lax.pmean(grad_g, AXIS), lax.pmean(grad_d, AXIS)
        loss_d, loss_g, terms = lax.pmean((loss_d, loss_g, terms), AXIS)

        upd_g, opt_g = self.tx[G].update(grad_g, state.opt_state[G], gp)
        upd_d, opt_d = self.tx[D].update(grad_d, state.opt_state[D], dp)
        new_g = optax.apply_updates(gp, upd_g)
        new = state.replace(params={G: new_g, D: optax.apply_updates(dp, upd_d)}, opt_state={G: opt_g, D: opt_d})
        if c.ema_decay:
            new = new.replace(ema_params={G: ema_update(state.ema_params[G], new_g, c.ema_decay)})
        ok = jnp.isfinite(loss_d) & jnp.isfinite(loss_g) & all_finite(grad_g, grad_d)
        new = select(ok, new, state).replace(step=state.step + 1)
        psnr = lax.pmean(jnp.mean(metrics.psnr(to_uint8(fake), to_uint8(tgt))), AXIS)
        out = {"loss": loss_g + loss_d, "loss_d": loss_d, "loss_g": loss_g, "loss_g_gan": terms["gan"],
               "mse": terms["mse"], "mask_mean": terms["mask"], "psnr": psnr, "finite": ok.astype(jnp.float32),
               "grad_norm_g": optax.global_norm(grad_g), "grad_norm_d": optax.global_norm(grad_d)}
        if "fm" in terms:
            out["loss_g_fm"] = terms["fm"]
        for term in ("mouth", "perceptual", "sync"):
            if term in terms:
                out[f"loss_g_{term}"] = terms[term]
        return new, out

    # ---- evaluation ------------------------------------------------------------------------------
    def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        """Held-out SSIM/PSNR vs the "reference frame unchanged" baseline, and attention concentration."""
        del rng
        gp = state.ema_params[G] if state.ema_params else state.params[G]
        ref = to_unit(batch["reference"])
        sk = self._sketch(batch)
        fake, mask = self.generate(gp, ref, batch, sk)
        out, tgt, ref8 = to_uint8(fake), jnp.asarray(batch["target"], jnp.float32), jnp.asarray(batch["reference"], jnp.float32)
        face = metrics.polygon_mask(batch["landmarks"][:, metrics.FACE_OUTLINE], self.size)[..., None]
        mouth = metrics.polygon_mask(batch["landmarks"][:, metrics.OUTER_LIP], self.size)[..., None]
        m = mask
        inside = jnp.sum(m * face, (1, 2, 3)) / jnp.maximum(jnp.sum(face, (1, 2, 3)), 1.0)
        outside = jnp.sum(m * (1 - face), (1, 2, 3)) / jnp.maximum(jnp.sum(1 - face, (1, 2, 3)), 1.0)
        mean = lambda v: lax.pmean(jnp.mean(v), AXIS)  # noqa: E731
        res = {"ssim": mean(metrics.ssim(out, tgt)), "psnr": mean(metrics.psnr(out, tgt)),
               "ssim_reference": mean(metrics.ssim(ref8, tgt)), "psnr_reference": mean(metrics.psnr(ref8, tgt)),
               "mask_face": mean(inside), "mask_background": mean(outside),
               # < 1: the output is blurrier than the truth (a painted face averages to grey).
               "sharpness": mean(metrics.laplacian_variance(out, face) / metrics.laplacian_variance(tgt, face)),
               # Inside the target's lips: what a warp of the reference cannot show (an opened mouth).
               "psnr_mouth": mean(metrics.masked_psnr(out, tgt, mouth)),
               "psnr_mouth_reference": mean(metrics.masked_psnr(ref8, tgt, mouth))}
        if self.generator.warp:
            # The floor a warp generator must beat: the reference moved by the spline alone (what the
            # generator outputs where its mask is off), with the same target landmarks.
            flow = warp.tps_flow(batch["ref_landmarks"], batch["landmarks"], self.size)
            warped = jnp.round(jnp.clip(warp.warp(ref8, flow), 0, 255))
            res.update(ssim_warp=mean(metrics.ssim(warped, tgt)), psnr_warp=mean(metrics.psnr(warped, tgt)),
                       psnr_mouth_warp=mean(metrics.masked_psnr(warped, tgt, mouth)),
                       sharpness_warp=mean(metrics.laplacian_variance(warped, face) /
                                           metrics.laplacian_variance(tgt, face)))
        return res, {"generated": out.astype(jnp.uint8), "mask": mask, "sketch": sketch.sketch_preview(sk)}

    def images(self, batch, out) -> dict[str, np.ndarray]:
        """reference | landmark sketch | generated | ground truth | attention mask, for 4 examples."""
        from thflax.face import plotting

        n = min(4, len(batch["reference"]))
        gray = lambda x: np.repeat(np.clip(np.asarray(x)[..., None] * 255, 0, 255).astype(np.uint8), 3, -1)  # noqa: E731
        cols = [np.asarray(batch["reference"][:n]), 255 - gray(out["sketch"][:n]), np.asarray(out["generated"][:n]),
                np.asarray(batch["target"][:n]), gray(np.asarray(out["mask"][:n, ..., 0]))]
        rows = [np.stack([c[i] for c in cols]) for i in range(n)]
        return {"ref_sketch_generated_true_mask": plotting.image_grid(rows)[None]}


def sync_windows(example, target, max_shift: int):
    """What the sync loss reads for each pair (tf.data): the 5 consecutive frames around its target frame (the
    target in the middle, the window moved inside the utterance near its ends) and the speech around them.

    example: an utterance (landmarks [n, 68, 2], mfcc [n, 20, n_mfcc]); target [P] int32 frame indices. Returns
    sync_landmarks [P, 5, 68, 2]; sync_mfcc [P, L, 20, n_mfcc], the MFCC windows of the frames middle - max_shift
    ... middle + max_shift (L = 2·max_shift + 1; index max_shift is in sync); sync_valid [P, L] float32, 0 for
    frames outside the utterance (their window repeats the nearest end's, and the loss leaves them out). No
    random draw: the pairs and the stream's other choices stay those of the stream without it.
    """
    import tensorflow as tf

    n = tf.shape(example["landmarks"])[0]
    half = syncnet.FRAMES // 2
    start = tf.clip_by_value(target - half, 0, tf.maximum(n - syncnet.FRAMES, 0))
    frames = tf.minimum(start[:, None] + tf.range(syncnet.FRAMES)[None, :], n - 1)  # [P, 5]
    audio = (start + half)[:, None] + tf.range(-max_shift, max_shift + 1)[None, :]  # [P, L]
    return {"sync_landmarks": tf.gather(example["landmarks"], frames),
            "sync_mfcc": tf.gather(example["mfcc"], tf.clip_by_value(audio, 0, n - 1)),
            "sync_valid": tf.cast((audio >= 0) & (audio < n), tf.float32)}


def closed_eye_targets(landmarks, target, share: float, seed):
    """Target frames [P] int32 with about `share` of them moved to frames of `landmarks` [n, 68, 2] whose eyes
    are closed (eye aspect ratio under `eyes.CLOSED_EAR_FRACTION` of the utterance's median), where it has any.

    Blinks are ~2 % of a corpus' frames and a warp cannot close an eye: the generator sees closed lids
    this much more often. Random numbers from `seed` folded with 1, apart from the stream's other draws.
    """
    import tensorflow as tf

    def dist(i, j):
        return tf.norm(tf.gather(landmarks, i, axis=1) - tf.gather(landmarks, j, axis=1), axis=-1)

    def ear(p):  # one eye's points p1..p6 (dlib order), per frame
        return (dist(p[1], p[5]) + dist(p[2], p[4])) / (2.0 * tf.maximum(dist(p[0], p[3]), 1e-6))

    ratio = 0.5 * (ear(eyes.RIGHT_EYE) + ear(eyes.LEFT_EYE))  # [n]
    n = tf.shape(ratio)[0]
    median = tf.sort(ratio)[n // 2]
    closed = tf.cast(tf.where(ratio < eyes.CLOSED_EAR_FRACTION * median)[:, 0], tf.int32)  # [k]
    k = tf.shape(closed)[0]
    s_pick, s_frame = tf.unstack(tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 1), 2))
    pairs = tf.shape(target)[0]
    pick = (tf.random.stateless_uniform([pairs], s_pick) < share) & (k > 0)
    j = tf.random.stateless_uniform([pairs], s_frame, 0, tf.maximum(k, 1), tf.int32)
    candidates = tf.concat([closed, target], 0)  # never empty: index 0 is valid even where k == 0
    return tf.where(pick, tf.gather(candidates, j), target)

