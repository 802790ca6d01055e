"""Training stages one after another on one prepared dataset: the loop train.py, demo.py and reproduce.py
share (build each stage's task, its data, train it with `trainer.train_stage`, time it).

Every task is built before any stage trains: a mistake in a later stage's config (an unknown stage, a
missing perceptual network) then fails before minutes of the earlier stage's training, and, when the
dataset is prepared here, before that preparation. Each stage resumes from its own newest checkpoint
(`trainer.train_stage`), so rerunning the same call continues where an interrupted one stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from input_pipeline import pipeline
from thflax.configlib import ConfigDict
from thflax.training import tasks, trainer


def train_stages(config: ConfigDict, workdir: str, stages: Sequence[str], builder: Any = None,
                 on_start: Callable[[str], None] | None = None,
                 on_done: Callable[[str, float], None] | None = None) -> dict[str, float]:
    """Trains `stages` (names in `tasks.STAGES`), in order, into <workdir>/<stage>.

    `builder`: the prepared TFDS dataset; None prepares `config.data`'s (after the tasks are built).
    `on_start(stage)` runs just before a stage trains and `on_done(stage, seconds)` just after (the
    scripts' progress lines). Returns each stage's training seconds (its data and trainer, not the
    task's construction).
    """
    stage_tasks = [tasks.get_task(config, stage) for stage in stages]
    if builder is None:
        builder = pipeline.get_builder(config.data)
    seconds: dict[str, float] = {}
    for task in stage_tasks:
        if on_start is not None:
            on_start(task.name)
        t0 = time.time()
        trainer.train_stage(config, workdir, task, pipeline.StageData(config, task, builder))
        seconds[task.name] = time.time() - t0
        if on_done is not None:
            on_done(task.name, seconds[task.name])
    return seconds
