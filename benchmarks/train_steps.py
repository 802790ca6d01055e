"""One stage's data-parallel train step, compiled and timed: shared by gpu_bench.py and run_all.py.

Both benchmark the train steps the same way (a task's initial state replicated over all local devices,
the step donating it, compile timed apart from the steps, FLOPs from XLA's cost analysis), so it is
written once here.
"""

from __future__ import annotations

import time


def on_cpu_flops(fn, *args) -> float:
    """FLOPs of jit(fn)(*args) lowered for the host CPU.

    Why: on a GPU, XLA's cost analysis of a lowered program returned nothing (jax 0.11.2, H200) and that
    of the compiled one counts cuDNN convolutions as 0. The program before optimisation is the same on
    every backend, so its FLOPs are counted where the analysis works.
    """
    import jax

    from thflax.models.flops import lowered_flops

    cpu = jax.devices("cpu")[0]
    return lowered_flops(jax.jit(fn).lower(*jax.device_put(args, cpu)))


def cpu_step_flops(task, state, batch: dict) -> float:
    """FLOPs of one data-parallel train step on the whole global batch, lowered for one host CPU
    device (see `on_cpu_flops`)."""
    import jax

    from thflax.training import parallel
    from thflax.models.flops import lowered_flops

    mesh = parallel.make_mesh(jax.devices("cpu")[:1])
    cpu_state = jax.device_put(state, parallel.replicated(mesh))
    return lowered_flops(parallel.data_parallel(task.train_step, mesh).lower(
        cpu_state, parallel.global_batch(batch, mesh), jax.random.PRNGKey(0)))


def compile_train(cfg, stage: str, batch: dict, force_cpu_flops: bool = False, cpu_when_missing: bool = True):
    """(compiled data-parallel train step, replicated state, global batch, key, compile seconds, FLOPs).

    FLOPs are those of the whole global batch (all devices together): the device's own count of the
    lowered step; counted on the host CPU instead with `force_cpu_flops`, or when the device gives none
    and `cpu_when_missing` (else NaN)."""
    import jax

    from thflax.models.flops import lowered_flops

    from thflax.training import parallel
    from thflax.training.tasks import get_task

    task = get_task(cfg, stage)
    mesh = parallel.make_mesh()
    init = task.init_state(jax.random.PRNGKey(0))
    # Counted before the state is donated to the step; the device's own count where it gives one.
    fl = cpu_step_flops(task, init, batch) if force_cpu_flops else float("nan")
    state = parallel.replicate(init, mesh)
    gb = parallel.global_batch(batch, mesh)
    step = parallel.data_parallel(task.train_step, mesh, donate_state=True)
    key = jax.random.PRNGKey(0)
    t = time.perf_counter()
    lowered = step.lower(state, gb, key)
    compiled = lowered.compile()
    seconds = time.perf_counter() - t
    if not force_cpu_flops:
        fl = lowered_flops(lowered)
        if fl != fl and cpu_when_missing:  # NaN: the device gave no count
            fl = cpu_step_flops(task, jax.device_get(state), batch)
    return compiled, state, gb, key, seconds, fl


def run_steps(compiled, state, gb, key, steps: int):
    """(steps/s, final state): one untimed step, then `steps` timed ones."""
    import jax

    state, m = compiled(state, gb, key)
    jax.block_until_ready(m)
    t = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, gb, key)
    jax.block_until_ready((state, m))
    return steps / (time.perf_counter() - t), state
