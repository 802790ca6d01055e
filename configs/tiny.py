"""Tiny configuration: every stage runs on a CPU in seconds (tests, CI smoke runs).

    python train.py --config configs/tiny.py --workdir runs/tiny

The tests use it through tests/conftest.py's `tiny_config` (pointed at a prepared tiny corpus).
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.name = "synthetic_talking_heads/tiny"
    c.data.shuffle_buffer = 16
    c.stl.clip_len = 16
    c.stl.audio_channels = (8, 16, 16)
    c.stl.audio_features = 64
    c.stl.template_features = 32
    c.stl.gru_features = 32
    c.stl.batch_size = 8
    c.stl.eval_batch_size = 8
    c.stl.eval_batches = 1
    c.stl.num_steps = 20
    c.ltv.image_size = 64
    c.ltv.generator = "tiny"
    c.ltv.disc_channels = 8
    c.ltv.disc_layers = 2
    c.ltv.pairs_per_example = 2
    c.ltv.batch_size = 8
    c.ltv.eval_batch_size = 8
    c.ltv.eval_batches = 1
    c.ltv.num_steps = 20
    c.train.log_every = 5
    c.train.eval_every = 10
    c.train.checkpoint_every = 10
    return c
