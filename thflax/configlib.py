"""ml_collections' ConfigDict, with a minimal stand-in where ml_collections is not installed.

Training, evaluation and the CLIs use ml_collections (config files, `--config.x=y` overrides). The
stand-in exists only so the model-level code paths (configs, tasks, benchmarks, model tests) also
run on accelerator images that ship jax/flax/optax but not ml_collections — e.g. the GPU hosts
`benchmarks/gpu_check.sh` targets. It supports what those paths use: attribute access, nested dicts,
`get`, `to_dict`, `to_json`.
"""

from __future__ import annotations

import json
from typing import Any

try:  # pragma: no cover - the normal case
    from ml_collections import ConfigDict
    from ml_collections.config_dict import placeholder
except ImportError:  # pragma: no cover - exercised on accelerator hosts only

    class ConfigDict(dict):
        """dict with attribute access; nested dicts become ConfigDicts."""

        def __init__(self, initial: dict | None = None, **kwargs: Any):
            super().__init__()
            for k, v in {**(initial or {}), **kwargs}.items():
                self[k] = v

        def __setitem__(self, key, value):
            super().__setitem__(key, ConfigDict(value) if isinstance(value, dict) and not isinstance(value, ConfigDict) else value)

        def __getattr__(self, key):
            try:
                return self[key]
            except KeyError as e:
                raise AttributeError(key) from e

        def __setattr__(self, key, value):
            self[key] = value

        def to_dict(self) -> dict:
            return {k: v.to_dict() if isinstance(v, ConfigDict) else v for k, v in self.items()}

        def to_json(self, **kwargs) -> str:
            return json.dumps(self.to_dict(), **kwargs)

    def placeholder(field_type, required: bool = False):
        del field_type, required
        return None


__all__ = ["ConfigDict", "placeholder"]


def load_config_file(path: str):
    """`get_config()` of a config file given by path (like `--config configs/x.py` of train.py)."""
    import importlib.util
    import os

    from thflax.errors import InputError

    if not os.path.isfile(path):
        raise InputError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location("thflax_user_config", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "get_config"):
        raise InputError(f"{path} has no get_config()")
    return mod.get_config()
