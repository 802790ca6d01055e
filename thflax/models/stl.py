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
head outputs the 100 head values, uncalibrated.

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

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from thflax.face import geometry

LANDMARK_SCALE = 256.0


class AudioEncoder(nn.Module):
    """Conv + BN + ReLU blocks over one frame's MFCC window, then FC. [N, W, n_mfcc] -> [N, features]."""

    channels: tuple[int, ...] = (32, 64, 128)
    features: int = 512
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = x[..., None].astype(self.dtype)  # the window is a 1-channel time x cepstrum image
        for i, ch in enumerate(self.channels):
            x = nn.Conv(ch, (3, 3), strides=(1, 1) if i == 0 else (2, 2), use_bias=False, dtype=self.dtype)(x)
            x = nn.BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name, momentum=0.9,
                             dtype=self.dtype)(x)
            x = nn.relu(x)
        x = x.reshape(x.shape[0], -1)
        return nn.relu(nn.Dense(self.features, dtype=self.dtype)(x))


class Branch(nn.Module):
    """One STL branch. template_in_gru=True is eq. 4 (lip), False is eq. 5 (head)."""

    out_points: int
    template_in_gru: bool
    audio_channels: tuple[int, ...] = (32, 64, 128)
    audio_features: int = 512
    template_features: int = 256
    gru_features: int = 256
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, mfcc, template, carry=None, train: bool = False):
        """mfcc [B, T, W, n], template [B, P_in, 2] (canonical px) -> (offsets [B, T, out_points, 2], carry)."""
        b, t = mfcc.shape[:2]
        audio = AudioEncoder(self.audio_channels, self.audio_features, self.bn_axis_name, self.dtype)(
            mfcc.reshape((b * t,) + mfcc.shape[2:]), train).reshape(b, t, -1)
        # Centre the template so the encoder sees shape, not where the face sits in the crop.
        tmpl = (template - template.mean(axis=1, keepdims=True)) / 32.0
        tmpl = nn.relu(nn.Dense(self.template_features, dtype=self.dtype)(tmpl.reshape(b, -1).astype(self.dtype)))
        tmpl = jnp.broadcast_to(tmpl[:, None], (b, t, tmpl.shape[-1]))
        x = jnp.concatenate([audio, tmpl], -1) if self.template_in_gru else audio
        rnn = nn.RNN(nn.GRUCell(self.gru_features, dtype=self.dtype, param_dtype=jnp.float32, name="gru"),
                     return_carry=True)
        if carry is None:
            carry = rnn.cell.initialize_carry(jax.random.PRNGKey(0), (b, x.shape[-1]))
        carry, h = rnn(x, initial_carry=carry)
        if not self.template_in_gru:
            h = jnp.concatenate([h, tmpl], -1)
        # Zero-initialised head: training starts at the template baseline (see module docstring).
        out = nn.Dense(self.out_points * 2, kernel_init=nn.initializers.zeros, dtype=self.dtype, name="head")(h)
        return out.astype(jnp.float32).reshape(b, t, self.out_points, 2), carry


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
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    def _branch(self, name, points, template_in_gru):
        return Branch(points, template_in_gru, self.audio_channels, self.audio_features,
                      self.template_features, self.gru_features, self.bn_axis_name, self.dtype, name=name)

    @nn.compact
    def __call__(self, mfcc, template, carry=None, train: bool = False):
        template = template.astype(jnp.float32) * LANDMARK_SCALE
        carry = carry or {}
        if not self.split:
            offs, c = self._branch("full", 68, True)(mfcc, template, carry.get("full"), train)
            full = template[:, None] + offs
            return {"full": full, "landmarks": full / LANDMARK_SCALE}, {"full": c}
        anchors = geometry.canonical_anchors(LANDMARK_SCALE)
        t_mouth = geometry.calibrate_mouth(template, anchors)
        t_head = geometry.head_points(template)
        m_off, c_lip = self._branch("lip", len(geometry.MOUTH_REP), True)(mfcc, t_mouth, carry.get("lip"), train)
        h_off, c_head = self._branch("head", len(geometry.HEAD_REP), False)(mfcc, t_head, carry.get("head"), train)
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
