"""The training loop: resume after SIGKILL is exact; a NaN stops the run and keeps the last checkpoint."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_cmd(config, workdir, stage, steps):
    return [sys.executable, "train.py", "--config", "configs/tiny.py", "--workdir", str(workdir),
            f"--config.stage={stage}", f"--config.data.data_dir={config.data.data_dir}",
            f"--config.data.manual_dir={config.data.manual_dir}", f"--config.{stage}.num_steps={steps}",
            "--config.train.checkpoint_every=4", "--config.train.eval_every=1000", "--config.train.log_every=4"]


def _final_params(workdir, stage):
    path = os.path.join(str(workdir), stage, "checkpoints")
    mngr = ocp.CheckpointManager(path)
    step = mngr.latest_step()
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return step, out.state


@pytest.mark.cli
# The trainer's resume path is one for both stages; the GAN state (two networks, two optimisers) is the
# stricter case, so CI runs LTV and `make test-slow` STL too. SIGTERM (a scheduler's stop) goes through
# cli.run's handler instead of killing at once: one line, exit 143, and the same exact resume.
@pytest.mark.parametrize("stage,signum", [pytest.param("stl", signal.SIGKILL, marks=pytest.mark.slow),
                                          ("ltv", signal.SIGKILL), ("stl", signal.SIGTERM)])
def test_sigkill_and_resume_reaches_the_same_parameters(tiny_config, tmp_path, stage, signum):
    steps = 40
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    a, b = tmp_path / "uninterrupted", tmp_path / "killed"
    # The uninterrupted run and the run to be killed start together (compilation is mostly serial).
    ref = subprocess.Popen(_train_cmd(tiny_config, a, stage, steps), cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen(_train_cmd(tiny_config, b, stage, steps), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt8 = b / stage / "checkpoints" / "8"
    deadline = time.time() + 600
    while not ckpt8.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signum)
    killed_err = proc.communicate(timeout=300)[1]
    if signum == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, killed_err[-3000:]
        assert "Traceback" not in killed_err, killed_err[-3000:]
        assert killed_err.rstrip().splitlines()[-1] == "error: interrupted (SIGTERM)", killed_err[-3000:]
    err = ref.communicate(timeout=900)[1]
    assert ref.returncode == 0, err[-3000:]
    done = sorted(int(p.name) for p in (b / stage / "checkpoints").iterdir() if p.name.isdigit())
    assert done and max(done) < steps, f"the run was not interrupted mid-way: {done}"
    subprocess.run(_train_cmd(tiny_config, b, stage, steps), cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=900)
    sa, pa = _final_params(a, stage)
    sb, pb = _final_params(b, stage)
    assert sa == sb == steps
    la, lb = jax.tree.leaves(pa), jax.tree.leaves(pb)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stage,key", [("stl", "mfcc"), ("ltv", "landmarks")])
def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(tiny_config, tmp_path, monkeypatch, stage, key):
    from thflax.training import parallel, trainer

    original = parallel.prefetch_to_mesh

    def poisoned(batches, mesh, size=2):
        def gen():
            for i, b in enumerate(batches):
                if i == 6:  # the 7th step sees a NaN input
                    b = dict(b, **{key: np.full_like(b[key], np.nan)})
                yield b
        return original(gen(), mesh, size)

    monkeypatch.setattr(parallel, "prefetch_to_mesh", poisoned)
    cfg = tiny_config
    cfg[stage].num_steps = 12
    cfg.train.checkpoint_every = 4
    with pytest.raises(trainer.NonFiniteLossError,
                       match="non-finite loss or gradient at step 7.*last good \\(verified\\) checkpoint: step 4"):
        train(cfg, str(tmp_path), stage)
    step, state = _final_params(tmp_path, stage)
    assert step == 4
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state))
