"""The networks (Flax modules) and their construction from a config: STL, LTV generator, discriminator.

Layer rule (tests/test_import_hygiene.py): imports only `thflax.io` and `thflax.face` below it; nothing of
training or inference, so an accelerator host can build and time the networks without the data stack.
"""
