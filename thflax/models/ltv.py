"""LTV net (paper §3.2, eq. 8–10, Figure 2): landmark sketch + reference frame -> talking-head frame.

Generator (`Generator`, a UNet with the paper's attention, eq. 8–9)
-------------------------------------------------------------------
Inputs: `reference` [B, S, S, 3] in [-1, 1] (a frame of the person: identity and background),
`sketch` [B, S, S, C] of the TARGET landmarks (`thflax.face.sketch.draw_sketch`, C = 6) and, when
`use_reference_sketch` (default), `reference_sketch` [B, S, S, C], the sketch of the reference frame's own
landmarks. Knowing where the face *was* in the reference lets the net relate reference appearance to the
target geometry (which parts must move where) instead of having to find the face in the image first; it
costs nothing per generated frame because it only enters the cached reference encoder.

With `attention=True` (the paper) there are three encoders with the same level structure (level 0 at
resolution S / `patch`, each further level halves it with a stride-2 convolution):

* f_img, the image encoder, on concat(reference, reference_sketch) -> r_0 .. r_D;
* the background branch, its own encoder on the reference image -> b_0 .. b_D;
* f(L), the landmark encoder, on the target sketch -> l_0 .. l_D.

At every level i a spatial attention mask m_i = sigmoid(conv3x3(l_i)) ∈ [0, 1]^{h×w×1} gates the
reference features: face_i = r_i ⊙ m_i (eq. 9) and background_i = b_i ⊙ (1 − m_i); the skip feature is
s_i = act(conv1x1(concat(face_i, background_i, l_i))). The decoder starts from s_D (plus
`bottleneck_blocks` residual blocks), and at each level upsamples (2×2 stride-2 transposed convolution or
nearest-resize + 3×3 convolution, `upsample`), concatenates s_i and convolves; a last 3×3 convolution
gives the frame through tanh, in [-1, 1]. The level-0 mask m_0 is returned, resized to S×S (bilinear)
when `patch` > 1, so it can be logged. With `compose_output` (default) the same mask also composes the
output at pixel level, out = m_0 ⊙ decoded + (1 − m_0) ⊙ reference: the background branch carries the
reference's pixels as well as its features (our reading of Figure 2, "the background part of the input
reference image is introduced through another branch"), so the background is copied exactly and the
decoder's capacity goes to the face; the mask learns to cover what has to change.

`patch` > 1 removes the full-resolution layers: the encoders' stems are (2·patch)×(2·patch) convolutions
with stride `patch`, and the decoder's last convolution predicts patch²·3 values per position that
depth-to-space rearranges into the S×S frame, so no convolution runs at full resolution, where they
cost the most. (Why the inputs are not space-to-depth transformed instead: BENCHMARKS.md, "Design
measurements moved from docstrings".)

With `attention=False` (the paper's "w/o Attention" ablation) a single encoder takes
concat(reference, [reference_sketch,] sketch) and its features are the decoder's skips directly; the
returned mask is all ones (every feature passes, i.e. m ≡ 1), so logging code needs no special case.

Normalisation: GroupNorm (`norm="group"`, `norm_groups` groups) or none (`norm="none"`), never BatchNorm:
no batch statistics, so the params pytree is the only variable collection and the GAN train step needs
no cross-device state; outputs do not depend on the other frames of the batch. GroupNorm is applied after
the stride-2 and decoder convolutions from level `norm_from_level` (default 1) on, so the highest-
resolution level, which mostly carries pixel-aligned detail, is left unnormalised; stems and output layers
are never normalised.

Mixed precision: `dtype` is the computation dtype (e.g. jnp.bfloat16); parameters are always `param_dtype`
(float32). The returned image and mask are float32.

Generation with a fixed reference: `encode_reference(reference, reference_sketch)` returns the reference
features (a pytree) and `decode(ref_features, sketch)` returns (image, mask) with
`decode(encode_reference(r, rs), s) == __call__(r, s, reference_sketch=rs)` exactly (the same ops). Use
`model.apply(variables, ..., method=Generator.encode_reference)` / `method=Generator.decode`. Only the
landmark encoder and the decoder run per frame. (With attention=False the "features" are the inputs.)

Discriminator (`Discriminator`): a PatchGAN on concat(image, sketch) -> stride-2 4×4 convolutions ->
[B, S / 2^num_layers, S / 2^num_layers, 1] logits (no sigmoid: the BCE-with-logits of eq. 10 is in the loss).

FLOPs: `generator_flops(config, size)` lowers the jitted forward and reads XLA's cost analysis
(`thflax.models.flops.lowered_flops`). `GENERATOR_PRESETS` holds the named configurations;
`benchmarks/bench_generator.py` measures their speeds (results in BENCHMARKS.md).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from thflax.models.flops import lowered_flops
from thflax.face.sketch import NUM_SKETCH_CHANNELS

Dtype = Any

#: Named generator configurations (dicts of `Generator` fields). See `benchmarks/bench_generator.py`.
#: "fast" is the default inference configuration; "paper" a heavier, higher-quality one; "tiny" is for tests.
GENERATOR_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(base_channels=8, depth=2, max_channels=16, patch=1, bottleneck_blocks=0),
    "fast": dict(base_channels=24, depth=4, max_channels=128, patch=2, bottleneck_blocks=2,
                 norm_from_level=1),
    "paper": dict(base_channels=32, depth=5, max_channels=256, patch=1, bottleneck_blocks=2,
                  convs_per_level=1, norm_from_level=1),
    # "fast" on the reference warped to the target landmarks (see `Generator.warp`). Its masks start
    # nearly closed (sigmoid(-4) ≈ 0.02): the untrained generator is then the pure warp, a floor that
    # a painted face of an unseen person falls below (benchmarks/ltv_quality.py; BENCHMARKS.md).
    "warp": dict(base_channels=24, depth=4, max_channels=128, patch=2, bottleneck_blocks=2,
                 norm_from_level=1, warp=True, mask_bias=-4.0),
    "warp_tiny": dict(base_channels=8, depth=2, max_channels=16, patch=1, bottleneck_blocks=0, warp=True),
}
DEFAULT_PRESET = "fast"

DISCRIMINATOR_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(base_channels=8, num_layers=2),
    "default": dict(base_channels=64, num_layers=3),
}


def _act(x):
    return nn.leaky_relu(x, 0.2)


def _groups(channels: int, groups: int) -> int:
    return math.gcd(channels, groups)


def pad_channels(x, multiple: int = 2):
    """Zero-pads the channel axis to a multiple of `multiple` (default: odd counts get one zero channel).

    Why: XLA CPU convolutions with odd input-channel counts (3, 9) are several times slower than with
    even ones (figures in BENCHMARKS.md); the zero channels change nothing else (their weights get zero
    gradient). Even counts (the 6-channel sketch) are left alone, so no concatenation gets fused with
    the sketch rasteriser (which de-vectorises it).
    """
    c = x.shape[-1]
    extra = -c % multiple
    if extra == 0:
        return x
    return jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (extra,), x.dtype)], axis=-1)


def depth_to_space(x, p: int):
    """[B, H, W, p·p·C] -> [B, H·p, W·p, C]: each position's values fill its p×p block row-major."""
    if p == 1:
        return x
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, p, p, c // (p * p)).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * p, w * p, c // (p * p))


def channel_padded_conv(multiple: int):
    """`lax.conv_general_dilated` with input and output channels zero-padded to a multiple of `multiple`
    inside the call, for `nn.Conv(conv_general_dilated=...)`: the same function and the same parameters
    (shapes, names, initialisation), but cuDNN gets channel counts it needs no padding kernels for (a
    GPU profile found ~15 % of the LTV step in its padding/layout helpers around the 3–12-channel
    convolutions; BENCHMARKS.md). `multiple` <= 1 gives None: nn.Conv's own path."""
    if multiple <= 1:
        return None

    def conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
             feature_group_count=1, **kwargs):
        if feature_group_count != 1:  # not used here; padding would mix the groups
            return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                                dimension_numbers, feature_group_count, **kwargs)
        # nn.Conv's layout: lhs [..., C_in] (channels last), rhs [kh, kw, C_in, C_out].
        cin, cout = rhs.shape[-2], rhs.shape[-1]
        pin, pout = -cin % multiple, -cout % multiple
        if pin:
            lhs = jnp.pad(lhs, [(0, 0)] * (lhs.ndim - 1) + [(0, pin)])
        if pin or pout:
            rhs = jnp.pad(rhs, [(0, 0)] * (rhs.ndim - 2) + [(0, pin), (0, pout)])
        out = jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                           dimension_numbers, feature_group_count, **kwargs)
        return out[..., :cout] if pout else out

    return conv


class ConvBlock(nn.Module):
    """Conv -> (GroupNorm) -> leaky ReLU."""

    features: int
    kernel: int = 3
    stride: int = 1
    norm: bool = True
    norm_groups: int = 8
    channel_multiple: int = 0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride), padding="SAME",
                    use_bias=not self.norm, dtype=self.dtype, param_dtype=self.param_dtype,
                    conv_general_dilated=channel_padded_conv(self.channel_multiple))(x)
        if self.norm:
            x = nn.GroupNorm(num_groups=_groups(self.features, self.norm_groups), dtype=self.dtype,
                             param_dtype=self.param_dtype)(x)
        return _act(x)


class Encoder(nn.Module):
    """Feature pyramid: stem at level 0, then one stride-2 conv (+ `convs_per_level` convs) per level.

    The stem is a 3×3 convolution when `patch` == 1, else a (2·patch)×(2·patch) convolution with stride
    `patch` (it sees each patch and half a patch around it).
    """

    channels: Sequence[int]
    patch: int = 1
    convs_per_level: int = 0
    norm: str = "group"
    norm_groups: int = 8
    norm_from_level: int = 0
    channel_multiple: int = 0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(norm_groups=self.norm_groups, channel_multiple=self.channel_multiple, dtype=self.dtype,
                  param_dtype=self.param_dtype)
        k = 3 if self.patch == 1 else 2 * self.patch
        h = ConvBlock(self.channels[0], kernel=k, stride=self.patch, norm=False, name="stem", **kw)(x)
        feats = [h]
        for i in range(1, len(self.channels)):
            norm = self.norm != "none" and i >= self.norm_from_level
            h = ConvBlock(self.channels[i], stride=2, norm=norm, name=f"down{i}", **kw)(h)
            for j in range(self.convs_per_level):
                h = h + ConvBlock(self.channels[i], norm=norm, name=f"conv{i}_{j}", **kw)(h)
            feats.append(h)
        return feats


class Decoder(nn.Module):
    """UNet decoder from per-level skip features to an image in [-1, 1] (float32)."""

    channels: Sequence[int]
    out_channels: int
    bottleneck_blocks: int = 1
    convs_per_level: int = 0
    upsample: str = "transpose"
    norm: str = "group"
    norm_groups: int = 8
    norm_from_level: int = 0
    channel_multiple: int = 0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, skips):
        kw = dict(norm_groups=self.norm_groups, channel_multiple=self.channel_multiple, dtype=self.dtype,
                  param_dtype=self.param_dtype)
        depth = len(self.channels) - 1
        use_norm = lambda i: self.norm != "none" and i >= self.norm_from_level  # noqa: E731
        x = skips[depth]
        for k in range(self.bottleneck_blocks):
            y = ConvBlock(self.channels[depth], norm=use_norm(depth), name=f"res{k}a", **kw)(x)
            x = x + ConvBlock(self.channels[depth], norm=use_norm(depth), name=f"res{k}b", **kw)(y)
        for i in reversed(range(depth)):
            c = self.channels[i]
            if self.upsample == "transpose":
                x = nn.ConvTranspose(c, (2, 2), (2, 2), padding="VALID", dtype=self.dtype,
                                     param_dtype=self.param_dtype, name=f"up{i}")(x)
                x = _act(x)
            elif self.upsample == "resize":
                b, h, w, ch = x.shape
                x = jax.image.resize(x, (b, 2 * h, 2 * w, ch), "nearest")
                x = ConvBlock(c, norm=False, name=f"up{i}", **kw)(x)
            else:
                raise ValueError(f"unknown upsample {self.upsample!r}")
            x = jnp.concatenate([x, skips[i]], axis=-1)
            x = ConvBlock(c, norm=use_norm(i), name=f"merge{i}", **kw)(x)
            for j in range(self.convs_per_level):
                x = x + ConvBlock(c, norm=use_norm(i), name=f"conv{i}_{j}", **kw)(x)
        x = nn.Conv(self.out_channels, (3, 3), padding="SAME", dtype=self.dtype,
                    param_dtype=self.param_dtype, name="out",
                    conv_general_dilated=channel_padded_conv(self.channel_multiple))(x)
        return jnp.tanh(x.astype(jnp.float32))


class Generator(nn.Module):
    """LTV generator: UNet with landmark attention (see the module docstring).

    `__call__(reference, sketch, train=False, reference_sketch=None, reference_landmarks=None,
    landmarks=None) -> (image, mask)`: reference [B, S, S, 3] in [-1, 1], sketch / reference_sketch
    [B, S, S, C] in [0, 1]; image [B, S, S, 3] float32 in [-1, 1], mask [B, S, S, 1] float32 in [0, 1].

    With `warp` (attention only), the reference is first warped to the target geometry by a
    thin-plate spline from `reference_landmarks` to `landmarks` ([B, 68, 2], normalised;
    `thflax.face.warp`): the warped frame enters the landmark encoder with the sketch, and the output
    is composed with it (out = m ⊙ decoded + (1 − m) ⊙ warped). The person's own pixels then carry
    identity and sharpness wherever the mask is off; the decoder paints only what a warp cannot
    (the mouth interior, shading, occlusions). The untrained generator is the pure warp.
    S must be divisible by patch · 2^depth. `train` is accepted for API symmetry (no dropout / batch stats).
    """

    base_channels: int = 24
    depth: int = 4
    max_channels: int = 128
    attention: bool = True
    use_reference_sketch: bool = True
    compose_output: bool = True
    patch: int = 2
    bottleneck_blocks: int = 2
    convs_per_level: int = 0
    upsample: str = "transpose"
    norm: str = "group"
    norm_groups: int = 8
    norm_from_level: int = 1
    warp: bool = False
    mask_bias: float = -2.0
    channel_multiple: int = 0  # see `channel_padded_conv` (8 on GPUs); no effect on the function or params
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def level_channels(self) -> tuple[int, ...]:
        return tuple(min(self.base_channels * 2**i, self.max_channels) for i in range(self.depth + 1))

    def setup(self):
        chs = self.level_channels()
        kw = dict(norm=self.norm, norm_groups=self.norm_groups, norm_from_level=self.norm_from_level,
                  channel_multiple=self.channel_multiple, dtype=self.dtype, param_dtype=self.param_dtype)
        padded = channel_padded_conv(self.channel_multiple)
        enc = dict(channels=chs, patch=self.patch, convs_per_level=self.convs_per_level, **kw)
        if self.attention:
            self.img_encoder = Encoder(**enc)
            self.bg_encoder = Encoder(**enc)
            self.lm_encoder = Encoder(**enc)
            # Masks start mostly closed (sigmoid(-2) ≈ 0.12): with `compose_output` the untrained generator
            # is then close to "copy the reference" (or the pure warp), the trivial baseline, and learns
            # where to paint.
            self.mask_heads = [nn.Conv(1, (3, 3), padding="SAME", dtype=self.dtype, param_dtype=self.param_dtype,
                                       conv_general_dilated=padded,
                                       bias_init=nn.initializers.constant(self.mask_bias), name=f"mask{i}")
                               for i in range(self.depth + 1)]
            self.fusers = [nn.Conv(c, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype, name=f"fuse{i}",
                                   conv_general_dilated=padded)
                           for i, c in enumerate(chs)]
        else:
            self.encoder = Encoder(**enc)
        self.decoder = Decoder(chs, 3 * self.patch**2, bottleneck_blocks=self.bottleneck_blocks,
                               convs_per_level=self.convs_per_level, upsample=self.upsample, **kw)

    def _prep(self, x):
        return pad_channels(jnp.asarray(x).astype(self.dtype))

    def _check(self, reference_sketch):
        if self.use_reference_sketch and reference_sketch is None:
            raise ValueError("Generator(use_reference_sketch=True) needs reference_sketch (the sketch of the "
                             "reference frame's landmarks)")
        if self.warp and not self.attention:
            raise ValueError("Generator(warp=True) needs attention=True")

    def encode_reference(self, reference, reference_sketch=None, reference_landmarks=None):
        """Reference-only work, cached across frames: a pytree of per-level features (or the inputs)."""
        self._check(reference_sketch)
        if not self.attention:
            feats = {"reference": jnp.asarray(reference)}
            if self.use_reference_sketch:
                feats["reference_sketch"] = jnp.asarray(reference_sketch)
            return feats
        img_in = reference if not self.use_reference_sketch else jnp.concatenate(
            [jnp.asarray(reference), jnp.asarray(reference_sketch).astype(jnp.asarray(reference).dtype)], -1)
        feats = {"img": self.img_encoder(self._prep(img_in)), "bg": self.bg_encoder(self._prep(reference))}
        if self.compose_output or self.warp:
            feats["reference"] = jnp.asarray(reference, jnp.float32)
        if self.warp:
            if reference_landmarks is None:
                raise ValueError("Generator(warp=True) needs reference_landmarks")
            feats["reference_landmarks"] = jnp.asarray(reference_landmarks, jnp.float32)
        return feats

    def decode(self, ref_features, sketch, landmarks=None):
        """Per-frame work: landmark encoder + attention + decoder. Returns (image, mask), both float32."""
        size = sketch.shape[1]
        base = ref_features.get("reference")  # what the output is composed with where the mask is off
        if self.warp:
            from thflax.face import warp as warp_lib

            if landmarks is None:
                raise ValueError("Generator(warp=True) needs the target landmarks")
            flow = warp_lib.tps_flow(ref_features["reference_landmarks"], jnp.asarray(landmarks, jnp.float32),
                                     size)
            base = warp_lib.warp(ref_features["reference"], flow)
            sketch = jnp.concatenate([jnp.asarray(sketch, jnp.float32), base], -1)
        if not self.attention:
            parts = [ref_features["reference"]]
            if self.use_reference_sketch:
                parts.append(ref_features["reference_sketch"])
            parts.append(sketch)
            x = jnp.concatenate([p.astype(self.dtype) for p in parts], -1)
            img = depth_to_space(self.decoder(self.encoder(self._prep(x))), self.patch)
            return img, jnp.ones(img.shape[:3] + (1,), jnp.float32)
        lms = self.lm_encoder(self._prep(sketch))
        skips, masks = [], []
        for i, (r, b, l) in enumerate(zip(ref_features["img"], ref_features["bg"], lms)):
            m = nn.sigmoid(self.mask_heads[i](l))
            masks.append(m)
            s = jnp.concatenate([r * m, b * (1 - m), l], -1)
            skips.append(_act(self.fusers[i](s)))
        img = depth_to_space(self.decoder(skips), self.patch)
        mask = masks[0].astype(jnp.float32)
        if self.patch > 1:
            mask = jax.image.resize(mask, mask.shape[:1] + (size, size, 1), "linear")
        if self.compose_output or self.warp:
            # The background branch at pixel level: where the landmark attention is off, the output is
            # the reference frame itself (warped to the target with `warp`); the decoder only has to
            # paint what changes.
            img = mask * img.astype(jnp.float32) + (1.0 - mask) * base
        return img, mask

    def __call__(self, reference, sketch, train: bool = False, reference_sketch=None, reference_landmarks=None,
                 landmarks=None):
        del train
        return self.decode(self.encode_reference(reference, reference_sketch, reference_landmarks), sketch,
                           landmarks)


class Discriminator(nn.Module):
    """Sketch-conditioned PatchGAN: concat(image, sketch) -> [B, S / 2^num_layers, S / 2^num_layers, 1] logits.

    With `features=True` it returns (logits, [the activation of each ConvBlock]), for the generator's
    feature-matching loss (pix2pixHD): the same network, the same parameters.
    """

    base_channels: int = 64
    num_layers: int = 3
    max_channels: int = 512
    norm: str = "group"
    norm_groups: int = 8
    channel_multiple: int = 0  # see `channel_padded_conv`
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, image, sketch, train: bool = False, features: bool = False):
        del train
        kw = dict(norm_groups=self.norm_groups, channel_multiple=self.channel_multiple, dtype=self.dtype,
                  param_dtype=self.param_dtype)
        x = jnp.concatenate([jnp.asarray(image).astype(self.dtype), jnp.asarray(sketch).astype(self.dtype)], -1)
        x = pad_channels(x)
        x = ConvBlock(self.base_channels, kernel=4, stride=2, norm=False, **kw)(x)
        feats = [x]
        for n in range(1, self.num_layers):
            c = min(self.base_channels * 2**n, self.max_channels)
            x = ConvBlock(c, kernel=4, stride=2, norm=self.norm != "none", **kw)(x)
            feats.append(x)
        c = min(self.base_channels * 2**self.num_layers, self.max_channels)
        x = ConvBlock(c, kernel=4, stride=1, norm=self.norm != "none", **kw)(x)
        feats.append(x)
        x = nn.Conv(1, (4, 4), padding="SAME", dtype=self.dtype, param_dtype=self.param_dtype, name="logits",
                    conv_general_dilated=channel_padded_conv(self.channel_multiple))(x)
        logits = x.astype(jnp.float32)
        return (logits, [f.astype(jnp.float32) for f in feats]) if features else logits


def make_generator(preset: str | dict = DEFAULT_PRESET, **overrides) -> Generator:
    """Generator from a preset name (or a dict of fields), with field overrides (e.g. dtype=jnp.bfloat16)."""
    cfg = dict(GENERATOR_PRESETS[preset]) if isinstance(preset, str) else dict(preset)
    cfg.update(overrides)
    return Generator(**cfg)


def dummy_inputs(size: int, batch: int = 1, channels: int = NUM_SKETCH_CHANNELS):
    """(reference, sketch, reference_sketch) zeros of the right shapes, for init and lowering."""
    return (jnp.zeros((batch, size, size, 3), jnp.float32), jnp.zeros((batch, size, size, channels), jnp.float32),
            jnp.zeros((batch, size, size, channels), jnp.float32))


def dummy_landmarks(batch: int = 1) -> jnp.ndarray:
    """[batch, 68, 2] distinct placeholder landmarks (a ring in the crop), for init and lowering."""
    t = jnp.linspace(0.0, 2.0 * math.pi, 68, endpoint=False)
    ring = jnp.stack([0.5 + 0.25 * jnp.cos(t), 0.5 + 0.25 * jnp.sin(t)], -1)
    return jnp.broadcast_to(ring, (batch, 68, 2))


def init_generator(model: Generator, rng, size: int, batch: int = 1):
    """Initial variables {'params': ...} for `model` at resolution `size`."""
    ref, sk, rsk = dummy_inputs(size, batch)
    rsk = rsk if model.use_reference_sketch else None
    lm = dummy_landmarks(batch) if model.warp else None
    return jax.jit(lambda k: model.init(k, ref, sk, reference_sketch=rsk, reference_landmarks=lm, landmarks=lm))(rng)


def generator_flops(config: str | dict | Generator = DEFAULT_PRESET, size: int = 128, batch: int = 1,
                    path: str = "full") -> float:
    """Forward FLOPs per frame from XLA's cost analysis of the jitted forward.

    Args:
      config: preset name, dict of Generator fields, or a Generator.
      size: resolution S.
      batch: batch size that is lowered (FLOPs are divided by it).
      path: "full" (reference encoders + decoder, `__call__`), "decode" (cached reference: landmark encoder
        + decoder) or "encode" (reference encoders only).
    """
    model = config if isinstance(config, Generator) else make_generator(config)
    ref, sk, rsk = dummy_inputs(size, batch)
    rsk = rsk if model.use_reference_sketch else None
    variables = jax.eval_shape(lambda: init_generator(model, jax.random.key(0), size, 1))
    lm = dummy_landmarks(batch) if model.warp else None
    if path == "full":
        fn, args = (lambda v, r, s, rs: model.apply(v, r, s, reference_sketch=rs, reference_landmarks=lm,
                                                    landmarks=lm)), (variables, ref, sk, rsk)
    elif path == "encode":
        fn, args = (lambda v, r, rs: model.apply(v, r, rs, lm, method=Generator.encode_reference)), (variables, ref, rsk)
    elif path == "decode":
        feats = jax.eval_shape(lambda v: model.apply(v, ref, rsk, lm, method=Generator.encode_reference), variables)
        fn, args = (lambda v, f, s: model.apply(v, f, s, lm, method=Generator.decode)), (variables, feats, sk)
    else:
        raise ValueError(f"unknown path {path!r}")
    return lowered_flops(jax.jit(fn).lower(*args)) / batch
