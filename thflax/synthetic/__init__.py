"""The offline synthetic corpus: portraits and morphs, speakers, visemes, head motion, the renderer.

Layer rule (tests/test_import_hygiene.py): imports only `thflax.io` and `thflax.face` below it.
"""
