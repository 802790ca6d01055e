"""Table 2, "The proposed": split STL (lip + head branches) and attentional LTV.

The four Table 2 configs (full, no_split, no_attention, baseline) share everything but the two
switches; they train on the synthetic corpus at CPU-friendly sizes (configs/cpu.py) for longer
than the demo. For GPU runs on GRID start from configs/default.py with the same switches.
"""

from configs import cpu


def get_config():
    c = cpu.get_config()
    c.stl.split = True
    c.ltv.attention = True
    c.stl.num_steps = 1000
    c.ltv.num_steps = 1500
    c.train.eval_every = 250
    c.train.checkpoint_every = 250
    return c
