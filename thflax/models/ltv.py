"""LTV net (paper §3.2, eq. 8–10, Figure 2): landmark sketch + reference frame -> talking-head frame.

Generator (`Generator`, a UNet with the paper's attention, eq. 8–9)
-------------------------------------------------------------------
Call: `generator(reference, reference_landmarks, target_landmarks)` for every preset, with
`reference` [B, S, S, 3] in [-1, 1] (a frame of the person: identity and background) and the
landmarks [B, 68, 2] of the reference frame and of the frame to generate (normalised crop
coordinates). The generator draws what it needs from them (`thflax.face.sketch.draw_sketch`, C = 6
channels): the `sketch` [B, S, S, C] of the TARGET landmarks and, when `use_reference_sketch`
(default), the `reference_sketch` of the reference frame's own landmarks. Knowing where the face
*was* in the reference lets the net relate reference appearance to the target geometry (which parts
must move where) instead of having to find the face in the image first; it costs nothing per
generated frame because it only enters the cached reference encoder.

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

Generation with a fixed reference: `encode_reference(reference, reference_landmarks)` returns the
reference features (a pytree) and `decode(ref_features, target_landmarks)` returns (image, mask) with
`decode(encode_reference(r, rl), tl) == __call__(r, rl, tl)` exactly (the same ops). Use
`model.apply(variables, ..., method=Generator.encode_reference)` / `method=Generator.decode`. Only the
landmark encoder and the decoder run per frame. (With attention=False the "features" are the inputs.)

Layers: the top modules (`Generator`, `Discriminator`) keep the configuration fields (dtype,
normalisation, channel padding) and build the layer constructors once (`layer_defs`: a `conv`
partial of nn.Conv carrying dtype and `channel_padded_conv`, a `norm` constructor, a transposed
convolution), which the blocks (`ConvBlock`, `Encoder`, `Decoder`) take as fields — the pattern of
flax's examples/imagenet. Parameter names and shapes do not depend on it.

Discriminator (`Discriminator`): a PatchGAN on concat(image, sketch) -> stride-2 4×4 convolutions ->
[B, S / 2^num_layers, S / 2^num_layers, 1] logits (no sigmoid: the BCE-with-logits of eq. 10 is in the loss).

FLOPs: `generator_flops(config, size)` lowers the jitted forward and reads XLA's cost analysis
(`thflax.models.flops.lowered_flops`). `GENERATOR_PRESETS` holds the named configurations;
`benchmarks/bench_generator.py` measures their speeds (results in BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from thflax.models.flops import lowered_flops
from thflax.face.sketch import NUM_SKETCH_CHANNELS, draw_sketch

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


ModuleDef = Any  # a module constructor (usually a functools.partial of a Flax module), as in flax's examples


def group_norm(groups: int, dtype: Dtype, param_dtype: Dtype):
    """Norm constructor for `ConvBlock`: channels -> GroupNorm with gcd(channels, `groups`) groups.

    The group count depends on the layer's width, so the constructor takes it (a plain partial of
    nn.GroupNorm could not); called inside a block, the module is auto-named `GroupNorm_0` there.
    """
    def make(features: int) -> nn.GroupNorm:
        return nn.GroupNorm(num_groups=_groups(features, groups), dtype=dtype, param_dtype=param_dtype)

    return make


def layer_defs(norm: str, norm_groups: int, channel_multiple: int, dtype: Dtype,
               param_dtype: Dtype) -> tuple[ModuleDef, ModuleDef | None, ModuleDef]:
    """(conv, norm, conv_transpose) constructors shared by every layer of a network, built once by the
    top module (`Generator`, `Discriminator`) so the blocks take them instead of repeating the dtype,
    normalisation and channel-padding fields. `norm` is None for norm="none"."""
    conv = functools.partial(nn.Conv, padding="SAME", dtype=dtype, param_dtype=param_dtype,
                             conv_general_dilated=channel_padded_conv(channel_multiple))
    norm_def = None if norm == "none" else group_norm(norm_groups, dtype, param_dtype)
    conv_t = functools.partial(nn.ConvTranspose, dtype=dtype, param_dtype=param_dtype)
    return conv, norm_def, conv_t


class ConvBlock(nn.Module):
    """Conv -> (norm) -> leaky ReLU. `norm` None: no normalisation, and the convolution has a bias."""

    features: int
    conv: ModuleDef
    norm: ModuleDef | None = None
    kernel: int = 3
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        x = self.conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                      use_bias=self.norm is None)(x)
        if self.norm is not None:
            x = self.norm(self.features)(x)
        return _act(x)


class Encoder(nn.Module):
    """Feature pyramid: stem at level 0, then one stride-2 conv (+ `convs_per_level` convs) per level.

    The stem is a 3×3 convolution when `patch` == 1, else a (2·patch)×(2·patch) convolution with stride
    `patch` (it sees each patch and half a patch around it). Levels from `norm_from_level` on are
    normalised with `norm` (None: none).
    """

    channels: Sequence[int]
    conv: ModuleDef
    norm: ModuleDef | None = None
    patch: int = 1
    convs_per_level: int = 0
    norm_from_level: int = 0

    @nn.compact
    def __call__(self, x):
        k = 3 if self.patch == 1 else 2 * self.patch
        h = ConvBlock(self.channels[0], self.conv, kernel=k, stride=self.patch, name="stem")(x)
        feats = [h]
        for i in range(1, len(self.channels)):
            norm = self.norm if i >= self.norm_from_level else None
            h = ConvBlock(self.channels[i], self.conv, norm, stride=2, name=f"down{i}")(h)
            for j in range(self.convs_per_level):
                h = h + ConvBlock(self.channels[i], self.conv, norm, name=f"conv{i}_{j}")(h)
            feats.append(h)
        return feats


class Decoder(nn.Module):
    """UNet decoder from per-level skip features to an image in [-1, 1] (float32)."""

    channels: Sequence[int]
    out_channels: int
    conv: ModuleDef
    conv_transpose: ModuleDef
    norm: ModuleDef | None = None
    bottleneck_blocks: int = 1
    convs_per_level: int = 0
    upsample: str = "transpose"
    norm_from_level: int = 0

    @nn.compact
    def __call__(self, skips):
        depth = len(self.channels) - 1
        norm_at = lambda i: self.norm if i >= self.norm_from_level else None  # noqa: E731
        x = skips[depth]
        for k in range(self.bottleneck_blocks):
            y = ConvBlock(self.channels[depth], self.conv, norm_at(depth), name=f"res{k}a")(x)
            x = x + ConvBlock(self.channels[depth], self.conv, norm_at(depth), name=f"res{k}b")(y)
        for i in reversed(range(depth)):
            c = self.channels[i]
            if self.upsample == "transpose":
                x = _act(self.conv_transpose(c, (2, 2), (2, 2), padding="VALID", name=f"up{i}")(x))
            elif self.upsample == "resize":
                b, h, w, ch = x.shape
                x = jax.image.resize(x, (b, 2 * h, 2 * w, ch), "nearest")
                x = ConvBlock(c, self.conv, name=f"up{i}")(x)
            else:
                raise ValueError(f"unknown upsample {self.upsample!r}")
            x = jnp.concatenate([x, skips[i]], axis=-1)
            x = ConvBlock(c, self.conv, norm_at(i), name=f"merge{i}")(x)
            for j in range(self.convs_per_level):
                x = x + ConvBlock(c, self.conv, norm_at(i), name=f"conv{i}_{j}")(x)
        x = self.conv(self.out_channels, (3, 3), name="out")(x)
        return jnp.tanh(x.astype(jnp.float32))


class Generator(nn.Module):
    """LTV generator: UNet with landmark attention (see the module docstring).

    `__call__(reference, reference_landmarks, target_landmarks, train=False) -> (image, mask)`, the same
    call for every preset: reference [B, S, S, 3] in [-1, 1]; reference_landmarks, target_landmarks
    [B, 68, 2] normalised crop coordinates; image [B, S, S, 3] float32 in [-1, 1], mask [B, S, S, 1]
    float32 in [0, 1]. The generator draws the sketches it needs (`thflax.face.sketch.draw_sketch`) and
    uses the landmarks themselves where `warp` needs them, so callers never branch on the preset.
    `target_sketch` / `reference_sketch` (keyword-only, [B, S, S, C]) pass sketches the caller already
    drew (the training step draws the target's for the discriminator too; benchmarks and tests pass
    their own), in which case they are used instead of drawing.

    With `warp` (attention only), the reference is first warped to the target geometry by a
    thin-plate spline from `reference_landmarks` to `target_landmarks` (`thflax.face.warp`): the warped
    frame enters the landmark encoder with the sketch, and the output is composed with it
    (out = m ⊙ decoded + (1 − m) ⊙ warped). The person's own pixels then carry identity and sharpness
    wherever the mask is off; the decoder paints only what a warp cannot (the mouth interior, shading,
    occlusions). The untrained generator is the pure warp.
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
        conv, norm, conv_t = layer_defs(self.norm, self.norm_groups, self.channel_multiple, self.dtype,
                                        self.param_dtype)
        enc = dict(channels=chs, conv=conv, norm=norm, patch=self.patch, convs_per_level=self.convs_per_level,
                   norm_from_level=self.norm_from_level)
        if self.attention:
            self.img_encoder = Encoder(**enc)
            self.bg_encoder = Encoder(**enc)
            self.lm_encoder = Encoder(**enc)
            # Masks start mostly closed (sigmoid(-2) ≈ 0.12): with `compose_output` the untrained generator
            # is then close to "copy the reference" (or the pure warp), the trivial baseline, and learns
            # where to paint.
            self.mask_heads = [conv(1, (3, 3), bias_init=nn.initializers.constant(self.mask_bias), name=f"mask{i}")
                               for i in range(self.depth + 1)]
            self.fusers = [conv(c, (1, 1), name=f"fuse{i}") for i, c in enumerate(chs)]
        else:
            self.encoder = Encoder(**enc)
        self.decoder = Decoder(chs, 3 * self.patch**2, conv=conv, conv_transpose=conv_t, norm=norm,
                               bottleneck_blocks=self.bottleneck_blocks, convs_per_level=self.convs_per_level,
                               upsample=self.upsample, norm_from_level=self.norm_from_level)

    def _prep(self, x):
        return pad_channels(jnp.asarray(x).astype(self.dtype))

    def _size(self, ref_features) -> int:
        """S, from the cached reference features (level 0 is at S / patch)."""
        if "reference" in ref_features:
            return ref_features["reference"].shape[1]
        return ref_features["img"][0].shape[1] * self.patch

    def encode_reference(self, reference, reference_landmarks, *, reference_sketch=None):
        """Reference-only work, cached across frames: a pytree of per-level features (or the inputs).

        reference [B, S, S, 3] in [-1, 1], reference_landmarks [B, 68, 2]; the reference sketch is drawn
        here when the preset uses it (or `reference_sketch` [B, S, S, C] is taken as given).
        """
        if self.warp and not self.attention:
            raise ValueError("Generator(warp=True) needs attention=True")
        if self.use_reference_sketch and reference_sketch is None:
            reference_sketch = draw_sketch(reference_landmarks, jnp.shape(reference)[1])
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
            feats["reference_landmarks"] = jnp.asarray(reference_landmarks, jnp.float32)
        return feats

    def decode(self, ref_features, target_landmarks, *, target_sketch=None):
        """Per-frame work: landmark encoder + attention + decoder. Returns (image, mask), both float32.

        target_landmarks [B, 68, 2]; their sketch is drawn here (or `target_sketch` is taken as given).
        """
        size = self._size(ref_features)
        sketch = draw_sketch(target_landmarks, size) if target_sketch is None else target_sketch
        base = ref_features.get("reference")  # what the output is composed with where the mask is off
        if self.warp:
            from thflax.face import warp as warp_lib

            flow = warp_lib.tps_flow(ref_features["reference_landmarks"],
                                     jnp.asarray(target_landmarks, jnp.float32), size)
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

    def __call__(self, reference, reference_landmarks, target_landmarks, train: bool = False, *,
                 target_sketch=None, reference_sketch=None):
        del train
        feats = self.encode_reference(reference, reference_landmarks, reference_sketch=reference_sketch)
        return self.decode(feats, target_landmarks, target_sketch=target_sketch)


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
        conv, norm, _ = layer_defs(self.norm, self.norm_groups, self.channel_multiple, self.dtype, self.param_dtype)
        x = jnp.concatenate([jnp.asarray(image).astype(self.dtype), jnp.asarray(sketch).astype(self.dtype)], -1)
        x = pad_channels(x)
        x = ConvBlock(self.base_channels, conv, kernel=4, stride=2)(x)
        feats = [x]
        for n in range(1, self.num_layers):
            c = min(self.base_channels * 2**n, self.max_channels)
            x = ConvBlock(c, conv, norm, kernel=4, stride=2)(x)
            feats.append(x)
        c = min(self.base_channels * 2**self.num_layers, self.max_channels)
        x = ConvBlock(c, conv, norm, kernel=4, stride=1)(x)
        feats.append(x)
        logits = conv(1, (4, 4), name="logits")(x).astype(jnp.float32)
        return (logits, [f.astype(jnp.float32) for f in feats]) if features else logits


def make_generator(preset: str | dict = DEFAULT_PRESET, **overrides) -> Generator:
    """Generator from a preset name (or a dict of fields), with field overrides (e.g. dtype=jnp.bfloat16)."""
    cfg = dict(GENERATOR_PRESETS[preset]) if isinstance(preset, str) else dict(preset)
    cfg.update(overrides)
    return Generator(**cfg)


#: Generator fields that say how it runs, not what it computes or which parameters it has: the
#: builder sets them from the config (precision, channel padding), so they are no part of an architecture.
RUNTIME_FIELDS = ("dtype", "param_dtype", "channel_multiple")


def generator_fields(preset: str | dict, overrides: dict | None = None) -> dict[str, Any]:
    """Every architecture field of `make_generator(preset, **overrides)`, defaults included.

    Two specs name the same network exactly when their fields are equal, however they were written
    (a preset name, a preset plus overrides, or an old config's dict of fields)."""
    fields = {f.name: f.default for f in dataclasses.fields(Generator)
              if f.name not in ("parent", "name") + RUNTIME_FIELDS}
    fields.update(GENERATOR_PRESETS[preset] if isinstance(preset, str) else preset)
    fields.update(overrides or {})
    return {k: v for k, v in fields.items() if k not in RUNTIME_FIELDS}


def preset_and_overrides(fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(preset name, overrides) naming the same network as `Generator(**fields)`.

    For configs saved when `ltv.generator` could be a dict of fields: the preset is the one that
    needs the fewest overrides (`DEFAULT_PRESET` on a tie, then `GENERATOR_PRESETS` order), and the
    overrides are the fields where it differs, so `generator_fields(preset, overrides)` equals
    `generator_fields(fields)` exactly."""
    want = generator_fields(fields)
    order = [DEFAULT_PRESET] + [p for p in GENERATOR_PRESETS if p != DEFAULT_PRESET]
    best = None
    for name in order:
        have = generator_fields(name)
        diff = {k: v for k, v in want.items() if have[k] != v}
        if best is None or len(diff) < len(best[1]):
            best = (name, diff)
    runtime = {k: v for k, v in fields.items() if k in RUNTIME_FIELDS}  # kept as given (the builder sets them)
    return best[0], {**best[1], **runtime}


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
    """Initial variables {'params': ...} for `model` at resolution `size` (parameters depend on shapes only)."""
    ref, sk, rsk = dummy_inputs(size, batch)
    lm = dummy_landmarks(batch)
    # Given sketches: init needs their shapes only, and drawing them would only cost time.
    return jax.jit(lambda k: model.init(k, ref, lm, lm, target_sketch=sk, reference_sketch=rsk))(rng)


def generator_flops(config: str | dict | Generator = DEFAULT_PRESET, size: int = 128, batch: int = 1,
                    path: str = "full") -> float:
    """Forward FLOPs per frame from XLA's cost analysis of the jitted forward (sketches given: drawing
    them is not counted).

    Args:
      config: preset name, dict of Generator fields, or a Generator.
      size: resolution S.
      batch: batch size that is lowered (FLOPs are divided by it).
      path: "full" (reference encoders + decoder, `__call__`), "decode" (cached reference: landmark encoder
        + decoder) or "encode" (reference encoders only).
    """
    model = config if isinstance(config, Generator) else make_generator(config)
    ref, sk, rsk = dummy_inputs(size, batch)
    variables = jax.eval_shape(lambda: init_generator(model, jax.random.key(0), size, 1))
    lm = dummy_landmarks(batch)
    if path == "full":
        fn, args = (lambda v, r, s, rs: model.apply(v, r, lm, lm, target_sketch=s, reference_sketch=rs)), \
            (variables, ref, sk, rsk)
    elif path == "encode":
        fn, args = (lambda v, r, rs: model.apply(v, r, lm, reference_sketch=rs, method=Generator.encode_reference)), \
            (variables, ref, rsk)
    elif path == "decode":
        feats = jax.eval_shape(lambda v: model.apply(v, ref, lm, reference_sketch=rsk,
                                                     method=Generator.encode_reference), variables)
        fn, args = (lambda v, f, s: model.apply(v, f, lm, target_sketch=s, method=Generator.decode)), \
            (variables, feats, sk)
    else:
        raise ValueError(f"unknown path {path!r}")
    return lowered_flops(jax.jit(fn).lower(*args)) / batch
