"""Model, loss and train-step modules must not import the data-preparation stack (TF, dlib, librosa)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CODE = """
import sys
import configs.default, configs.tiny
import thflax, thflax.face.geometry, thflax.training.losses, thflax.measures.metrics, thflax.training.parallel, thflax.face.sketch
import thflax.models.stl, thflax.models.ltv, thflax.training.stl_stage, thflax.training.ltv_stage, thflax.training.train_state
import thflax.io.checkpoint, thflax.training.trainer, thflax.inference.generation, thflax.training.tasks, thflax.models.build, thflax.training.perceptual
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets", "dlib", "librosa", "cv2"))
print("BAD", bad)
"""

# Inference (generation, evaluation, loading parameters, exporting) builds no training objects.
INFERENCE = """
import sys
import thflax.inference.generation, thflax.inference.networks, thflax.inference.params, thflax.measures.evaluation, thflax.io.images, thflax.models.build
train = sorted(m for m in sys.modules if m in ("thflax.training.trainer", "thflax.training.stl_stage", "thflax.training.ltv_stage",
                                                 "thflax.training.train_state", "thflax.training.tasks", "optax"))
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
