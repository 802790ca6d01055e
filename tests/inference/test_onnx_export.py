"""`export.py --format onnx` (thflax/inference/onnx_export.py): the ONNX graphs, run on onnxruntime, give
what JAX gives (STL landmarks over two chunks with the GRU state carried; generator frames), and bad input
is one line with nothing left behind.

Randomly initialised parameters of configs/tiny.py (no training). Tolerance: 1e-4 absolute on float32
landmarks (normalised, ~0.5) and frames ([-1, 1]); measured ~1e-6.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax2onnx", reason="the onnx extra (jax2onnx) is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")

import jax  # noqa: E402

from configs import tiny  # noqa: E402
from thflax import testing  # noqa: E402
from thflax.errors import CheckpointError  # noqa: E402
from thflax.inference import networks, onnx_export  # noqa: E402
from thflax.models import build  # noqa: E402

from tests.helpers import ROOT  # noqa: E402
TOLERANCE = 1e-4
CHUNK, BATCH = 8, 4


def _models(preset: str = "tiny") -> networks.Models:
    c = tiny.get_config()
    c.ltv.generator = preset
    return networks.Models(c, build.build_stl(c), build.init_stl(c, jax.random.PRNGKey(0)),
                           build.build_generator(c), build.init_generator(c, jax.random.PRNGKey(1)))


def _randomised_stl(models: networks.Models) -> networks.Models:
    """The STL head starts at zero (its output is the template): perturb every parameter so that the
    comparison sees the audio path and the carried GRU state."""
    leaves, tree = jax.tree.flatten(models.stl_variables["params"])
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    noisy = [leaf + 0.2 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
    models.stl_variables = {**models.stl_variables, "params": jax.tree.unflatten(tree, noisy)}
    return models


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    models = _randomised_stl(_models())
    models.config.stl.head_gain = 1.5  # not 1: the STL graph must move the head as generation does
    contents, info = onnx_export.convert(models, chunk=CHUNK, batch=BATCH)
    folder = tmp_path_factory.mktemp("onnx")
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return models, folder, info


@pytest.mark.heavy
def test_stl_chunks_with_carried_state_match_jax(exported):
    models, folder, info = exported
    r = np.random.default_rng(3)
    windows = r.normal(0, 1, (2 * CHUNK - 3, models.config.stl.mfcc_window, models.config.stl.n_mfcc)).astype(np.float32)
    template = testing.face_landmarks(0.3)
    want = np.concatenate(list(networks.predict_landmarks(models, windows, template, chunk=CHUNK)))
    state = np.zeros((1, info["state_size"]), np.float32)
    got = []
    for s in range(0, len(windows), CHUNK):  # pad the last chunk as predict_landmarks does
        x = windows[s:s + CHUNK]
        n = len(x)
        x = np.concatenate([x, np.repeat(x[-1:], CHUNK - n, 0)])
        lm, state = onnx_export.run_onnx(str(folder / onnx_export.STL_FILE),
                                         {"mfcc": x[None], "template": template[None], "state": state})
        got.append(lm[0, :n])
    got = np.concatenate(got)
    assert got.shape == want.shape == (len(windows), 68, 2)
    assert np.abs(got - want).max() < TOLERANCE
    # The carried state matters: the second chunk from a zero state is another result, so the match above
    # is not one a graph ignoring `state` would give.
    fresh, _ = onnx_export.run_onnx(str(folder / onnx_export.STL_FILE),
                                    {"mfcc": x[None], "template": template[None], "state": np.zeros_like(state)})
    assert np.abs(fresh[0, :n] - want[CHUNK:]).max() > 10 * TOLERANCE


@pytest.mark.heavy
def test_generator_frames_match_jax(exported):
    models, folder, info = exported
    s = models.image_size
    r = np.random.default_rng(4)
    reference = r.uniform(-1, 1, (1, s, s, 3)).astype(np.float32)
    ref_lm = testing.face_landmarks(0.0)[None]
    targets = np.stack([testing.face_landmarks(o) for o in np.linspace(0.1, 1.0, BATCH)])
    (features,) = onnx_export.run_onnx(str(folder / onnx_export.ENCODE_FILE),
                                       {"reference": reference, "reference_landmarks": ref_lm})
    assert features.shape == (1, info["feature_size"])
    image, mask = onnx_export.run_onnx(str(folder / onnx_export.DECODE_FILE),
                                       {"reference_features": features, "target_landmarks": targets})
    # JAX: the generator's whole call, frame by frame (not the packed functions the export converts).
    want_img, want_mask = models.generator.apply(models.generator_variables, np.repeat(reference, BATCH, 0),
                                                 np.repeat(ref_lm, BATCH, 0), targets)
    assert image.shape == (BATCH, s, s, 3) and mask.shape == (BATCH, s, s)
    assert np.abs(image[0] - image[-1]).max() > 1e-3  # the frames follow their landmarks
    assert np.abs(image - np.asarray(want_img)).max() < TOLERANCE
    assert np.abs(mask - np.asarray(want_mask)[..., 0]).max() < TOLERANCE


def test_info_lists_names_shapes_and_mfcc(exported):
    models, _, info = exported
    c = models.config
    stl = info["files"][onnx_export.STL_FILE]
    assert [i["name"] for i in stl["inputs"]] == ["mfcc", "template", "state"]
    assert stl["inputs"][0]["shape"] == [1, CHUNK, c.stl.mfcc_window, c.stl.n_mfcc]
    dec = info["files"][onnx_export.DECODE_FILE]
    assert dec["outputs"] == [{"name": "image", "shape": [BATCH, 64, 64, 3], "dtype": "float32"},
                              {"name": "mask", "shape": [BATCH, 64, 64], "dtype": "float32"}]
    assert info["mfcc"] == {"sample_rate": 16000, "window": c.stl.mfcc_window, "n_mfcc": c.stl.n_mfcc}
    assert max(info["max_abs_diff"].values()) < TOLERANCE


@pytest.mark.heavy
def test_warp_generator_is_refused_naming_the_op():
    """jax2onnx 0.17 has no conversion for the warp preset's batched LU (its thin-plate-spline solve):
    the export must say so in one error, not write a wrong graph. Update the README when this fails."""
    models = _models("warp_tiny")
    _, decode, size = onnx_export.generator_steps(models)
    with pytest.raises(CheckpointError, match=r"generator_decode.*cannot convert.*lu"):
        onnx_export._convert(decode, {"reference_features": (1, size), "target_landmarks": (2, 68, 2)},
                             ["image", "mask"], "generator_decode")


def _export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "export.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.cli
@pytest.mark.parametrize("args, message", [
    (["--format", "onnx"], "is neither an export bundle nor a training workdir"),
    (["--format", "tflite"], "--format"),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, args, message):
    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    r = _export("--workdir", str(not_a_model), "--out", str(out), *args)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(errors) == 1 and message in errors[0], r.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["not_a_model"]  # no output folder, no temporary one
