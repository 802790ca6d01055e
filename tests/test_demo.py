"""demo.py's comparison with the shipped model (the rest of the demo is the main job, not a test: its
parts are tested where they live)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

# demo.py defines absl flags when imported: it is imported in a child process, not in the test worker.
_PROBE = """
import math
import demo
from configs import demo as demo_config
c = demo_config.get_config()
models, why = demo.shipped_comparable(c)
print("same corpus:", type(models).__name__, why)
c.data.name = "synthetic_talking_heads/small"
models, why = demo.shipped_comparable(c)
print("other corpus:", models, why)
print(demo.comparison_table({"a": {"identity_distance": 0.1, "lip_sync_corr": math.nan}, "b": {}}))
"""


def test_the_demo_compares_with_the_shipped_model_only_on_its_corpus():
    r = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0] == "same corpus: Models None"
    assert lines[1].startswith("other corpus: None it was trained on synthetic_talking_heads/people")
    table = lines[2:]
    assert table[0].startswith("| model | identity distance | lip-sync r |") and len(table) == 4
    assert table[2].startswith("| a | 0.100 | n/a |") and table[3].startswith("| b | n/a | n/a |")
