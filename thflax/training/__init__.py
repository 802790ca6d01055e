"""Training: the stage-agnostic loop (`trainer`), the `Task` registry, the two stages, losses, train state,
data parallelism.

Layer rule (tests/test_import_hygiene.py): never imported by `thflax.inference` or `thflax.models`.
"""
