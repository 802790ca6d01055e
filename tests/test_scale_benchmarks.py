"""The input-pipeline benchmarks (loader per core, a step's wait for data) run and print their tables.

Their figures are measured on an idle machine and recorded in BENCHMARKS.md; here, on the tiny
dataset, only that each produces positive rates in the right places and refuses a missing folder.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _rows(text: str, first: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first}")]


@pytest.mark.cli
def test_loader_benchmark_prints_rates_and_the_projection(tiny_data_dir):
    r = _run("benchmarks/loader.py", "--data_dir", tiny_data_dir, "--datasets", "synthetic_talking_heads/tiny",
             "--cores", "1", "--batches", "2", "--warmup", "1", "--ltv_batch", "8", "--stl_batch", "8",
             "--profile", "--hosts", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _rows(r.stdout, "LTV") + _rows(r.stdout, "STL")
    main = [row for row in rows if len(row) == 10]
    assert {row[0] for row in main} == {"LTV", "STL"} and all(row[1] == "64²" and row[2] == "1" for row in main)
    num = lambda s: float(s.replace(",", ""))  # noqa: E731
    for row in main:
        rate, frames, per_core, projected = num(row[3]), num(row[4]), num(row[5]), num(row[7])
        assert rate > 0 and per_core == frames and projected == pytest.approx(16 * per_core, rel=1e-3)
    stl = next(row for row in main if row[0] == "STL")
    assert num(stl[4]) == pytest.approx(32 * num(stl[3]), rel=1e-3)  # configs/default.py: clips of 32 frames
    hosts = [row for row in rows if len(row) == 5 and " of " in row[2]]
    assert sorted(row[2] for row in hosts) == ["0 of 2", "0 of 2", "1 of 2", "1 of 2"]
    assert all(num(row[3]) > 0 for row in hosts)
    profile = [row for row in rows if len(row) == 5 and " of " not in row[2]]
    assert len(profile) == 2 and all(num(c) > 0 for row in profile for c in row[2:])


@pytest.mark.cli
def test_data_wait_benchmark_compares_real_and_fixed_input(tiny_data_dir, tmp_path):
    r = _run("benchmarks/data_wait.py", "--config", "configs/tiny.py", "--data_dir", tiny_data_dir,
             "--steps", "3", "--rounds", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row[0]: row for row in _rows(r.stdout, "STL") + _rows(r.stdout, "LTV")}
    assert set(rows) == {"STL", "LTV"}
    for row in rows.values():
        real, fixed = float(row[2]), float(row[3])
        assert real > 0 and fixed > 0 and row[4].endswith("%")
        # The times are printed to 0.1 ms and the share to 0.1 %.
        assert float(row[4].rstrip(" %")) == pytest.approx(100 * (1 - fixed / real), abs=0.06 + 10 / real)


@pytest.mark.parametrize("script", ["benchmarks/loader.py", "benchmarks/data_wait.py"])
def test_a_missing_data_dir_is_one_line_and_status_2(script, tmp_path):
    r = _run(script, "--data_dir", str(tmp_path / "none"), timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "error:" in r.stderr
