"""Data parallelism: 1 device and 8 (fake CPU) devices give the same training for the same global batch."""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
    import sys
    import jax, numpy as np
    from configs import tiny
    from thflax import parallel
    from thflax.trainer import make_task

    stage = sys.argv[1]
    assert jax.device_count() == 8, jax.devices()
    cfg = tiny.get_config()
    task = make_task(cfg, stage)
    rng = np.random.default_rng(0)

    def batch(i):
        r = np.random.default_rng(i)
        if stage == "stl":
            tmpl = (0.5 + r.normal(0, 0.1, (8, 68, 2))).astype(np.float32)
            mask = np.ones((8, 16), np.float32)
            mask[:3, 10:] = 0  # uneven padding across devices: the global mean must still be exact
            return {"mfcc": r.normal(size=(8, 16, 20, 20)).astype(np.float32), "template": tmpl,
                    "landmarks": (tmpl[:, None] + r.normal(0, 0.02, (8, 16, 68, 2))).astype(np.float32),
                    "mask": mask}
        lm = (0.5 + r.normal(0, 0.1, (8, 68, 2))).astype(np.float32)
        return {"reference": r.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8),
                "target": r.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8),
                "landmarks": lm, "ref_landmarks": lm + 0.01}

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
