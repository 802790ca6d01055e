"""Files in and out: audio, video, images, checkpoints, speech synthesis, TensorFlow's quiet import.

Layer rule (tests/test_import_hygiene.py): imports nothing of thflax but `thflax.errors` and `thflax.io`.
"""
