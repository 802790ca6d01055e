"""The trained model that ships in the package, used when no checkpoint is given.

`thflax/assets/model` is an export bundle (`thflax.inference.params.export`) of configs/shipped.py,
described (recipe, held-out figures, what it can and cannot do) by its MODEL_CARD.md.
"""

from __future__ import annotations

import os

from thflax.errors import InputError
from thflax.inference import params

#: The shipped export bundle (package data: installed with the package).
SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "model")


def checkpoint_or_shipped(checkpoint: str | None) -> str:
    """`checkpoint` when given, else the shipped bundle's folder.

    Raises InputError (one line) when none is given and the package was installed without the bundle.
    """
    if checkpoint:
        return checkpoint
    if not params.is_export(SHIPPED_MODEL):
        raise InputError(f"no --checkpoint given and this installation has no shipped model (expected "
                         f"{os.path.join(SHIPPED_MODEL, params.EXPORT_FILE)}): give a training workdir or an "
                         "export bundle")
    return SHIPPED_MODEL
