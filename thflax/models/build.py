"""Networks from a config: the one place that training, evaluation and generation build models.

`build_stl(config)`, `build_generator(config)` and `build_discriminator(config)` turn the config's
`stl` / `ltv` sections into Flax modules, `build_syncnet(config)` its `syncnet` section (the lip-sync expert); `signature(config, stage)` is the part of the config that
a stage's parameters depend on (a checkpoint or export whose signature differs is refused;
`config.ltv.conv_channel_multiple` is not in it: it changes how convolutions run, not what they compute);
`same_signature` compares a saved signature with a fresh one. The generator is named by
`config.ltv.generator` (a preset of `ltv.GENERATOR_PRESETS`) and `config.ltv.generator_overrides` (its
field changes); `upgrade_saved_config` converts configs saved when `ltv.generator` could be a dict.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from thflax.errors import InputError
from thflax.models import ltv, stl, syncnet


def compute_dtype(config) -> Any:
    """bfloat16 under `config.half_precision` (parameters stay float32), else float32."""
    return jnp.bfloat16 if config.half_precision else jnp.float32


def build_stl(config, bn_axis_name: str | None = None) -> stl.STLNet:
    """The STL net of `config.stl` (BatchNorm statistics averaged over `bn_axis_name` when training)."""
    c = config.stl
    return stl.STLNet(split=bool(c.split), audio_channels=tuple(c.audio_channels),
                      audio_features=int(c.audio_features), template_features=int(c.template_features),
                      gru_features=int(c.gru_features), head_audio=str(c.head_audio),
                      head_template_in_gru=bool(c.head_template_in_gru),
                      head_lip_state=str(c.head_lip_state), bn_axis_name=bn_axis_name,
                      dtype=compute_dtype(config))


def stl_inputs(config, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Placeholder (mfcc [batch, clip_len, W, n_mfcc], template [batch, 68, 2]) for init and shape checks."""
    c = config.stl
    return (np.zeros((batch, c.clip_len, c.mfcc_window, c.n_mfcc), np.float32),
            np.full((batch, 68, 2), 0.5, np.float32))


def init_stl(config, rng: jax.Array) -> dict[str, Any]:
    """Initial STL variables {'params', 'batch_stats'}."""
    mfcc, template = stl_inputs(config)
    return build_stl(config).init(rng, mfcc, template, train=False)


def generator_spec(config) -> tuple[str, dict[str, Any]]:
    """(preset name, field overrides) of `config.ltv.generator` / `config.ltv.generator_overrides`."""
    c = config.ltv
    preset = c.generator
    if not isinstance(preset, str):
        raise InputError("config.ltv.generator must be a preset name (field changes go in "
                         "config.ltv.generator_overrides); a saved config with a dict there is converted when "
                         "read (thflax.inference.params.config_from_json)")
    if preset not in ltv.GENERATOR_PRESETS:
        raise InputError(f"unknown generator preset {preset!r}; expected one of: {', '.join(ltv.GENERATOR_PRESETS)}")
    overrides = c.get("generator_overrides") or {}
    return preset, (overrides.to_dict() if hasattr(overrides, "to_dict") else dict(overrides))


def upgrade_saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config (as a plain dict) in today's schema; `saved` itself is left as it was.

    Configs saved before `ltv.generator_overrides` existed may hold a dict of `ltv.Generator` fields in
    `ltv.generator`: it becomes the preset closest to it plus the fields where they differ
    (`ltv.preset_and_overrides`), which builds the same network. STL configs saved before
    `stl.head_lip_state` existed built the paper's head branch: "none" (today's default differs)."""
    stl_cfg = saved.get("stl")
    if isinstance(stl_cfg, dict) and "head_lip_state" not in stl_cfg:
        saved = {**saved, "stl": {**stl_cfg, "head_lip_state": "none"}}
    old = saved.get("ltv")
    if not isinstance(old, dict) or not isinstance(old.get("generator"), dict):
        return saved
    preset, overrides = ltv.preset_and_overrides(old["generator"])
    return {**saved, "ltv": {**old, "generator": preset,
                             "generator_overrides": {**overrides, **(old.get("generator_overrides") or {})}}}


def build_generator(config) -> ltv.Generator:
    """The LTV generator of `config.ltv`: a preset with its overrides, the attention switch, precision and
    channel padding from the config."""
    preset, overrides = generator_spec(config)
    c = config.ltv
    # The config's own switches win over an override of the same field (as they did over a dict's).
    return ltv.make_generator(preset, **{**overrides, "attention": bool(c.attention), "dtype": compute_dtype(config),
                                         "channel_multiple": int(c.conv_channel_multiple)})


def init_generator(config, rng: jax.Array) -> dict[str, Any]:
    """Initial generator variables {'params'} at `config.ltv.image_size`."""
    return ltv.init_generator(build_generator(config), rng, int(config.ltv.image_size))


def build_discriminator(config) -> ltv.Discriminator:
    c = config.ltv
    return ltv.Discriminator(base_channels=int(c.disc_channels), num_layers=int(c.disc_layers),
                             channel_multiple=int(c.conv_channel_multiple), dtype=compute_dtype(config))


def build_syncnet(config, bn_axis_name: str | None = None) -> syncnet.SyncNet:
    """The lip-sync expert of `config.syncnet` (InputError if its input is too small for the video tower)."""
    c = config.syncnet
    syncnet.lip_feature_size(*(int(v) for v in c.image_size), bool(c.stem_pool))
    return syncnet.SyncNet(lip_channels=tuple(c.lip_channels), audio_channels=tuple(c.audio_channels),
                           fc_features=int(c.fc_features), embed_features=int(c.embed_features),
                           stem_pool=bool(c.stem_pool), audio_norm=str(c.audio_norm), video_norm=str(c.video_norm),
                           bn_axis_name=bn_axis_name,
                           dtype=compute_dtype(config))


def syncnet_input(config) -> syncnet.InputSpec:
    """What the expert of `config.syncnet` reads of a face crop: its mouth region, RGB in [-1, 1]."""
    c = config.syncnet
    return syncnet.InputSpec(region=tuple(float(v) for v in c.region), size=tuple(int(v) for v in c.image_size))


def init_syncnet(config, rng: jax.Array) -> dict[str, Any]:
    """Initial expert variables {'params'} and, with BatchNorm, {'batch_stats'}."""
    c = config.syncnet
    mfcc = jnp.zeros((1, int(c.n_mfcc), syncnet.MFCC_FRAMES))
    frames = jnp.zeros((1, syncnet.FRAMES) + tuple(int(v) for v in c.image_size) + (3,))
    return jax.jit(build_syncnet(config).init)(rng, mfcc, frames)


def jsonable(x: Any) -> Any:
    """`x` as it reads back from JSON (tuples become lists), so saved and fresh signatures compare equal."""
    return json.loads(json.dumps(x))


def _stl_signature(config) -> dict[str, Any]:
    c = config.stl
    keys = ("split", "audio_channels", "audio_features", "template_features", "gru_features", "mfcc_window",
            "n_mfcc")
    # The head branch's options only when they differ from the paper's: checkpoints and bundles saved
    # before they existed keep their signature.
    extra = {k: c[k] for k, paper in (("head_audio", "own"), ("head_template_in_gru", False),
                                      ("head_lip_state", "none")) if c[k] != paper}
    return {"stage": "stl", **{k: c[k] for k in keys}, **extra}


def _ltv_signature(config) -> dict[str, Any]:
    c = config.ltv
    preset, overrides = generator_spec(config)
    overrides = {k: v for k, v in overrides.items() if k not in ltv.RUNTIME_FIELDS}
    # A plain preset is saved by name; with overrides, as the dict of Generator fields that older
    # versions saved for a dict-valued ltv.generator.
    generator = {**ltv.GENERATOR_PRESETS[preset], **overrides} if overrides else preset
    return {"stage": "ltv", "generator": generator, "attention": bool(c.attention), "image_size": int(c.image_size),
            "disc_channels": int(c.disc_channels), "disc_layers": int(c.disc_layers)}


def _syncnet_signature(config) -> dict[str, Any]:
    c = config.syncnet
    keys = ("lip_channels", "audio_channels", "fc_features", "embed_features", "stem_pool", "audio_norm", "video_norm", "region",
            "image_size", "n_mfcc")
    return {"stage": "syncnet", **{k: c[k] for k in keys}}


_SIGNATURES = {"stl": _stl_signature, "ltv": _ltv_signature, "syncnet": _syncnet_signature}


def signature(config, stage: str) -> dict[str, Any]:
    """The config fields stage `stage`'s parameters depend on, JSON-normalised."""
    return jsonable(_SIGNATURES[stage](config))


def _architecture(generator: Any) -> Any:
    """A signature's generator entry (preset name or dict of fields) as its full field dict, less
    `attention` (the builder takes it from config.ltv.attention, which the signature holds itself)."""
    fields = ltv.generator_fields(generator)
    fields.pop("attention", None)
    return jsonable(fields)


def same_signature(saved: Any, current: Any) -> bool:
    """Whether parameters saved under signature `saved` fit a model of signature `current`.

    Equal signatures match; LTV signatures also match when their generators name the same fields
    however written (a preset name, or the dict of fields of an older config), so checkpoints and
    bundles from before `ltv.generator_overrides` keep loading."""
    if saved == current:
        return True
    if not (isinstance(saved, dict) and isinstance(current, dict)) or saved.get("stage") != "ltv":
        return False
    try:
        return ({**saved, "generator": _architecture(saved.get("generator"))}
                == {**current, "generator": _architecture(current.get("generator"))})
    except (KeyError, TypeError, ValueError):  # an unknown preset name or a malformed entry: no match
        return False
