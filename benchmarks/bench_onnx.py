"""Generator decode speed: onnxruntime (CPU) on the ONNX export next to XLA (JAX jit) on the same inputs.

Times the per-batch graph that generation runs for every B frames (`generator_decode.onnx` of
`export.py --format onnx`, i.e. `thflax.inference.onnx_export.generator_steps`' decode: sketch of the
target landmarks, landmark encoder, attention, decoder, composition) and the same function jitted by
JAX, on the same reference features and landmarks, after a warm-up, as the median of `--repeats` calls.
Also prints the largest |ONNX − JAX| of the frames.

    python benchmarks/bench_onnx.py                       # "fast" at 128², "tiny" at 64², batch 16
    python benchmarks/bench_onnx.py --rows fast:128 paper:128 --batch 16 --repeats 5

A row is a generator preset (`thflax.models.ltv.GENERATOR_PRESETS`) and an image size, with randomly
initialised parameters (the speed does not depend on their values). The "warp" presets do not convert
(jax2onnx has no conversion for their batched LU solve; README, "An ONNX export"). Needs the onnx extra.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from configs import default  # noqa: E402
from thflax.inference import networks, onnx_export  # noqa: E402
from thflax.models import build  # noqa: E402
from thflax.testing import face_landmarks, median_seconds  # noqa: E402


def _models(preset: str, size: int) -> networks.Models:
    c = default.get_config()
    c.ltv.generator, c.ltv.image_size = preset, size
    return networks.Models(c, None, {}, build.build_generator(c), build.init_generator(c, jax.random.PRNGKey(0)))


def bench_row(preset: str, size: int, batch: int, repeats: int) -> dict[str, float]:
    """{'onnx_fps', 'xla_fps', 'max_abs_diff'} of the decode graph of `preset` at size² and `batch` frames."""
    encode, decode, feature_size = onnx_export.generator_steps(_models(preset, size))
    r = np.random.default_rng(0)
    reference = r.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    features = np.asarray(jax.jit(encode)(reference, face_landmarks(0.0)[None]))
    targets = np.stack([face_landmarks(o) for o in np.linspace(0, 1, batch)]).astype(np.float32)
    xla = jax.jit(decode)
    want = [np.asarray(a) for a in xla(features, targets)]
    model = onnx_export._convert(decode, {"reference_features": (1, feature_size), "target_landmarks": (batch, 68, 2)},
                                 ["image", "mask"], "generator_decode")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = {"reference_features": features, "target_landmarks": targets}
    got = session.run(None, feeds)
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    t_onnx = median_seconds(lambda: session.run(None, feeds), (), repeats)
    t_xla = median_seconds(lambda f, t: xla(f, t), (features, targets), repeats)
    return {"onnx_fps": batch / t_onnx, "xla_fps": batch / t_xla, "max_abs_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", default=["fast:128", "tiny:64"], help="preset:size entries")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__}, "
          f"onnxruntime {ort.__version__}; generator decode, batch {args.batch}, median of {args.repeats}\n")
    print("| generator | size | onnxruntime CPU frames/s | XLA (jax.jit) frames/s | max abs diff |")
    print("|---|---|---|---|---|")
    for row in args.rows:
        preset, _, size = row.partition(":")
        res = bench_row(preset, int(size), args.batch, args.repeats)
        print(f"| {preset} | {size}² | {res['onnx_fps']:.1f} | {res['xla_fps']:.1f} | {res['max_abs_diff']:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
