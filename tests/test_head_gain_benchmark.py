"""benchmarks/head_gain.py: the sweep's gains, its suggestion rule, and the command on a tiny model."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import head_gain
from thflax.errors import InputError
from tests.helpers import ROOT


def test_gains_always_hold_1_sorted_and_bad_ones_are_refused():
    assert head_gain.parse_gains(["2", "1.4", "1.4"]) == [1.0, 1.4, 2.0]
    for bad, message in (("x", "'x' is not a number"), ("0", "0 is out of range"), ("3.5", "3.5 is out of range")):
        with pytest.raises(InputError, match=message):
            head_gain.parse_gains(["1.2", bad])


def test_suggestion_is_the_largest_gain_within_the_cost_and_not_faster_than_a_person():
    rows = {1.0: {"lmd_head": 9.00, "head_speed_ratio": 0.70}, 1.4: {"lmd_head": 9.02, "head_speed_ratio": 0.85},
            1.6: {"lmd_head": 9.08, "head_speed_ratio": 0.95}, 1.8: {"lmd_head": 9.20, "head_speed_ratio": 1.05}}
    assert head_gain.suggest(rows, 0.1) == 1.6
    assert head_gain.suggest(rows, 0.3) == 1.8
    assert head_gain.suggest(rows, 0.01) == 1.0
    rows[1.8]["head_speed_ratio"] = 1.3  # livelier than a person: not suggested, however cheap
    assert head_gain.suggest(rows, 0.3) == 1.6


@pytest.mark.cli
def test_command_prints_a_row_per_gain_and_bad_gains_are_one_line(tiny_workdir, tiny_config):
    data = [f"--config.data.data_dir={tiny_config.data.data_dir}", f"--config.data.manual_dir={tiny_config.data.manual_dir}"]
    run = lambda *a: subprocess.run([sys.executable, "benchmarks/head_gain.py", "--checkpoint", tiny_workdir, *data,  # noqa: E731
                                     "--quiet", *a], cwd=ROOT, capture_output=True, text=True, timeout=900)
    r = run("--gains", "2", "--max_utterances", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("| head gain | head speed ratio | head LMD |")
    assert [line.split("|")[1].strip() for line in lines[2:4]] == ["1", "2"]
    assert "1 validation utterances; the checkpoint's own head gain: 1; suggested" in r.stdout
    r = run("--gains", "1.5,lots")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert [line for line in r.stderr.splitlines() if line.startswith("error:")] == \
        ["error: --gains: 'lots' is not a number"], r.stderr
