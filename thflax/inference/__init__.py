"""Inference: trained parameters -> networks -> a video from a photo (generation) or a video (dubbing),
with the options' checks, the start-up caches, text to speech and the web page.

Layer rule (tests/test_import_hygiene.py): imports nothing of `thflax.training`, `thflax.measures` or
`thflax.synthetic`: a deployed model needs none of them.
"""
