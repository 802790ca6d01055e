"""SyncNet (Chung & Zisserman, "Out of time", 2016): an audio embedding and a mouth-motion embedding whose
distance is small when speech and lips are in sync. LSE-C / LSE-D (Prajwal et al. 2020) are computed with it
(`thflax.measures.lip_sync_expert`).

`SyncNet` is the layout of the public network, syncnet_python's `SyncNetModel.S` (the weights
`syncnet_v2.model` that LSE-C/D are reported with), parameter for parameter (`thflax.models.syncnet_weights`
converts that checkpoint):

  audio (`netcnnaud`, `netfcaud`): 13 MFCC coefficients x 20 frames (0.2 s at 100 Hz) [B, 13, 20] ->
      six conv 3x3 + BatchNorm + ReLU (64, 192, 384, 256, 256, 512 channels; max-pools 3x3 with strides
      (1, 2) after the second and (2, 2) after the fifth; the sixth convolves the whole remaining 5x4) ->
      FC 512 + BatchNorm + ReLU -> FC 1024.
  video (`netcnnlip`, `netfclip`): 5 consecutive colour frames [B, 5, H, W, 3] (224x224 face crops in the
      public net, BGR 0..255) -> conv 7x7 stride 2 over all five frames (96) + max-pool 3x3/2, conv 5x5/2 (256)
      + max-pool 3x3/2, three conv 3x3 (256), max-pool 3x3/2, a conv over the whole remaining 6x6 (512), each
      with BatchNorm + ReLU -> FC 512 + BatchNorm + ReLU -> FC 1024.

The public net is colour (3 input channels; the 2016 paper's grayscale 111x111 mouth crops are an earlier
variant). Its 3-D convolutions have a temporal kernel of 5 on 5 frames (the first) or of 1 (the others),
so each is a 2-D convolution here: the first over the 15 channels of the stacked frames (channel =
3 * frame + colour), the others on the single remaining time step.

The expert trained here (`thflax.training.syncnet_stage`, `config.syncnet`) is the same layout at other
sizes: narrower, a 48x64 mouth region of the face crop instead of the whole 224x224 face (the corpus's
crops are 64-128 px), and without the max-pool after the first convolution (`stem_pool=False`), so that
a small input still reaches 1x1 before the last convolution, which convolves whatever size remains (in the
public net 6x6 and 5x4). Wav2Lip's `SyncNet_color` (2-D residual encoders, mel spectrograms, cosine
similarity) is a different network and is not implemented: LSE-C/D are defined with this one.

What a network sees is fixed by an `InputSpec`: which part of the face crop (`region`), at what size, in
which colour order and pixel range; `video_input` makes it from uint8 face crops, in JAX, so training and
measuring crop and resize the same way.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from thflax.errors import InputError

#: Frames per video window and MFCC frames per audio window (0.2 s each at 25 fps and 100 Hz).
FRAMES = 5
MFCC_FRAMES = 20
#: MFCC coefficients the audio tower reads.
N_MFCC = 13

PUBLIC_LIP_CHANNELS = (96, 256, 256, 256, 256, 512)
PUBLIC_AUDIO_CHANNELS = (64, 192, 384, 256, 256, 512)
PUBLIC_FC = 512
PUBLIC_EMBED = 1024

ModuleDef = Any


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a SyncNet's video tower reads of a face crop.

    region: (x0, y0, x1, y1) of the crop in normalised coordinates (0..1, values past 1 pad with the edge);
    size: (height, width) it is resized to; bgr: colour order blue-green-red (the public net's, read with
    OpenCV); unit: pixels in [-1, 1] (else 0..255, the public net's).
    """

    region: tuple[float, float, float, float]
    size: tuple[int, int]
    bgr: bool = False
    unit: bool = True


#: The public net's input, approximated on this project's face crops (`thflax.face.crop.clip_box`: side =
#: 2x the landmarks' extent). syncnet_python crops 2.8 half-sides of its face detector's box around the box,
#: from one half-side above its centre to 1.8 below; with the detector's box ~1.1x the landmarks' extent
#: that is x 0.125..0.875 and y 0.28..1.06 of our crop. Without that detector the framing is approximate.
PUBLIC_INPUT = InputSpec(region=(0.125, 0.28, 0.875, 1.0), size=(224, 224), bgr=True, unit=False)


#: Channels per group of the GroupNorm variant (`norm="group"`).
GROUP_SIZE = 8


def _layers(dtype: Any, bn_axis_name: str | None, train: bool, norm: str = "batch"):
    """(conv, dense, norm) constructors. "batch": PyTorch's BatchNorm, the public net's (running statistics
    moved by 0.1 of the batch's, eps 1e-5), averaged over `bn_axis_name` when training; "group": GroupNorm
    of `GROUP_SIZE` channels, the same in training and at inference."""
    conv = functools.partial(nn.Conv, dtype=dtype)
    dense = functools.partial(nn.Dense, dtype=dtype)
    if norm == "group":
        return conv, dense, functools.partial(nn.GroupNorm, num_groups=None, group_size=GROUP_SIZE, epsilon=1e-5,
                                              dtype=dtype)
    bn = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                           axis_name=bn_axis_name if train else None, dtype=dtype)
    return conv, dense, bn


def _conv_bn(conv: ModuleDef, norm: ModuleDef, x, features: int, kernel, strides=(1, 1), padding="VALID",
             name: str = ""):
    x = conv(features, tuple(kernel), strides=strides, padding=padding, name=f"conv{name}")(x)
    return nn.relu(norm(name=f"bn{name}")(x))


class AudioCNN(nn.Module):
    """`netcnnaud`: MFCC windows [B, n_mfcc, 20] -> features [B, channels[-1]]."""

    channels: Sequence[int]
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    norm: str = "batch"

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv, _, norm = _layers(self.dtype, self.bn_axis_name, train, self.norm)
        c = self.channels
        pad = ((1, 1), (1, 1))
        x = x[..., None]
        x = _conv_bn(conv, norm, x, c[0], (3, 3), padding=pad, name="0")  # (+ a 1x1 max-pool: the identity)
        x = _conv_bn(conv, norm, x, c[1], (3, 3), padding=pad, name="1")
        x = nn.max_pool(x, (3, 3), strides=(1, 2))
        for i in (2, 3, 4):
            x = _conv_bn(conv, norm, x, c[i], (3, 3), padding=pad, name=str(i))
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
        x = _conv_bn(conv, norm, x, c[5], x.shape[1:3], name="5")  # (5, 4) in the public net
        return x.reshape(x.shape[0], -1)


class LipCNN(nn.Module):
    """`netcnnlip`: 5 frames [B, 5, H, W, 3] -> features [B, channels[-1]]."""

    channels: Sequence[int]
    stem_pool: bool = True
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    norm: str = "batch"

    @nn.compact
    def __call__(self, frames, train: bool = False):
        conv, _, norm = _layers(self.dtype, self.bn_axis_name, train, self.norm)
        b, t, h, w, k = frames.shape
        c = self.channels
        x = jnp.transpose(frames, (0, 2, 3, 1, 4)).reshape(b, h, w, t * k)  # channel = 3 * frame + colour
        x = _conv_bn(conv, norm, x, c[0], (7, 7), strides=(2, 2), name="0")
        if self.stem_pool:
            x = nn.max_pool(x, (3, 3), strides=(2, 2))
        x = _conv_bn(conv, norm, x, c[1], (5, 5), strides=(2, 2), padding=((1, 1), (1, 1)), name="1")
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for i in (2, 3, 4):
            x = _conv_bn(conv, norm, x, c[i], (3, 3), padding=((1, 1), (1, 1)), name=str(i))
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
        x = _conv_bn(conv, norm, x, c[5], x.shape[1:3], name="5")  # (6, 6) in the public net
        return x.reshape(b, -1)


class Head(nn.Module):
    """`netfcaud` / `netfclip`: FC + BatchNorm + ReLU, FC."""

    hidden: int
    features: int
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    norm: str = "batch"

    @nn.compact
    def __call__(self, x, train: bool = False):
        _, dense, norm = _layers(self.dtype, self.bn_axis_name, train, self.norm)
        x = nn.relu(norm(name="bn0")(dense(self.hidden, name="fc0")(x)))
        return dense(self.features, name="fc1")(x)


class SyncNet(nn.Module):
    """Audio and video embeddings [B, embed_features] (float32); `__call__` returns (audio, video).

    `embed_audio(mfcc [B, n_mfcc, 20])` and `embed_video(frames [B, 5, H, W, 3])` (`apply(..., method=...)`)
    run one tower; the batch sizes of the two inputs are independent."""

    lip_channels: Sequence[int] = PUBLIC_LIP_CHANNELS
    audio_channels: Sequence[int] = PUBLIC_AUDIO_CHANNELS
    fc_features: int = PUBLIC_FC
    embed_features: int = PUBLIC_EMBED
    stem_pool: bool = True
    # Each tower's normalisation: the public net's BatchNorm ("batch"), or GroupNorm ("group": no batch
    # statistics; on the audio side it would also normalise away a window's loudness).
    audio_norm: str = "batch"
    video_norm: str = "batch"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    def setup(self):
        kw = {"bn_axis_name": self.bn_axis_name, "dtype": self.dtype}
        self.netcnnaud = AudioCNN(tuple(self.audio_channels), norm=self.audio_norm, **kw)
        self.netfcaud = Head(self.fc_features, self.embed_features, norm=self.audio_norm, **kw)
        self.netcnnlip = LipCNN(tuple(self.lip_channels), self.stem_pool, norm=self.video_norm, **kw)
        self.netfclip = Head(self.fc_features, self.embed_features, norm=self.video_norm, **kw)

    def __call__(self, mfcc, frames, train: bool = False):
        return self.embed_audio(mfcc, train), self.embed_video(frames, train)

    def embed_audio(self, mfcc, train: bool = False):
        return self.netfcaud(self.netcnnaud(mfcc, train), train).astype(jnp.float32)

    def embed_video(self, frames, train: bool = False):
        return self.netfclip(self.netcnnlip(frames, train), train).astype(jnp.float32)


def lip_feature_size(height: int, width: int, stem_pool: bool) -> tuple[int, int]:
    """The spatial size the video tower's last convolution sees for [height, width] frames (6x6 at 224x224
    in the public net); InputError when the input is too small to get there."""
    def conv(n, k, s, p=0):
        return (n + 2 * p - k) // s + 1

    size = []
    for n in (height, width):
        n = conv(n, 7, 2)
        if stem_pool:
            n = conv(n, 3, 2)
        n = conv(conv(n, 5, 2, 1), 3, 2, 1)
        size.append(conv(n, 3, 2))
    if min(size) < 1:
        raise InputError(f"a {height}x{width} SyncNet input is too small for its video tower "
                         f"(stem_pool={stem_pool}); use a larger config.syncnet.image_size")
    return size[0], size[1]


def video_input(frames, spec: InputSpec) -> jnp.ndarray:
    """uint8 face crops [..., S, S, 3] (RGB) -> what the video tower reads [..., H, W, 3] float32: the
    spec's region, resized (linear, antialiased when shrinking), in its colour order and pixel range."""
    frames = jnp.asarray(frames)
    s = frames.shape[-2]
    x0, y0, x1, y1 = (int(round(v * s)) for v in spec.region)
    lead = frames.shape[:-3]
    pad_y, pad_x = max(0, y1 - s), max(0, x1 - s)
    x = frames.astype(jnp.float32)
    if pad_y or pad_x:  # a region past the crop's edge repeats the edge (as the crop itself does)
        x = jnp.pad(x, [(0, 0)] * len(lead) + [(0, pad_y), (0, pad_x), (0, 0)], mode="edge")
    x = x[..., max(0, y0):y1, max(0, x0):x1, :]
    h, w = spec.size
    if x.shape[-3:-1] != (h, w):
        x = jax.image.resize(x, lead + (h, w, 3), method="linear")
    if spec.bgr:
        x = x[..., ::-1]
    return x / 127.5 - 1.0 if spec.unit else x


def windows(frames_or_features, count: int, length: int, start: int = 0, step: int = 1):
    """`count` consecutive windows of `length` along axis 0: [count, length, ...], window i starting at
    start + i * step (numpy or JAX arrays)."""
    x = frames_or_features
    idx = start + np.arange(count)[:, None] * step + np.arange(length)[None, :]
    return x[idx]


# ---- the public PyTorch checkpoint's layout ---------------------------------------------------------------

#: Index in `nn.Sequential` of each convolution and BatchNorm of syncnet_python's `netcnnaud` / `netcnnlip`
#: (ReLUs and max-pools in between have no parameters) -> this module's layer suffix.
TORCH_CONV = {0: "0", 4: "1", 8: "2", 11: "3", 14: "4", 18: "5"}
TORCH_BN = {1: "0", 5: "1", 9: "2", 12: "3", 15: "4", 19: "5"}
#: The same for `netfcaud` / `netfclip`: Linear, BatchNorm1d, (ReLU), Linear.
TORCH_FC = {0: "fc0", 3: "fc1"}
TORCH_FC_BN = {1: "bn0"}
TOWERS = ("netcnnaud", "netcnnlip", "netfcaud", "netfclip")


def architecture_from_torch(state: dict[str, Any]) -> SyncNet:
    """The `SyncNet` whose parameters fit a syncnet_python state dict (channels and sizes read from its
    shapes; the public net's layout, `stem_pool=True`)."""
    try:
        lip = tuple(int(np.shape(state[f"netcnnlip.{i}.weight"])[0]) for i in TORCH_CONV)
        aud = tuple(int(np.shape(state[f"netcnnaud.{i}.weight"])[0]) for i in TORCH_CONV)
        fc = int(np.shape(state["netfcaud.0.weight"])[0])
        embed = int(np.shape(state["netfcaud.3.weight"])[0])
    except KeyError as e:
        raise InputError(f"not a syncnet_python SyncNet state dict: no {e.args[0]}") from e
    return SyncNet(lip_channels=lip, audio_channels=aud, fc_features=fc, embed_features=embed, stem_pool=True)


def from_torch(state: dict[str, Any]) -> tuple[SyncNet, dict[str, Any]]:
    """syncnet_python's state dict (`SyncNetModel.S().state_dict()`, e.g. `syncnet_v2.model`; values any
    array-likes: torch tensors, numpy) -> (the `SyncNet`, its variables {"params", "batch_stats"}).

    Convolutions [out, in, kh, kw] and [out, in, t, kh, kw] become [kh, kw, in, out] (the first 3-D one
    [7, 7, t * in, out], frame-major like `LipCNN`'s stacked channels), Linear [out, in] -> [in, out],
    BatchNorm weight/bias -> scale/bias, running_mean/var -> batch_stats mean/var. Every entry must be
    used and every parameter found (`num_batches_tracked` aside); InputError (one line) otherwise.
    """
    model = architecture_from_torch(state)
    arrays = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, np.float32)
              for k, v in state.items() if not k.endswith("num_batches_tracked")}
    used: set[str] = set()
    params: dict[str, dict] = {t: {} for t in TOWERS}
    stats: dict[str, dict] = {t: {} for t in TOWERS}

    def take(key: str) -> np.ndarray:
        if key not in arrays:
            raise InputError(f"not a syncnet_python SyncNet state dict: no {key}")
        used.add(key)
        return arrays[key]

    def conv_kernel(w: np.ndarray) -> np.ndarray:
        if w.ndim == 4:  # [out, in, kh, kw]
            return np.transpose(w, (2, 3, 1, 0))
        o, i, t, kh, kw = w.shape  # a 3-D conv: its time steps become input channels, frame-major
        return np.transpose(w, (3, 4, 2, 1, 0)).reshape(kh, kw, t * i, o)

    def batch_norm(tower: str, key: str, name: str) -> None:
        params[tower][name] = {"scale": take(f"{key}.weight"), "bias": take(f"{key}.bias")}
        stats[tower][name] = {"mean": take(f"{key}.running_mean"), "var": take(f"{key}.running_var")}

    for tower in ("netcnnaud", "netcnnlip"):
        for i, n in TORCH_CONV.items():
            params[tower][f"conv{n}"] = {"kernel": conv_kernel(take(f"{tower}.{i}.weight")),
                                         "bias": take(f"{tower}.{i}.bias")}
        for i, n in TORCH_BN.items():
            batch_norm(tower, f"{tower}.{i}", f"bn{n}")
    for tower in ("netfcaud", "netfclip"):
        for i, n in TORCH_FC.items():
            params[tower][n] = {"kernel": take(f"{tower}.{i}.weight").T, "bias": take(f"{tower}.{i}.bias")}
        for i, n in TORCH_FC_BN.items():
            batch_norm(tower, f"{tower}.{i}", n)
    left = sorted(set(arrays) - used)
    if left:
        raise InputError(f"not a syncnet_python SyncNet state dict: unexpected {', '.join(left[:3])}"
                         + (" ..." if len(left) > 3 else ""))
    variables = {"params": params, "batch_stats": {t: s for t, s in stats.items() if s}}
    check_public_shapes(model, variables)
    return model, variables


def check_public_shapes(model: SyncNet, variables: dict[str, Any]) -> None:
    """InputError unless `variables` have exactly the shapes `model` initialises at the public input size."""
    want = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, N_MFCC, MFCC_FRAMES)),
                                             jnp.zeros((1, FRAMES) + PUBLIC_INPUT.size + (3,))))
    from flax import traverse_util

    got = {k: tuple(np.shape(v)) for k, v in traverse_util.flatten_dict(variables).items()}
    want = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(dict(want)).items()}
    if got != want:
        raise InputError("the SyncNet state dict's shapes do not fit the public layout at 224x224 "
                         "(13 MFCC coefficients x 20 frames, 5 frames of 224x224)")
