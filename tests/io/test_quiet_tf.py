"""thflax.io.quiet_tf: TensorFlow's load-time banner held back on a quiet console, shown at log level 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from thflax.io import quiet_tf

from tests.helpers import ROOT
BANNER = "oneDNN custom operations are on"
PROBE = "from thflax.io.quiet_tf import import_tensorflow; tf = import_tensorflow(); print(tf.__version__)"


@pytest.mark.parametrize("level,shown", [("2", False), ("0", True)])
def test_banner_only_at_log_level_0(level, shown):
    # oneDNN forced on: TensorFlow prints the banner on any CPU, so the check does not depend on the vendor.
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1", TF_CPP_MIN_LOG_LEVEL=level)
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip()  # TensorFlow was imported
    assert (BANNER in r.stderr) is shown, r.stderr
    assert ("absl::InitializeLog" in r.stderr) is shown, r.stderr


@pytest.mark.parametrize("line,dropped", [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", True),
    ("I0000 00:00:1796620403.705601    4082 port.cc:153] oneDNN custom operations are on. You may see", True),
    ("I0000 00:00:1796620403.755553    4082 cpu_feature_guard.cc:227] This TensorFlow binary is optimized", True),
    ("To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
     "appropriate compiler flags.", True),
    ("E0000 00:00:1796620403.705601    4082 cuda_dnn.cc:8310] Unable to register cuDNN factory", False),
    ("ImportError: libtensorflow_framework.so.2: cannot open shared object file", False),
    ("W0000 00:00:1796620403.705601    4082 port.cc:153] oneDNN is not what this says", False),
])
def test_only_the_load_banner_is_dropped(line, dropped):
    assert bool(quiet_tf._LOAD_BANNER.search(line)) is dropped
