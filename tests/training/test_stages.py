"""Tests of the stage loop (thflax/training/stages.py) with fakes for the tasks, the data and the trainer:
every task is built before the dataset is prepared or any stage trains (a mistake in a later stage's
config must cost no training), stages train in order, and the callbacks see each one."""

from __future__ import annotations

import types

import pytest

from thflax.errors import InputError
from thflax.training import stages


@pytest.fixture
def events(monkeypatch) -> list[tuple]:
    """What the fakes were asked to do, in order."""
    log: list[tuple] = []

    class Task:
        def __init__(self, name: str):
            self.name = name

    def get_task(config, stage):
        if stage == "bad":
            raise InputError("unknown stage 'bad'")
        log.append(("task", stage))
        return Task(stage)

    monkeypatch.setattr(stages.tasks, "get_task", get_task)
    monkeypatch.setattr(stages.pipeline, "get_builder", lambda data: log.append(("prepare",)) or "built")
    monkeypatch.setattr(stages.pipeline, "StageData", lambda config, task, builder: (task.name, builder))
    monkeypatch.setattr(stages.trainer, "train_stage",
                        lambda config, workdir, task, data: log.append(("train", task.name, workdir, data)))
    return log


def test_tasks_first_then_the_data_then_each_stage_in_order(events: list[tuple]) -> None:
    started, done = [], []
    secs = stages.train_stages(types.SimpleNamespace(data=None), "wd", ["stl", "ltv"], on_start=started.append,
                               on_done=lambda s, t: done.append((s, t)))
    assert events == [("task", "stl"), ("task", "ltv"), ("prepare",),
                      ("train", "stl", "wd", ("stl", "built")), ("train", "ltv", "wd", ("ltv", "built"))]
    assert started == ["stl", "ltv"] and [s for s, _ in done] == ["stl", "ltv"]
    assert list(secs) == ["stl", "ltv"] and all(t >= 0 for t in secs.values())


def test_a_bad_later_stage_fails_before_any_preparation_or_training(events: list[tuple]) -> None:
    with pytest.raises(InputError, match="unknown stage"):
        stages.train_stages(types.SimpleNamespace(data=None), "wd", ["stl", "bad"])
    assert events == [("task", "stl")]


def test_a_given_builder_is_not_prepared_again(events: list[tuple]) -> None:
    stages.train_stages(types.SimpleNamespace(data=None), "wd", ["stl"], builder="mine")
    assert ("prepare",) not in events and events[-1] == ("train", "stl", "wd", ("stl", "mine"))
