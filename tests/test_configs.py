"""Configs and the command-line layer: one schema, every config runnable as documented, one-line errors."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import configs
from configs import default
from thflax import cli
from thflax.inference import params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = sorted(m.name for m in pkgutil.iter_modules(configs.__path__))


def _flat(c, prefix=""):
    out = {}
    for k, v in c.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("name", NAMES)
def test_every_config_has_exactly_the_schema_keys_and_its_command(name):
    mod = importlib.import_module(f"configs.{name}")
    keys = set(_flat(mod.get_config().to_dict()))
    assert keys == set(_flat(default.get_config().to_dict())), name
    assert f"configs/{name}.py" in mod.__doc__ and "python " in mod.__doc__  # the command that runs it


def test_saved_config_is_laid_over_the_schema():
    saved = default.get_config().to_dict()
    saved["stl"]["num_steps"] = 7
    saved["stl"]["audio_channels"] = [4, 8, 8]  # JSON turns tuples into lists
    del saved["ltv"]["mask_weight"]  # a key added to the schema after the checkpoint was written
    import json

    c = params.config_from_json(json.dumps(saved))
    assert c.stl.num_steps == 7 and c.stl.audio_channels == (4, 8, 8)
    assert c.ltv.mask_weight == default.get_config().ltv.mask_weight


def test_old_config_with_generator_fields_loads_and_builds_the_same_network():
    """Configs saved when config.ltv.generator could be a dict of Generator fields (checkpoints, export
    bundles) are converted when read into a preset + config.ltv.generator_overrides that builds the
    same network: the same fields, the same parameters for the same seed, a matching signature."""
    import json

    import jax
    import numpy as np

    from thflax.errors import InputError
    from thflax.models import build, ltv

    fields = {**ltv.GENERATOR_PRESETS["warp_tiny"], "mask_bias": -3.0, "use_reference_sketch": False}
    saved = default.get_config().to_dict()
    saved["ltv"]["generator"] = fields
    saved["ltv"].pop("generator_overrides")  # the old schema had no such key
    old_signature = {**build.signature(default.get_config(), "ltv"), "generator": fields}
    c = params.config_from_json(json.dumps(saved))
    assert isinstance(c.ltv.generator, str) and c.ltv.generator in ltv.GENERATOR_PRESETS
    g = build.build_generator(c)
    want = ltv.Generator(**fields)  # what the old builder made of the dict (attention and dtype as configured)
    assert g == want
    size = 32
    new_vars = ltv.init_generator(g, jax.random.PRNGKey(4), size)
    old_vars = ltv.init_generator(want, jax.random.PRNGKey(4), size)
    assert jax.tree.structure(new_vars) == jax.tree.structure(old_vars)
    for x, y in zip(jax.tree.leaves(new_vars), jax.tree.leaves(old_vars)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert build.same_signature(build.jsonable(old_signature), build.signature(c, "ltv"))
    # A preset name saved by an old version matches too, and another network does not.
    fast = build.signature(default.get_config(), "ltv")
    assert build.same_signature(fast, {**fast, "generator": {**ltv.GENERATOR_PRESETS["fast"]}})
    assert not build.same_signature(build.jsonable({**old_signature, "generator": "tiny"}), build.signature(c, "ltv"))
    # Today's schema round-trips; a dict given directly (not read as a saved config) is refused in one line.
    again = params.config_from_json(c.to_json())
    assert (again.ltv.generator, again.ltv.generator_overrides.to_dict()) == \
        (c.ltv.generator, c.ltv.generator_overrides.to_dict())
    raw = default.get_config()
    with raw.ignore_type():
        raw.ltv.generator = fields
    with pytest.raises(InputError, match="generator_overrides"):
        build.build_generator(raw)


def test_config_errors_become_one_readable_line():
    err = KeyError("""'num_step'\nDid you mean "num_steps" instead of "num_step"?""")
    assert cli._config_error(err) == "unknown config key 'num_step' (did you mean 'num_steps'?)"
    assert cli.DEFAULT_CONFIG.endswith(os.path.join("configs", "default.py")) and os.path.isfile(cli.DEFAULT_CONFIG)


def _run(script, *args):
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.cli
@pytest.mark.parametrize("script,args,message", [
    ("train.py", ["--config", "configs/nope.py", "--workdir", "x"], "config file not found: configs/nope.py"),
    ("train.py", ["--config", "configs/tiny.py", "--config.stl.num_step=3", "--workdir", "x"],
     "unknown config key 'num_step' (did you mean 'num_steps'?)"),
    ("train.py", ["--config", "configs/tiny.py", "--config.ltv.foo=1", "--workdir", "x"], "unknown config key 'ltv.foo'"),
    ("train.py", ["--config", "configs/tiny.py", "--config.stage=foo", "--workdir", "x"], "unknown stage 'foo'"),
    ("train.py", ["--config", "configs/tiny.py", "--config.ltv.generator=huge", "--workdir", "x"],
     "unknown generator preset 'huge'"),
    ("train.py", ["--config", "configs/tiny.py"], "--workdir must have a value"),
    # Without --checkpoint the shipped model is used: what is missing is the speech and the output.
    ("generate.py", ["--image", "a.png"], "missing --out, --audio or --text"),
    ("generate.py", ["--checkpoint", "x", "--image", "a.png", "--audio", "a.wav", "--out", "o.mp4", "--batch", "0"],
     "--batch"),
    ("generate.py", ["--checkpoint", "x", "--image", "a.png", "--audio", "a.wav", "--out", "o.mp4",
                     "--face_box", "1,2,3"], "--face_box takes four whole numbers"),
    ("evaluate.py", ["--checkpoint", "does/not/exist"], "checkpoint folder not found"),
    ("export.py", ["--workdir", "does/not/exist", "--out", "x"], "checkpoint folder not found"),
])
def test_command_line_mistakes_give_one_line_and_status_2(script, args, message, tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(errors) == 1 and message in errors[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not os.path.exists(os.path.join(ROOT, "x"))
