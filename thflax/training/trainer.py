"""The outer training loop shared by both stages: data, checkpoints, metrics, NaN guard, profiling.

Side effects live here; the stage modules (`train_stl`, `train_ltv`) provide pure per-device step
functions. Resume is exact: the state (params, optimiser, step, RNG) comes from the newest intact
(verified) orbax checkpoint and the data stream is re-created from that step (`StageData.train`), so a run
killed at any point and restarted ends with the same parameters as an uninterrupted one.

Progress: a tqdm bar when stderr is a terminal; otherwise (a log file, a batch job) clu's
`ReportProgress` logs steps/s and the ETA and writes `steps_per_sec` to TensorBoard. Each stage
starts by writing its config as TensorBoard hparams (process 0).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, Protocol

import jax
import numpy as np

from thflax.io import checkpoint
from thflax.io.signals import signals_deferred
from thflax.training import parallel
from thflax.configlib import ConfigDict
from thflax.training.tasks import Task


class NonFiniteLossError(FloatingPointError):
    """Raised when a step produced a NaN/inf loss or gradient; the state was not updated."""


class StageData(Protocol):
    """The datasets a stage trains on (`input_pipeline.pipeline.StageData` is the TFDS one)."""

    metadata: dict[str, Any]  # the prepared dataset's metadata, for `Task.check_data`

    def train(self, start_step: int = 0, num_devices: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """This host's training batches from `start_step` on."""

    def eval(self) -> list[dict[str, np.ndarray]]:
        """This host's held-out batches."""


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in metrics.items()}


def flat_hparams(config: ConfigDict) -> dict[str, bool | int | float | str]:
    """The config as TensorBoard hparams: {"stl.batch_size": 8, ...}, non-scalars as text."""
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(v, f"{key}.")
            elif isinstance(v, (bool, int, float, str)):
                out[key] = v
            else:  # None, tuples, lists
                out[key] = str(v)

    walk(config.to_dict(), "")
    return out


def _restore(ckpt: checkpoint.Checkpointer, state, task: Task):
    """The newest intact checkpoint restored into `state`'s structure (refusing another config's)."""
    from thflax.models import build

    def check_config(meta):
        if meta.get("model") and not build.same_signature(meta["model"], task.signature()):
            raise checkpoint.CheckpointError(
                f"checkpoint in {ckpt.directory} was trained with a different {task.name} config; "
                "use another --workdir or the original config")

    try:  # another config is named as such, before its arrays fail to fit this one's
        check_config(ckpt.restore_meta())
    except checkpoint.CorruptCheckpointError:
        pass  # the newest step is damaged: restore_latest_intact falls back and says so
    state, meta, step, skipped = ckpt.restore_latest_intact(state)
    check_config(meta)
    for s, why in skipped:
        if jax.process_index() == 0 and s > step:  # moved aside so that step can be saved again
            where = ckpt.quarantine(s)
            why = f"{why} (moved to {where})"
        logging.warning("%s: skipped checkpoint step %d: %s", task.name, s, why)
    logging.info("Resumed %s from step %d", task.name, step)
    return state


def train_stage(config: ConfigDict, workdir: str, task: Task, data: StageData):
    """Trains `task` for config.<stage>.num_steps on `data`, resuming from `workdir`; returns the final state."""
    from clu import metric_writers, periodic_actions
    from tqdm import tqdm

    stage = task.name
    scfg = config[stage]
    tcfg = config.train
    stage_dir = os.path.join(workdir, stage)
    is_main = jax.process_index() == 0
    mesh = parallel.make_mesh()
    ckpt = checkpoint.Checkpointer(os.path.join(stage_dir, "checkpoints"), max_to_keep=tcfg.max_to_keep,
                                   async_save=tcfg.async_checkpoint)

    task.check_data(data.metadata)  # before any work: a dataset of another crop size fails at once
    state = parallel.replicate(task.init_state(jax.random.PRNGKey(int(config.seed))), mesh)
    if ckpt.latest_step() is not None:
        state = _restore(ckpt, state, task)
    start_step = int(np.asarray(state.step))
    num_steps = int(scfg.num_steps)
    if start_step >= num_steps:
        logging.info("%s already trained for %d steps", stage, start_step)
        ckpt.close()
        return state

    # clu's default writer (the log and, on process 0, TensorBoard), with TensorBoard kept apart for
    # ReportProgress: its steps/s go to TensorBoard, the log gets its one progress line.
    summary = metric_writers.SummaryWriter(stage_dir) if is_main else None
    writer = metric_writers.MultiWriter([metric_writers.LoggingWriter()] + ([summary] if summary else []))
    if is_main:
        writer.write_hparams(flat_hparams(config))
    batches = parallel.prefetch_to_mesh(data.train(start_step, num_devices=jax.local_device_count()), mesh,
                                        size=int(tcfg.device_prefetch))
    eval_batches = [parallel.global_batch(b, mesh) for b in data.eval()]
    p_train = parallel.data_parallel(task.train_step, mesh)
    p_eval = parallel.data_parallel_eval(task.eval_step, mesh)
    base_rng = jax.random.wrap_key_data(np.asarray(jax.device_get(state.rng)))
    meta = {"model": task.signature(), "config": config.to_json()}

    def check(step, m):
        if float(np.asarray(m["finite"])) < 1.0:
            ckpt.wait()
            last = ckpt.latest_intact_step()
            raise NonFiniteLossError(
                f"{stage}: non-finite loss or gradient at step {step} (loss={float(np.asarray(m['loss']))}); "
                f"the update was discarded; last good (verified) checkpoint: step {last} in {ckpt.directory}")

    def save(step):
        with signals_deferred():  # a signal raised inside orbax's save would hang the exit
            ckpt.save(step, state, meta)

    profile = int(tcfg.profile_steps)
    profile_start = start_step + int(tcfg.profile_start)
    on_terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())  # tqdm for people, ReportProgress for logs
    bar = tqdm(total=num_steps, initial=start_step, desc=stage, disable=not (is_main and on_terminal),
               dynamic_ncols=True)
    progress = None
    if is_main and not on_terminal:
        progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=summary, every_secs=60.0,
                                                   every_steps=int(tcfg.log_every))
    timed = progress.timed if progress else (lambda name: contextlib.nullcontext())
    pending = None  # previous step's metrics, checked one step late so the host does not stall devices
    t0, s0 = time.time(), start_step
    data_wait = 0.0  # seconds the loop blocked on the input since the last log line
    try:
        for step in range(start_step, num_steps):
            if profile and step == profile_start:
                jax.profiler.start_trace(os.path.join(stage_dir, "profile"))
            t_wait = time.perf_counter()
            batch = next(batches)
            data_wait += time.perf_counter() - t_wait
            state, m = p_train(state, batch, jax.random.fold_in(base_rng, step))
            if profile and step == profile_start + profile - 1:
                jax.block_until_ready(state)
                jax.profiler.stop_trace()
            ckpt.check()  # a failed background save is reported at once
            if pending is not None:
                check(*pending)
            pending = (step + 1, m)
            bar.update(1)
            done = step + 1
            if progress:
                progress(done)
            if done % tcfg.log_every == 0 or done == num_steps:
                check(*pending)
                scalars = _scalars(m)
                now = time.time()
                scalars["steps_per_sec"] = (done - s0) / max(now - t0, 1e-9)
                # The share of wall time the loop waited for a batch. An upper bound on the devices' wait: the
                # step dispatched before runs meanwhile. The first interval includes filling the shuffle buffer.
                scalars["data_wait_share"] = data_wait / max(now - t0, 1e-9)
                t0, s0, data_wait = now, done, 0.0
                writer.write_scalars(done, {f"train/{k}": v for k, v in scalars.items()})
                bar.set_postfix(loss=f"{scalars['loss']:.4g}")
            # No held-out batches: the dataset has no validation split (StageData said so); never `test`.
            if eval_batches and (done % tcfg.eval_every == 0 or done == num_steps):
                with timed("eval"):
                    evaluate_and_log(task, state, eval_batches, p_eval, writer, done)
            if done % tcfg.checkpoint_every == 0 or done == num_steps:
                check(*pending)
                with timed("checkpoint"):
                    save(done)
    except BaseException:
        # Stopped (SIGTERM, Ctrl-C, a non-finite loss): the save in flight finishes first, so no orbax thread
        # is cut off at interpreter exit; a failure of it is secondary to the error raised here.
        with contextlib.suppress(Exception):
            ckpt.wait()
        raise
    bar.close()
    ckpt.close()
    writer.close()
    return state


def evaluate(state, eval_batches, p_eval) -> tuple[dict[str, float], tuple | None]:
    """Held-out metrics (mean over eval batches) and (first batch, its outputs) for images."""
    sums: dict[str, float] = {}
    first = None
    for b in eval_batches:
        m, out = p_eval(state, b, jax.random.PRNGKey(0))
        for k, v in _scalars(m).items():
            sums[k] = sums.get(k, 0.0) + v
        if first is None:
            first = (b, out)
    return {k: v / max(len(eval_batches), 1) for k, v in sums.items()}, first


def evaluate_and_log(task, state, eval_batches, p_eval, writer, step: int) -> dict[str, float]:
    """Held-out metrics (mean over eval batches) and the task's images, written at `step`."""
    scalars, first = evaluate(state, eval_batches, p_eval)
    writer.write_scalars(step, {f"eval/{k}": v for k, v in scalars.items()})
    if first is not None:
        local = lambda x: np.concatenate([np.asarray(s.data) for s in x.addressable_shards[:1]])  # noqa: E731
        images = task.images(jax.tree.map(local, first[0]), jax.tree.map(local, first[1]))
        if images and jax.process_index() == 0:
            writer.write_images(step, images)
    logging.info("step %d eval: %s", step, " ".join(f"{k}={v:.4g}" for k, v in scalars.items()))
    return scalars

