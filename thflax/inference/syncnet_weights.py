"""The public SyncNet's weights (syncnet_python's `syncnet_v2.model`, the network LSE-C / LSE-D are reported
with) converted for `thflax.models.syncnet`, and the file they are kept in:

    python -m thflax.inference.syncnet_weights --torch syncnet_v2.model --out syncnet_public.msgpack
    python evaluate.py --checkpoint runs/demo --syncnet syncnet_public.msgpack   (LSE-C/D with them)

No package ships these weights and none can be fetched here: a user who has the file converts it once
(reading it needs PyTorch: `pip install -e '.[sync-reference]'`); the converted file needs neither PyTorch
nor its pickle. The conversion itself is `thflax.models.syncnet.from_torch`, tested layer by layer against
PyTorch (tests/models/test_syncnet.py).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from thflax.errors import InputError
from thflax.io import files
from thflax.models import syncnet

#: The converted file's format tag.
FORMAT = "thflax-syncnet-public"


def read_torch_checkpoint(path: str) -> dict[str, Any]:
    """syncnet_python's checkpoint (a pickled state dict) as {name: numpy array}; InputError (one line) if
    PyTorch is missing or the file is not one."""
    try:
        import torch
    except ImportError as e:
        raise InputError("reading a PyTorch checkpoint needs PyTorch: pip install -e '.[sync-reference]'") from e
    if not os.path.isfile(path):
        raise InputError(f"PyTorch checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
    except Exception as e:  # noqa: BLE001 - any unpickling failure: one line
        raise InputError(f"{path} is not a readable PyTorch state dict ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from e
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    if not isinstance(state, dict):
        raise InputError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in state.items()}


def save(path: str, variables: dict[str, Any]) -> None:
    """Writes converted public weights to `path` (msgpack), whole or not at all."""
    from flax import serialization

    blob = serialization.msgpack_serialize({"format": FORMAT, "variables": jax.tree.map(np.asarray, variables)})
    files.atomic_write(path, blob)


def is_public_file(path: str) -> bool:
    """Whether `path` is a file (the converted weights) rather than a workdir or an export bundle."""
    return os.path.isfile(path)


def load(path: str) -> tuple[syncnet.SyncNet, dict[str, Any]]:
    """(the public `SyncNet`, its variables) from a file `save` wrote; InputError (one line) otherwise."""
    from flax import serialization

    try:
        with open(path, "rb") as f:
            blob = serialization.msgpack_restore(f.read())
    except OSError as e:
        raise InputError(f"cannot read the SyncNet weights {path}: {e.strerror or e}") from e
    except Exception as e:  # noqa: BLE001 - not msgpack at all
        raise InputError(f"{path} is not a SyncNet weights file written by "
                         f"`python -m thflax.inference.syncnet_weights` ({type(e).__name__})") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(f"{path} is not a SyncNet weights file written by `python -m thflax.inference.syncnet_weights`")
    model = syncnet.SyncNet()
    syncnet.check_public_shapes(model, blob["variables"])
    return model, blob["variables"]


def main(argv) -> int:
    """The command line: converts --torch to --out."""
    from absl import flags

    del argv
    out = flags.FLAGS.out
    files.check_folder(out)  # before reading 52 MB
    _, variables = syncnet.from_torch(read_torch_checkpoint(flags.FLAGS.torch))
    save(out, variables)
    n = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(variables["params"]))
    print(f"converted {flags.FLAGS.torch} ({n / 1e6:.1f} M parameters, the public SyncNet layout) -> {out}")
    return 0


if __name__ == "__main__":
    from absl import flags

    from thflax import cli

    flags.DEFINE_string("torch", None, "syncnet_python's checkpoint (syncnet_v2.model).", required=True)
    flags.DEFINE_string("out", None, "Where the converted weights go (msgpack).", required=True)
    cli.run(main)
