"""Data parallelism for both training stages: one mechanism, the "pmap" pattern done with shard_map.

A step is written as a per-device body `(state, batch, rng) -> (state, metrics)` that sees its slice
of the global batch and averages across devices explicitly (`lax.pmean(..., AXIS)`, BatchNorm with
`axis_name=AXIS`). `data_parallel` maps it with `jax.shard_map` over a 1-D mesh of all devices (every
host's) under `jax.jit`, with the state replicated and donated and the batch split along its leading
axis. JAX >= 0.8 implements `jax.pmap` itself this way and keeps pmap in maintenance mode.

Global batches are assembled from each host's numpy batch with
`jax.make_array_from_process_local_data`, so the same code runs on one CPU, 8 fake CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`), a GPU box or a multi-host TPU pod.
"""

from __future__ import annotations

import threading
import queue
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """1-D data-parallel mesh over `devices` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree (e.g. the train state) on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's numpy batch -> global arrays split over the mesh's `data` axis.

    Non-numeric entries (e.g. utterance ids kept for debugging) are dropped.
    """
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items() if np.asarray(v).dtype.kind in "biuf"}


def data_parallel(step: Callable, mesh: Mesh, *, donate_state: bool = True) -> Callable:
    """jit(shard_map(step)) with state replicated (and donated), batch split, rng replicated.

    The body must make its outputs identical on every device (pmean gradients and metrics); then
    they are returned replicated. `check_vma=False` gives pmap's semantics: inside the body,
    gradients are the device's own (local) gradients, and the body averages them explicitly. (With
    varying-axis checking on, JAX would instead sum gradients of replicated parameters implicitly.)
    Inputs must already carry the matching shardings (`replicate`, `global_batch`).
    """
    mapped = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P()),
                           check_vma=False)
    return jax.jit(mapped, donate_argnums=(0,) if donate_state else ())


def data_parallel_eval(fn: Callable, mesh: Mesh) -> Callable:
    """jit(shard_map(fn)) for `fn(state, batch, rng) -> (metrics, per_example_outputs)`.

    Metrics must be made identical across devices by `fn` (psum/pmean); per-example outputs stay
    split along the batch like the input.
    """
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P(AXIS)),
                           check_vma=False)
    return jax.jit(mapped)


def prefetch_to_mesh(batches: Iterator[dict[str, np.ndarray]], mesh: Mesh, size: int = 2) -> Iterator[dict[str, jax.Array]]:
    """Moves upcoming batches to the devices in a background thread, keeping `size` ready.

    Host-to-device copies then overlap with the running step, so the devices do not wait on input.
    """
    q: queue.Queue = queue.Queue(maxsize=size)
    sentinel = object()

    def worker():
        try:
            for b in batches:
                q.put(global_batch(b, mesh))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put(e)
            return
        q.put(sentinel)

    threading.Thread(target=worker, daemon=True).start()
    while True:
        item = q.get()
        if item is sentinel:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
