"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import os

#: The repository root (tests/ and its subfolders compute paths from it: the scripts run with it as cwd).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_config(**fields):
    """`config.data` of the default schema with `fields` set."""
    from configs import default

    c = default.get_config().data
    for k, v in fields.items():
        c[k] = v
    return c


@contextlib.contextmanager
def optimized():
    """XLA's optimisations on (tests/conftest.py turns them off): for runs of hundreds of steps."""
    import jax

    old = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", old)


def train(config, workdir: str, stage: str):
    """Trains one stage on `config.data` as train.py does: (task, final state)."""
    from input_pipeline import pipeline
    from thflax.training import tasks, trainer

    task = tasks.get_task(config, stage)
    return task, trainer.train_stage(config, workdir, task, pipeline.StageData(config, task))


def train_all(config, workdir: str) -> None:
    """Trains every stage of `config` into `workdir`."""
    from thflax.training import tasks

    for stage in tasks.stage_names("all"):
        train(config, workdir, stage)


def dlib_errors(frames, truth):
    """dlib's landmarks on rendered frames vs the renderer's truth: (per-point errors [T, 68] px,
    dlib's inner-mouth opening [T] px). Fails if dlib finds no face in a frame."""
    import numpy as np

    from thflax.synthetic import base_face

    errs, opening = [], []
    for f, gt in zip(frames, truth):
        p = base_face.detect_landmarks(f, 1)
        assert p is not None, "dlib found no face"
        errs.append(np.linalg.norm(p - gt, axis=-1))
        opening.append(np.linalg.norm(p[62] - p[66]))
    return np.array(errs), np.array(opening)


# Open vowels / diphthongs starting open, and bilabial closures.
OPEN_VOWELS = {"a", "aI", "aU", "A:", "a#", "V", "A@"}


def clean_phoneme(p: str) -> str:
    """An eSpeak phoneme name without its stress marks (' and ,)."""
    return p.replace("'", "").replace(",", "")


@contextlib.contextmanager
def sigint_delivered():
    """Children started inside get SIGINT's default disposition, as from an interactive shell.

    A background job of a non-interactive shell (`make test &`, nohup, some CI runners) starts with SIGINT
    ignored; children inherit an ignored signal, and the CLIs rightly leave it ignored, so a test that sends
    Ctrl-C would see it lost. A handled signal is reset to the default at exec: handling it here meanwhile
    gives the child the default."""
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
