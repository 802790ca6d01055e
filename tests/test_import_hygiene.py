"""Model, loss and train-step modules must not import the data-preparation stack (TF, dlib, librosa)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CODE = """
import sys
import configs.default, configs.tiny
import thflax, thflax.geometry, thflax.losses, thflax.metrics, thflax.parallel, thflax.sketch
import thflax.models.stl, thflax.models.ltv, thflax.train_stl, thflax.train_ltv, thflax.train_state
import thflax.checkpoint, thflax.trainer, thflax.generation, thflax.tasks, thflax.models.build, thflax.perceptual
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets", "dlib", "librosa", "cv2"))
print("BAD", bad)
"""

# Inference (generation, evaluation, loading parameters, exporting) builds no training objects.
INFERENCE = """
import sys
import thflax.generation, thflax.inference, thflax.params, thflax.evaluation, thflax.images, thflax.models.build
train = sorted(m for m in sys.modules if m in ("thflax.trainer", "thflax.train_stl", "thflax.train_ltv",
                                                 "thflax.train_state", "thflax.tasks", "optax"))
print("TRAIN", train)
"""


def test_model_layer_imports_no_data_stack():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "BAD []" in out.stdout, out.stdout


def test_inference_imports_no_training_code():
    out = subprocess.run([sys.executable, "-c", INFERENCE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TRAIN []" in out.stdout, out.stdout
