"""STL net: speech -> landmarks (paper §3.1, eq. 4–6), two parallel branches merged by three points.

Units: landmarks enter in normalised crop coordinates ([0, 1]) and are scaled by `LANDMARK_SCALE`
(256) inside the model, so the wing loss (w = 10, ε = 2) reads in pixels of a 256×256 face crop
whatever crop size the data has (the paper used 300×300 crops).

Lip branch (eq. 4): audio encoder f_a1 (conv + BatchNorm + ReLU blocks on each frame's MFCC window,
then FC -> 512) and template encoder (FC: the template's calibrated mouth, 42 values -> 256) are
concatenated per frame and run through a GRU; an FC head outputs 42 values: the calibrated mouth
representation of `thflax.face.geometry` (nose tip + points 48–67, 21 points).

Head branch (eq. 5): its own audio encoder f_a2 and GRU over audio only; the GRU output is
concatenated with the template head encoding (FC: 100 values = points 0–47, 48, 54 -> 256) and an FC
head outputs the 100 head values, uncalibrated. By default (`head_lip_state="lip_frozen"`, not in the
paper) that FC also reads the lip GRU's output, without passing gradients back: the head's points
include the jaw line (0–16), which opens with the mouth, and the head's own GRU, trained by a loss
dominated by pose that speech barely predicts, learnt almost nothing of the articulation — the paper's
head branch scored no better than the still template, and worse than the one-branch net
(BENCHMARKS.md, "head branch"). The lips still train as in the paper.

Merge (eq. 6): `geometry.merge` places the mouth onto the head by aligning nose tip and mouth
corners, giving all 68 points.

Offsets, not absolute positions: each head outputs the displacement from the template (the
landmarks of a reference frame of the same person). Identity (face shape, mouth size) is then carried
by the template for free, the network only models motion, and a zero output is exactly the trivial
"template" baseline — training starts from it rather than from a random face.

"w/o Splitnet" ablation (`split=False`): one branch, template = all 68 uncalibrated points, output
68 uncalibrated points.

The GRU state is explicit: `__call__(..., carry=c)` returns the final carry so inference can run
over audio of any length chunk by chunk with the same result as a single pass (BatchNorm uses running
statistics at inference, so frames are processed independently before the GRU).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from thflax.face import geometry

LANDMARK_SCALE = 256.0
#: `STLNet.head_audio`'s and `STLNet.head_lip_state`'s choices.
HEAD_AUDIO = ("own", "lip", "lip_frozen")
HEAD_LIP_STATE = ("none", "lip", "lip_frozen")


ModuleDef = Any  # a module constructor (a functools.partial of a Flax module), as in flax's examples


class AudioEncoder(nn.Module):
    """Conv + BN + ReLU blocks over one frame's MFCC window, then FC. [N, W, n_mfcc] -> [N, features].

    `conv`, `norm`, `dense` are the STL net's layer constructors (`STLNet.layer_defs`): they carry the
    dtype, and `norm` the train/inference mode and the cross-device BatchNorm axis."""

    conv: ModuleDef
    norm: ModuleDef
    dense: ModuleDef
    channels: tuple[int, ...] = (32, 64, 128)
    features: int = 512

    @nn.compact
    def __call__(self, x):
        x = x[..., None]  # the window is a 1-channel time x cepstrum image (conv casts it to its dtype)
        for i, ch in enumerate(self.channels):
            x = self.conv(ch, (3, 3), strides=(1, 1) if i == 0 else (2, 2))(x)
            x = nn.relu(self.norm()(x))
        x = x.reshape(x.shape[0], -1)
        return nn.relu(self.dense(self.features)(x))


class Branch(nn.Module):
    """One STL branch. template_in_gru=True is eq. 4 (lip), False is eq. 5 (head).

    `conv`, `norm`, `dense`, `gru` are the STL net's layer constructors (`STLNet.layer_defs`)."""

    out_points: int
    template_in_gru: bool
    conv: ModuleDef
    norm: ModuleDef
    dense: ModuleDef
    gru: ModuleDef
    audio_channels: tuple[int, ...] = (32, 64, 128)
    audio_features: int = 512
    template_features: int = 256
    gru_features: int = 256

    @nn.compact
    def __call__(self, mfcc, template, carry=None, audio=None, context=None):
        """mfcc [B, T, W, n], template [B, P_in, 2] (canonical px) -> (offsets [B, T, out_points, 2], carry,
        audio features [B, T, F], GRU output [B, T, gru_features]). `audio`: features to use instead of the
        branch's own encoder's (none built); `context` [B, T, C]: more per-frame features the output layer
        reads beside the GRU's."""
        b, t = mfcc.shape[:2]
        if audio is None:
            audio = AudioEncoder(self.conv, self.norm, self.dense, self.audio_channels, self.audio_features)(
                mfcc.reshape((b * t,) + mfcc.shape[2:])).reshape(b, t, -1)
        # Centre the template so the encoder sees shape, not where the face sits in the crop.
        tmpl = (template - template.mean(axis=1, keepdims=True)) / 32.0
        tmpl = nn.relu(self.dense(self.template_features)(tmpl.reshape(b, -1)))
        tmpl = jnp.broadcast_to(tmpl[:, None], (b, t, tmpl.shape[-1]))
        x = jnp.concatenate([audio, tmpl], -1) if self.template_in_gru else audio
        rnn = nn.RNN(self.gru(self.gru_features, name="gru"), return_carry=True)
        if carry is None:
            carry = rnn.cell.initialize_carry(jax.random.PRNGKey(0), (b, x.shape[-1]))
        carry, h = rnn(x, initial_carry=carry)
        state = h
        if not self.template_in_gru:
            h = jnp.concatenate([h, tmpl], -1)
        if context is not None:
            h = jnp.concatenate([h, context.astype(h.dtype)], -1)
        # Zero-initialised head: training starts at the template baseline (see module docstring).
        out = self.dense(self.out_points * 2, kernel_init=nn.initializers.zeros, name="head")(h)
        return out.astype(jnp.float32).reshape(b, t, self.out_points, 2), carry, audio, state


class STLNet(nn.Module):
    """Speech -> landmarks.

    __call__(mfcc [B, T, W, n_mfcc], template [B, 68, 2] normalised, carry=None, train=False)
      -> (outputs, carry) with outputs
         "landmarks": [B, T, 68, 2] merged, normalised crop coordinates,
         "mouth": [B, T, 21, 2] calibrated mouth, canonical px (split=True only),
         "head": [B, T, 50, 2] head points, canonical px (split=True only),
         "full": [B, T, 68, 2] canonical px (split=False only).
    """

    split: bool = True
    audio_channels: tuple[int, ...] = (32, 64, 128)
    audio_features: int = 512
    template_features: int = 256
    gru_features: int = 256
    #: Where the head branch's speech features come from: "own" (the paper: its own encoder f_a2), "lip"
    #: (the lip branch's f_a1, trained by both branches' losses) or "lip_frozen" (f_a1's features with
    #: no gradient from the head: only the lips train it).
    head_audio: str = "own"
    #: The template enters the head GRU (as eq. 4 does for the lips) instead of after it (eq. 5).
    head_template_in_gru: bool = False
    #: What the head branch's output layer reads beside its own GRU: "none" (the paper), or the lip GRU's
    #: output per frame, the articulation over time that opens the jaw line (points 0–16, the head
    #: branch's): "lip" (trained by both losses) or "lip_frozen" (no gradient from the head: the lips
    #: are then trained exactly as in the paper's split net).
    head_lip_state: str = "none"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    def layer_defs(self, train: bool) -> dict[str, ModuleDef]:
        """The layer constructors every branch uses, built once here (flax examples' ModuleDef pattern):
        the dtype (parameters stay float32), and BatchNorm's mode and cross-device axis."""
        return dict(conv=functools.partial(nn.Conv, use_bias=False, dtype=self.dtype),
                    norm=functools.partial(nn.BatchNorm, use_running_average=not train, axis_name=self.bn_axis_name,
                                           momentum=0.9, dtype=self.dtype),
                    dense=functools.partial(nn.Dense, dtype=self.dtype),
                    gru=functools.partial(nn.GRUCell, dtype=self.dtype, param_dtype=jnp.float32))

    def _branch(self, name: str, points: int, template_in_gru: bool, train: bool) -> Branch:
        return Branch(points, template_in_gru, **self.layer_defs(train), audio_channels=self.audio_channels,
                      audio_features=self.audio_features, template_features=self.template_features,
                      gru_features=self.gru_features, name=name)

    @nn.compact
    def __call__(self, mfcc, template, carry=None, train: bool = False):
        template = template.astype(jnp.float32) * LANDMARK_SCALE
        carry = carry or {}
        if not self.split:
            offs, c, _, _ = self._branch("full", 68, True, train)(mfcc, template, carry.get("full"))
            full = template[:, None] + offs
            return {"full": full, "landmarks": full / LANDMARK_SCALE}, {"full": c}
        anchors = geometry.canonical_anchors(LANDMARK_SCALE)
        t_mouth = geometry.calibrate_mouth(template, anchors)
        t_head = geometry.head_points(template)
        if self.head_audio not in HEAD_AUDIO:
            raise ValueError(f"unknown head_audio {self.head_audio!r}; expected one of {HEAD_AUDIO}")
        if self.head_lip_state not in HEAD_LIP_STATE:
            raise ValueError(f"unknown head_lip_state {self.head_lip_state!r}; expected one of {HEAD_LIP_STATE}")
        m_off, c_lip, lip_audio, lip_state = self._branch("lip", len(geometry.MOUTH_REP), True, train)(
            mfcc, t_mouth, carry.get("lip"))
        head_audio = {"own": None, "lip": lip_audio, "lip_frozen": jax.lax.stop_gradient(lip_audio)}[self.head_audio]
        context = {"none": None, "lip": lip_state,
                   "lip_frozen": jax.lax.stop_gradient(lip_state)}[self.head_lip_state]
        h_off, c_head, _, _ = self._branch("head", len(geometry.HEAD_REP), self.head_template_in_gru, train)(
            mfcc, t_head, carry.get("head"), head_audio, context)
        mouth = t_mouth[:, None] + m_off
        head = t_head[:, None] + h_off
        full = geometry.merge(mouth, head)
        return ({"mouth": mouth, "head": head, "landmarks": full / LANDMARK_SCALE},
                {"lip": c_lip, "head": c_head})


def targets(landmarks, split: bool = True):
    """Training targets in canonical px from normalised landmarks [..., 68, 2]."""
    lm = jnp.asarray(landmarks, jnp.float32) * LANDMARK_SCALE
    if not split:
        return {"full": lm}
    return {"mouth": geometry.calibrate_mouth(lm, geometry.canonical_anchors(LANDMARK_SCALE)),
            "head": geometry.head_points(lm)}
