"""Networks from a config: the one place that training, evaluation and generation build models.

`build_stl(config)`, `build_generator(config)` and `build_discriminator(config)` turn the config's
`stl` / `ltv` sections into Flax modules; `signature(config, stage)` is the part of the config that
a stage's parameters depend on (a checkpoint or export whose signature differs is refused;
`config.ltv.conv_channel_multiple` is not in it: it changes how convolutions run, not what they compute).
"""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from thflax.errors import InputError
from thflax.models import ltv, stl


def compute_dtype(config) -> Any:
    """bfloat16 under `config.half_precision` (parameters stay float32), else float32."""
    return jnp.bfloat16 if config.half_precision else jnp.float32


def build_stl(config, bn_axis_name: str | None = None) -> stl.STLNet:
    """The STL net of `config.stl` (BatchNorm statistics averaged over `bn_axis_name` when training)."""
    c = config.stl
    return stl.STLNet(split=bool(c.split), audio_channels=tuple(c.audio_channels),
                      audio_features=int(c.audio_features), template_features=int(c.template_features),
                      gru_features=int(c.gru_features), bn_axis_name=bn_axis_name, dtype=compute_dtype(config))


def stl_inputs(config, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Placeholder (mfcc [batch, clip_len, W, n_mfcc], template [batch, 68, 2]) for init and shape checks."""
    c = config.stl
    return (np.zeros((batch, c.clip_len, c.mfcc_window, c.n_mfcc), np.float32),
            np.full((batch, 68, 2), 0.5, np.float32))


def init_stl(config, rng: jax.Array) -> dict[str, Any]:
    """Initial STL variables {'params', 'batch_stats'}."""
    mfcc, template = stl_inputs(config)
    return build_stl(config).init(rng, mfcc, template, train=False)


def _generator_preset(ltv_config) -> str | dict[str, Any]:
    g = ltv_config.generator
    if isinstance(g, str):
        if g not in ltv.GENERATOR_PRESETS:
            raise InputError(f"unknown generator preset {g!r}; expected one of: {', '.join(ltv.GENERATOR_PRESETS)}")
        return g
    return g.to_dict() if hasattr(g, "to_dict") else dict(g)


def build_generator(config) -> ltv.Generator:
    """The LTV generator of `config.ltv` (a preset name or a dict of `ltv.Generator` fields)."""
    c = config.ltv
    return ltv.make_generator(_generator_preset(c), attention=bool(c.attention), dtype=compute_dtype(config),
                              channel_multiple=int(c.conv_channel_multiple))


def init_generator(config, rng: jax.Array) -> dict[str, Any]:
    """Initial generator variables {'params'} at `config.ltv.image_size`."""
    return ltv.init_generator(build_generator(config), rng, int(config.ltv.image_size))


def build_discriminator(config) -> ltv.Discriminator:
    c = config.ltv
    return ltv.Discriminator(base_channels=int(c.disc_channels), num_layers=int(c.disc_layers),
                             channel_multiple=int(c.conv_channel_multiple), dtype=compute_dtype(config))


def jsonable(x: Any) -> Any:
    """`x` as it reads back from JSON (tuples become lists), so saved and fresh signatures compare equal."""
    return json.loads(json.dumps(x))


def _stl_signature(config) -> dict[str, Any]:
    c = config.stl
    keys = ("split", "audio_channels", "audio_features", "template_features", "gru_features", "mfcc_window",
            "n_mfcc")
    return {"stage": "stl", **{k: c[k] for k in keys}}


def _ltv_signature(config) -> dict[str, Any]:
    c = config.ltv
    return {"stage": "ltv", "generator": _generator_preset(c), "attention": bool(c.attention), "image_size": int(c.image_size),
            "disc_channels": int(c.disc_channels), "disc_layers": int(c.disc_layers)}


_SIGNATURES = {"stl": _stl_signature, "ltv": _ltv_signature}


def signature(config, stage: str) -> dict[str, Any]:
    """The config fields stage `stage`'s parameters depend on, JSON-normalised."""
    return jsonable(_SIGNATURES[stage](config))
