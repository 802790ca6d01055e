"""Trained parameters for inference, from a training workdir or an export bundle; and `export`.

Inference needs only the networks' parameters (and the STL net's BatchNorm statistics), never an
optimiser or the discriminator. `load_params(path, stage)` reads them from either

* a training workdir (`<workdir>/<stage>/checkpoints`, the newest intact orbax checkpoint; EMA
  parameters where the run kept them), or
* an export bundle written by `export(workdir, out)`: a folder with `thflax_export.json` (the
  config, each stage's model signature, the checksum of the parameters file) and `params.msgpack`
  (flax msgpack of {"stl": {"params", "batch_stats"}, "ltv": {"params"}}, and "syncnet": {"params",
  "batch_stats"} when the workdir has the lip-sync expert). It is a fraction of the size of the training
  checkpoints and needs no orbax to read.

The lip-sync expert (`EXPERT`, "syncnet": `thflax.training.syncnet_stage`) is read the same way; a workdir
holding only the expert exports a bundle of the expert alone.

The config is the one saved at training time, laid over `configs/default.py` so that keys added to
the schema since then take their defaults. A given config must produce the saved model signature.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from thflax.io import files
from thflax.errors import CheckpointError, InputError

EXPORT_FILE = "thflax_export.json"
PARAMS_FILE = "params.msgpack"
STAGES = ("stl", "ltv")
#: The lip-sync expert's stage: measured with, not generated with; in a bundle when its workdir has it.
EXPERT = "syncnet"
#: Each stage's network inside its train state, and whether it has BatchNorm statistics.
_NETWORK = {"stl": ("stl", True), "ltv": ("generator", False), EXPERT: ("syncnet", True)}


def is_export(path: str) -> bool:
    return os.path.isfile(os.path.join(path, EXPORT_FILE))


def has_params(path: str, stage: str) -> bool:
    """Whether `path` (a training workdir or an export bundle) holds parameters of `stage`."""
    if is_export(path):
        try:
            return stage in _read_export(path).get("signatures", {})
        except CheckpointError:
            return False
    return os.path.isdir(os.path.join(path, stage, "checkpoints"))


def _checkpoint_dir(workdir: str, stage: str) -> str:
    path = os.path.join(workdir, stage, "checkpoints")
    if not os.path.isdir(path):
        raise CheckpointError(f"{workdir} is neither an export bundle nor a training workdir with a {stage} "
                              f"checkpoint (expected {path})")
    return path


def config_from_json(text: str | dict):
    """A saved config (JSON) laid over the default schema (`configs/default.py`).

    Every saved config is read here, so older schemas are converted here, once
    (`thflax.models.build.upgrade_saved_config`: e.g. `ltv.generator` as a dict of fields)."""
    from configs import default
    from thflax.models import build

    saved = build.upgrade_saved_config(json.loads(text) if isinstance(text, str) else text)
    config = default.get_config()

    def merge(dst, src: dict):
        for k, v in src.items():
            if isinstance(v, dict) and k in dst and hasattr(dst[k], "keys"):
                merge(dst[k], v)
            else:
                old = dst[k] if k in dst else None
                dst[k] = tuple(v) if isinstance(old, tuple) and isinstance(v, list) else v

    merge(config, saved)
    return config


def _read_export(path: str) -> dict[str, Any]:
    try:
        with open(os.path.join(path, EXPORT_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"export bundle {path}: {EXPORT_FILE} is unreadable ({e})") from e


def load_config(path: str):
    """The config a workdir (its STL checkpoint) or an export bundle was trained with."""
    if not os.path.isdir(path):
        raise CheckpointError(f"checkpoint folder not found: {path}")
    if is_export(path):
        return config_from_json(_read_export(path)["config"])
    from thflax.io import checkpoint

    # The generation model's config (its STL stage's), or an expert's own where the workdir has only that.
    first = "stl" if has_params(path, "stl") or not has_params(path, EXPERT) else EXPERT
    ckpt = checkpoint.Checkpointer(_checkpoint_dir(path, first), read_only=True)
    try:
        # The newest step whose metadata reads (silently: loading the parameters reports a damaged step).
        saved = ckpt.restore_newest(ckpt.restore_meta)[0].get("config")
    finally:
        ckpt.close()
    if saved is None:
        raise CheckpointError(f"the checkpoint in {path} has no saved config; pass one")
    return config_from_json(saved)


def _check_signature(saved: Any, config, stage: str, where: str, given: bool) -> None:
    from thflax.models import build

    if not build.same_signature(saved, build.signature(config, stage)):
        than = "than the one given" if given else "than the saved one (the STL stage's)"
        raise CheckpointError(f"the {stage} parameters in {where} were trained with a different {stage} "
                              f"configuration {than}")


def _from_workdir(workdir: str, stage: str, config, given: bool) -> dict[str, Any]:
    from thflax.io import checkpoint

    ckpt = checkpoint.Checkpointer(_checkpoint_dir(workdir, stage), read_only=True)
    try:
        if ckpt.latest_step() is None:
            raise CheckpointError(f"no {stage} checkpoint in {ckpt.directory}")
        # Training's fallback (checkpoint.Checkpointer.restore_newest): the newest step that verifies and
        # reads; a step without an integrity record is read unverified, and skipped if it does not read.
        (state, meta), step, skipped = ckpt.restore_newest(ckpt.restore_arrays)
        for s, why in skipped:
            logging.warning("%s: skipped checkpoint step %d, using step %d: %s", stage, s, step, why)
    finally:
        ckpt.close()
    _check_signature(meta.get("model"), config, stage, ckpt.directory, given)
    net, has_stats = _NETWORK[stage]
    ema = state.get("ema_params") or {}
    params = ema[net] if ema.get(net) else state["params"][net]
    variables = {"params": params}
    if has_stats:
        variables["batch_stats"] = (state.get("batch_stats") or {}).get(net) or {}
    return variables


def _from_export(path: str, stage: str, config, given: bool) -> dict[str, Any]:
    from flax import serialization

    info = _read_export(path)
    if stage not in info.get("signatures", {}):
        raise CheckpointError(f"export bundle {path} has no {stage} parameters")
    _check_signature(info.get("signatures", {}).get(stage), config, stage, path, given)
    file = os.path.join(path, PARAMS_FILE)
    try:
        with open(file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"export bundle {path}: cannot read {PARAMS_FILE} ({e.strerror})") from e
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise CheckpointError(f"export bundle {path}: {PARAMS_FILE} is corrupt (checksum differs from "
                              f"{EXPORT_FILE})")
    return serialization.msgpack_restore(data)[stage]


def load_params(path: str, stage: str, config=None) -> tuple[dict[str, Any], Any]:
    """(variables, config) of stage "stl" ({'params', 'batch_stats'}), "ltv" ({'params'} of the generator) or
    the expert, "syncnet" ({'params', 'batch_stats'}).

    `path` is a training workdir or an export bundle; `config` defaults to the saved one.
    """
    if stage not in _NETWORK:
        raise ValueError(f"unknown stage {stage!r}")
    given = config is not None
    config = load_config(path) if config is None else config
    loader = _from_export if is_export(path) else _from_workdir
    return loader(path, stage, config, given), config


def export(workdir: str, out: str, overwrite: bool = False, head_gain: float | None = None) -> dict[str, Any]:
    """Writes the parameters-only bundle of a trained workdir to folder `out` (atomically); returns its info.

    `head_gain` replaces the saved `stl.head_gain` (inference only: a gain chosen on validation after
    training, `benchmarks/head_gain.py`); None keeps it."""
    if head_gain is not None and not (isinstance(head_gain, (int, float)) and 0 < head_gain <= 3):
        raise InputError(f"head_gain must be a number in (0, 3], not {head_gain!r}")
    if is_export(workdir):
        raise InputError(f"{workdir} is already an export bundle")
    if os.path.exists(out) and not (overwrite and is_export(out)):
        raise InputError(f"{out} exists; choose a new folder" + ("" if not is_export(out) else " or overwrite"))
    files.check_folder(out, creates_folder=True)  # a missing or unwritable folder fails now, not after loading
    config = load_config(workdir)
    if head_gain is not None:
        config.stl.head_gain = float(head_gain)
    # The generation model's stages (all required), and the lip-sync expert where the workdir has it; a
    # workdir of the expert alone exports the expert alone.
    stages = list(STAGES) if has_params(workdir, "stl") or not has_params(workdir, EXPERT) else []
    stages += [EXPERT] if has_params(workdir, EXPERT) else []
    return export_variables(config, {s: load_params(workdir, s, config)[0] for s in stages}, out,
                            source=os.path.abspath(workdir))


def export_variables(config, variables: dict[str, Any], out: str, source: str = "") -> dict[str, Any]:
    """Writes the bundle of `config` with `variables` ({"stl": STL variables, "ltv": generator variables,
    optionally "syncnet": the lip-sync expert's}) to the new folder `out` (atomically); returns its info.
    `export` gives it a workdir's; benchmarks and tests give it randomly initialised ones (`source` says
    where they came from)."""
    import jax
    from flax import serialization

    from thflax.models import build

    stages = list(variables)
    tree = {s: jax.tree.map(np.asarray, variables[s]) for s in stages}
    data = serialization.msgpack_serialize(tree)
    info = {"format": "thflax-export", "version": 1, "config": config.to_json(),
            "signatures": {s: build.signature(config, s) for s in stages},
            "params_file": PARAMS_FILE, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "source": source}
    _write_bundle(out, {PARAMS_FILE: data, EXPORT_FILE: json.dumps(info, indent=1).encode()})
    return info


def _write_bundle(out: str, contents: dict[str, bytes]) -> None:
    """Writes folder `out` holding `contents` ({file name: bytes}) whole or not at all.

    The files go to a temporary folder beside `out`, which is renamed into place once complete; a bundle
    already at `out` (--overwrite) is moved aside first and put back if the new one cannot take its place,
    and deleted only after. Any OSError (full disk, read-only file system, no permission, missing folder)
    leaves no temporary folder and becomes one OutputError line naming `out` and the cause (files.CAUSES).
    """
    parent = os.path.dirname(os.path.abspath(out))
    try:
        tmp = tempfile.mkdtemp(prefix=".thflax-export-", dir=parent)
    except OSError as e:
        raise files.output_error(out, e) from e
    old = None
    try:
        mode = 0o777 & ~files.umask()  # mkdtemp's folder is 0700: give it (and the files) the umask's mode
        for name, data in contents.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
            os.chmod(os.path.join(tmp, name), mode & 0o666)
        os.chmod(tmp, mode)
        if os.path.exists(out):  # a folder cannot be renamed over a non-empty one: move the old bundle aside
            os.replace(out, tmp + "-old")
            old = tmp + "-old"
        try:
            os.replace(tmp, out)
        except OSError:
            if old is not None:
                os.replace(old, out)  # the previous bundle back where it was
                old = None
            raise
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise files.output_error(out, e) from e
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
