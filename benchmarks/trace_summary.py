"""Device time per kernel and per kind of op from a `jax.profiler` trace (an `.xplane.pb` file).

    python benchmarks/trace_summary.py runs/trace/plugins/profile/*/host.xplane.pb --steps 3

Reads the trace with jaxlib's own `ProfileData` (no TensorBoard or xprof needed). On a GPU it sums the
kernel events of the device planes (`/device:GPU:N`, all streams); on a CPU, the host events that
carry an `hlo_op` stat (XLA's thunks). Kinds are guessed from kernel and HLO names: convolution
(cuDNN/CUTLASS fprop, dgrad, wgrad), matmul, transpose/copy, reduction, elementwise fusion, other.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys

KINDS = (
    ("convolution", re.compile(r"conv|fprop|dgrad|wgrad|cudnn|implicit_gemm|xmma_.*(conv|nhwc)", re.I)),
    ("matmul", re.compile(r"gemm|cublas|nvjet|matmul|dot|cutlass|wgmma|triton_gemm", re.I)),
    ("transpose/copy", re.compile(r"transpose|copy|memcpy|memset|dynamic.update.slice|concatenate|pad", re.I)),
    ("reduction", re.compile(r"reduce|reduction|scatter|sort", re.I)),
    ("gather/select", re.compile(r"gather|select|dynamic.slice|iota", re.I)),
    ("elementwise fusion", re.compile(r"fusion|loop_|elementwise|convert|add|multiply|exp|tanh|divide", re.I)),
)


def kind_of(*names: str) -> str:
    for kind, pat in KINDS:
        if any(n and pat.search(n) for n in names):
            return kind
    return "other"


def events(path: str):
    """(kernel name, hlo op name or '', duration ns) of every device kernel in the trace."""
    from jax.profiler import ProfileData

    data = ProfileData.from_file(path)
    planes = list(data.planes)
    dev = [p for p in planes if p.name.startswith("/device:") and "CPU" not in p.name]
    if dev:
        for p in dev:
            for line in p.lines:
                # Derived lines ("XLA Ops", "XLA Modules", "Steps") would count the time twice.
                if line.name.startswith("XLA") or line.name in ("Steps", "Framework Ops", "Framework Name Scope"):
                    continue
                for e in line.events:
                    stats = dict(e.stats)
                    yield e.name, str(stats.get("hlo_op", "")), float(e.duration_ns)
        return
    for p in planes:
        if p.name != "/host:CPU":
            continue
        for line in p.lines:
            for e in line.events:
                stats = dict(e.stats)
                if "hlo_op" in stats:
                    yield e.name, str(stats["hlo_op"]), float(e.duration_ns)


def summarise(path: str, steps: int = 1, top: int = 25) -> str:
    """A markdown summary: device ms per step by kind of op, then the `top` kernels by time."""
    by_kind: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    by_name: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0])
    total = 0.0
    for name, hlo, ns in events(path):
        k = kind_of(name, hlo)
        by_kind[k][0] += ns
        by_kind[k][1] += 1
        by_name[(name[:90], hlo[:40])][0] += ns
        by_name[(name[:90], hlo[:40])][1] += 1
        total += ns
    if not total:
        return "trace: no device events found"
    ms = lambda ns: ns / 1e6 / steps  # noqa: E731
    out = [f"device time {ms(total):.2f} ms per step over {steps} step(s)", "",
           "| kind | ms/step | % | kernels/step |", "|---|---:|---:|---:|"]
    for k, (ns, n) in sorted(by_kind.items(), key=lambda kv: -kv[1][0]):
        out.append(f"| {k} | {ms(ns):.2f} | {100 * ns / total:.1f} | {n / steps:.0f} |")
    out += ["", f"top {top} kernels", "| kernel | hlo op | kind | ms/step | % | calls/step |", "|---|---|---|---:|---:|---:|"]
    for (name, hlo), (ns, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]:
        out.append(f"| {name} | {hlo} | {kind_of(name, hlo)} | {ms(ns):.3f} | {100 * ns / total:.1f} | {n / steps:.0f} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace", help="an .xplane.pb file written by jax.profiler.trace")
    p.add_argument("--steps", type=int, default=1, help="steps the trace holds (figures are per step)")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args(argv)
    if not a.trace.endswith(".xplane.pb") or not os.path.isfile(a.trace):
        print(f"error: {a.trace} is not a jax.profiler trace file (*.xplane.pb)", file=sys.stderr)
        return 2
    print(summarise(a.trace, a.steps, a.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
