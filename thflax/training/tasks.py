"""The training stages: one `Task` protocol and one registry of stages.

A task is everything stage-specific that the generic loop (`thflax.training.trainer`) and the input pipeline
(`input_pipeline.pipeline`) need: its state, its per-device train and eval steps, its tf.data element
function and the config fields its parameters depend on. Adding a stage is a class implementing
`Task` and one line in `STAGES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

import jax
import numpy as np

from thflax.errors import InputError

#: Stage name -> "module:class" of its Task (imported on first use, so model code stays light).
STAGES: dict[str, str] = {
    "stl": "thflax.training.stl_stage:STLTask",
    "ltv": "thflax.training.ltv_stage:LTVTask",
    "syncnet": "thflax.training.syncnet_stage:SyncNetTask",
}
#: The generation model's stages, in order: what "all" trains. The lip-sync expert ("syncnet") measures
#: the model and is trained on its own (`python -m thflax.training.syncnet_stage`, or named in config.stage).
MODEL_STAGES = ("stl", "ltv")


class Task(Protocol):
    """What a training stage provides. `config` is the whole config; the stage reads `config.<name>`."""

    name: str

    def signature(self) -> dict[str, Any]:
        """Config fields the parameters depend on (`thflax.models.build.signature`)."""

    def init_state(self, rng: jax.Array) -> Any:
        """A fresh `TrainState`."""

    def train_step(self, state: Any, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[Any, dict]:
        """Per-device body for `parallel.data_parallel`: (new state, metrics incl. 'loss' and 'finite')."""

    def eval_step(self, state: Any, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[dict, Any]:
        """Per-device body for `parallel.data_parallel_eval`: (metrics, per-example outputs)."""

    def images(self, batch: dict[str, np.ndarray], outputs: Any) -> dict[str, np.ndarray]:
        """Images for TensorBoard from an eval batch and its outputs ({} for none)."""

    def check_data(self, metadata: Mapping[str, Any]) -> None:
        """Raises InputError if the prepared dataset (its TFDS metadata) cannot feed this stage."""

    def features(self, train: bool) -> tuple[str, ...]:
        """The dataset features `elements` reads; the input pipeline parses only these."""

    def elements_per_example(self, train: bool) -> int:
        """How many training elements `elements` makes of one dataset example."""

    def elements(self, example: dict, seed: Any, train: bool) -> dict:
        """tf.data element function: one dataset example -> a dict of tensors whose leading axis has
        `elements_per_example(train)` entries; all randomness from the stateless `seed` [2]."""


def stage_names(stage: str) -> list[str]:
    """The stages `config.stage` asks for: "all" is the generation model's (`MODEL_STAGES`) in order."""
    if stage == "all":
        return list(MODEL_STAGES)
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; expected one of: all, {', '.join(STAGES)}")
    return [stage]


def get_task(config, stage: str) -> Task:
    """The task object of stage `stage` for `config`."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; expected one of: {', '.join(STAGES)}")
    module, cls = STAGES[stage].split(":")
    return getattr(importlib.import_module(module), cls)(config)
