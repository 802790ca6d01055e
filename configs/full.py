"""Table 2, "The proposed": split STL (lip + head branches) and attentional LTV.

    python train.py --config configs/full.py --workdir runs/full
    python reproduce.py --workdir runs/reproduce        (`make reproduce`: all four Table 2 rows)

The four Table 2 configs (full, no_split, no_attention, baseline) share everything but the two
switches; they train on the synthetic corpus at CPU-friendly sizes (configs/cpu.py) for longer
than the demo. reproduce.py loads each with `get_config()`, trains each distinct stage once (STL
split / not split, LTV with / without attention), links the two a row uses into <workdir>/<row>,
and evaluates all rows into one table; this one is row "Full". Rows trained separately with
train.py are compared with

    python evaluate.py --checkpoint Full=runs/full --checkpoint Baseline=runs/baseline ...

For GPU runs on GRID start from configs/default.py with the same switches.
"""

from configs import cpu


def get_config():
    c = cpu.get_config()
    c.stl.split = True
    c.stl.head_lip_state = "none"  # the paper's head branch (eq. 5), as the README's Table 1/2 rows were measured
    c.ltv.attention = True
    c.stl.num_steps = 1000
    c.ltv.num_steps = 1500
    c.train.eval_every = 250
    c.train.checkpoint_every = 250
    return c
