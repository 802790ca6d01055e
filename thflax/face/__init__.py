"""Faces as landmarks: dlib detection and tracking, the paper's representation, sketches, warps, crops.

Layer rule (tests/test_import_hygiene.py): imports only `thflax.io`, `thflax.errors`, `thflax.configlib`.
"""
