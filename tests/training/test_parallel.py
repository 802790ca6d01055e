"""Data parallelism: 1 device and 8 (fake CPU) devices give the same training for the same global batch."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.multiprocess

from tests.helpers import ROOT

SCRIPT = textwrap.dedent('''
    import sys
    import jax, numpy as np
    from configs import tiny
    from thflax.training import parallel
    from thflax.testing import random_ltv_batch, random_stl_batch
    from thflax.training.tasks import get_task

    stage = sys.argv[1]
    assert jax.device_count() == 8, jax.devices()
    cfg = tiny.get_config()
    task = get_task(cfg, stage)

    def batch(i):
        if stage == "stl":
            b = random_stl_batch(cfg, 8, i)
            b["mask"][:3, 10:] = 0  # uneven padding across devices: the global mean must still be exact
            return b
        return random_ltv_batch(cfg, 8, i)

    results = []
    for n in (1, 8):
        mesh = parallel.make_mesh(jax.devices()[:n])
        state = parallel.replicate(task.init_state(jax.random.PRNGKey(0)), mesh)
        step = parallel.data_parallel(task.train_step, mesh)
        for i in range(3):
            state, m = step(state, parallel.global_batch(batch(i), mesh), jax.random.PRNGKey(i))
        results.append((jax.device_get(state.params), float(m["loss"])))
    (p1, l1), (p8, l8) = results
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8))]
    scale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(p1))
    print("max param diff", max(diffs), "param scale", scale, "loss", l1, l8)
    assert max(diffs) < 1e-4, max(diffs)
    assert abs(l1 - l8) < 1e-4 * max(1.0, abs(l1))
    print("OK")
''')


@pytest.mark.parametrize("stage", ["stl", "ltv"])
def test_one_device_equals_eight_devices(stage):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, stage], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    print(proc.stdout[-2000:], proc.stderr[-3000:])
    assert proc.returncode == 0 and "OK" in proc.stdout
