"""CPU-sized configuration: the paper's architecture at widths and learning rates that learn in minutes
on a 2-core CPU (the demo, the learning tests, `make reproduce`).

    python train.py --config configs/cpu.py --workdir runs/cpu
    python demo.py --workdir runs/demo        (`make demo`; demo.py's default --config is this file)

Differences from configs/default.py (the paper's sizes): 64×64 crops, narrower audio encoders and
GRUs, the "fast" generator, and learning rate 1e-3 for STL / 5e-4 for LTV instead of the paper's
1e-4 (the paper trains for many GPU epochs; here we have a few CPU minutes).
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.name = "synthetic_talking_heads/small"
    c.data.shuffle_buffer = 256
    c.stl.clip_len = 24
    c.stl.audio_channels = (16, 32, 32)
    c.stl.audio_features = 128
    c.stl.template_features = 64
    c.stl.gru_features = 128
    c.stl.batch_size = 16
    c.stl.eval_batch_size = 16
    c.stl.eval_batches = 1
    c.stl.num_steps = 300
    c.stl.learning_rate = 1e-3
    c.ltv.image_size = 64
    c.ltv.generator = "fast"
    c.ltv.batch_size = 16
    c.ltv.eval_batch_size = 16
    c.ltv.eval_batches = 1
    c.ltv.num_steps = 400
    c.ltv.learning_rate = 5e-4
    c.train.log_every = 50
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    return c
