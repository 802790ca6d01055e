"""Stage 2: training the LTV net (landmarks + reference frame -> frame). Pure functions over `TrainState`.

One train state holds both networks: `params`/`opt_state` are dicts with "generator" and
"discriminator", each with its own Adam (the paper: 1e-4). One step updates both (eq. 10,
L = L_d + L_g + L_mse): the generator runs forward once; the discriminator is updated on that batch's
fakes (BCE: real -> 1, fake -> 0), and the generator on the non-saturating BCE against the same
discriminator plus `mse_weight` · pixel MSE (and optional L1, off in the paper config). Gradients
are averaged over devices with `lax.pmean` (no masks here: every device holds the same number of
equally-weighted pairs, so the mean of means is the global mean). A non-finite loss or gradient
leaves both networks unchanged and reports `finite = 0`.

Batch (per device): reference, target [b, S, S, 3] uint8; landmarks, ref_landmarks [b, 68, 2]
normalised crop coordinates. Images are mapped to [-1, 1]; landmark sketches are drawn on the fly
(`thflax.sketch`), so the dataset stores landmarks only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from thflax import losses, metrics, sketch
from thflax.models import ltv
from thflax.parallel import AXIS
from thflax.train_state import TrainState, all_finite, ema_update, make_optimizer, select

G, D = "generator", "discriminator"


def to_unit(images):
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def to_uint8(images):
    """float [-1, 1] -> float32 in [0, 255] rounded like a saved frame (metrics are computed on these)."""
    return jnp.round(jnp.clip((images + 1.0) * 127.5, 0.0, 255.0))


def make_generator(config) -> ltv.Generator:
    c = config.ltv
    dtype = jnp.bfloat16 if config.get("half_precision", False) else jnp.float32
    preset = c.generator if isinstance(c.generator, str) else dict(c.generator)
    return ltv.make_generator(preset, attention=bool(c.attention), dtype=dtype)


def make_discriminator(config) -> ltv.Discriminator:
    c = config.ltv
    dtype = jnp.bfloat16 if config.get("half_precision", False) else jnp.float32
    return ltv.Discriminator(base_channels=int(c.disc_channels), num_layers=int(c.disc_layers), dtype=dtype)


class LTVTask:
    """The LTV stage for the generic loop in `thflax.trainer`."""

    name = "ltv"

    def __init__(self, config):
        self.config = config
        c = config.ltv
        self.size = int(c.image_size)
        self.generator = make_generator(config)
        self.discriminator = make_discriminator(config)
        self.tx = {G: make_optimizer(c.learning_rate, b1=c.get("adam_b1", 0.9), grad_clip=c.get("grad_clip", 0.0)),
                   D: make_optimizer(c.learning_rate, b1=c.get("adam_b1", 0.9), grad_clip=c.get("grad_clip", 0.0))}

    def signature(self) -> dict[str, Any]:
        c = self.config.ltv
        g = c.generator if isinstance(c.generator, str) else c.generator.to_dict()
        return {"stage": "ltv", "generator": g, "attention": bool(c.attention), "image_size": self.size,
                "disc_channels": int(c.disc_channels), "disc_layers": int(c.disc_layers)}

    def check_data(self, builder) -> None:
        size = int(builder.info.metadata["crop_size"])
        if size != self.size:
            raise ValueError(f"config.ltv.image_size={self.size} but {builder.info.full_name} has {size}x{size} "
                             "crops; pick a matching dataset config or image size")

    def _sketches(self, batch):
        return (sketch.draw_sketch(batch["landmarks"], self.size),
                sketch.draw_sketch(batch["ref_landmarks"], self.size))

    def generate(self, params, reference, sk, ref_sk):
        """Generator forward: (image [-1, 1], mask)."""
        return self.generator.apply({"params": params}, reference, sk,
                                    reference_sketch=ref_sk if self.generator.use_reference_sketch else None)

    # ---- state -----------------------------------------------------------------------------------
    def init_state(self, rng: jax.Array) -> TrainState:
        g_rng, d_rng, s_rng = jax.random.split(rng, 3)
        gp = ltv.init_generator(self.generator, g_rng, self.size)["params"]
        ref, sk, _ = ltv.dummy_inputs(self.size)
        dp = jax.jit(lambda k: self.discriminator.init(k, ref, sk))(d_rng)["params"]
        params = {G: gp, D: dp}
        # A copy: the state is donated to the step, and one buffer cannot be donated twice.
        ema = {G: jax.tree.map(jnp.copy, gp)} if self.config.ltv.get("ema_decay", 0.0) else {}
        return TrainState(step=jnp.array(0, jnp.int32), params=params, batch_stats={},
                          opt_state={G: self.tx[G].init(gp), D: self.tx[D].init(dp)}, ema_params=ema,
                          rng=jax.random.key_data(s_rng))

    # ---- the per-device train step ---------------------------------------------------------------
    def train_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        del rng  # no stochastic layers
        c = self.config.ltv
        ref, tgt = to_unit(batch["reference"]), to_unit(batch["target"])
        sk, ref_sk = self._sketches(batch)
        gp, dp = state.params[G], state.params[D]
        disc = lambda p, img: self.discriminator.apply({"params": p}, img, sk)  # noqa: E731

        (fake, mask), g_vjp = jax.vjp(lambda p: self.generate(p, ref, sk, ref_sk), gp)

        def d_loss_fn(p):
            return losses.d_loss(disc(p, tgt), disc(p, lax.stop_gradient(fake)))

        loss_d, grad_d = jax.value_and_grad(d_loss_fn)(dp)

        def g_objective(img):
            gan = losses.g_loss(disc(dp, img))
            mse = jnp.mean(jnp.square(img - tgt))
            l1 = jnp.mean(jnp.abs(img - tgt))
            total = c.gan_weight * gan + c.mse_weight * mse + c.get("l1_weight", 0.0) * l1
            return total, (gan, mse)

        (loss_g, (gan, mse)), d_fake = jax.value_and_grad(g_objective, has_aux=True)(fake)
        # L1 on the attention mask (weight `mask_weight`, 0 in the paper config): where the generator
        # cannot beat the reference's own pixels, copying them is preferred.
        mask_w = float(c.get("mask_weight", 0.0))
        mask_l1 = jnp.mean(mask)
        loss_g = loss_g + mask_w * mask_l1
        (grad_g,) = g_vjp((d_fake, jnp.full(mask.shape, mask_w / mask.size, jnp.float32)))
        grad_g, grad_d = lax.pmean(grad_g, AXIS), lax.pmean(grad_d, AXIS)
        loss_d, loss_g, gan, mse, mask_l1 = (lax.pmean(v, AXIS) for v in (loss_d, loss_g, gan, mse, mask_l1))

        upd_g, opt_g = self.tx[G].update(grad_g, state.opt_state[G], gp)
        upd_d, opt_d = self.tx[D].update(grad_d, state.opt_state[D], dp)
        new_g = optax.apply_updates(gp, upd_g)
        new = state.replace(params={G: new_g, D: optax.apply_updates(dp, upd_d)}, opt_state={G: opt_g, D: opt_d})
        if c.get("ema_decay", 0.0):
            new = new.replace(ema_params={G: ema_update(state.ema_params[G], new_g, c.ema_decay)})
        ok = jnp.isfinite(loss_d) & jnp.isfinite(loss_g) & all_finite(grad_g, grad_d)
        new = select(ok, new, state).replace(step=state.step + 1)
        psnr = lax.pmean(jnp.mean(metrics.psnr(to_uint8(fake), to_uint8(tgt))), AXIS)
        out = {"loss": loss_g + loss_d, "loss_d": loss_d, "loss_g": loss_g, "loss_g_gan": gan, "mse": mse, "mask_mean": mask_l1,
               "psnr": psnr, "finite": ok.astype(jnp.float32), "grad_norm_g": optax.global_norm(grad_g),
               "grad_norm_d": optax.global_norm(grad_d)}
        return new, out

    # ---- evaluation ------------------------------------------------------------------------------
    def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        """Held-out SSIM/PSNR vs the "reference frame unchanged" baseline, and attention concentration."""
        del rng
        gp = state.ema_params[G] if state.ema_params else state.params[G]
        ref = to_unit(batch["reference"])
        sk, ref_sk = self._sketches(batch)
        fake, mask = self.generate(gp, ref, sk, ref_sk)
        out, tgt, ref8 = to_uint8(fake), jnp.asarray(batch["target"], jnp.float32), jnp.asarray(batch["reference"], jnp.float32)
        face = metrics.polygon_mask(batch["landmarks"][:, metrics.FACE_OUTLINE], self.size)[..., None]
        m = mask
        inside = jnp.sum(m * face, (1, 2, 3)) / jnp.maximum(jnp.sum(face, (1, 2, 3)), 1.0)
        outside = jnp.sum(m * (1 - face), (1, 2, 3)) / jnp.maximum(jnp.sum(1 - face, (1, 2, 3)), 1.0)
        mean = lambda v: lax.pmean(jnp.mean(v), AXIS)  # noqa: E731
        res = {"ssim": mean(metrics.ssim(out, tgt)), "psnr": mean(metrics.psnr(out, tgt)),
               "ssim_reference": mean(metrics.ssim(ref8, tgt)), "psnr_reference": mean(metrics.psnr(ref8, tgt)),
               "mask_face": mean(inside), "mask_background": mean(outside)}
        return res, {"generated": out.astype(jnp.uint8), "mask": mask, "sketch": sketch.sketch_preview(sk)}

    def images(self, batch, out) -> dict[str, np.ndarray]:
        """reference | landmark sketch | generated | ground truth | attention mask, for 4 examples."""
        from thflax import plotting

        n = min(4, len(batch["reference"]))
        gray = lambda x: np.repeat(np.clip(np.asarray(x)[..., None] * 255, 0, 255).astype(np.uint8), 3, -1)  # noqa: E731
        cols = [np.asarray(batch["reference"][:n]), 255 - gray(out["sketch"][:n]), np.asarray(out["generated"][:n]),
                np.asarray(batch["target"][:n]), gray(np.asarray(out["mask"][:n, ..., 0]))]
        rows = [np.stack([c[i] for c in cols]) for i in range(n)]
        return {"ref_sketch_generated_true_mask": plotting.image_grid(rows)[None]}
