"""Table 2, "Baseline": neither split STL nor attention in LTV.

    python train.py --config configs/baseline.py --workdir runs/baseline

Row "Baseline" of `python reproduce.py --workdir runs/reproduce` (see configs/full.py); there it
shares its STL net with "w/o Splitnet" and its LTV net with "w/o Attention".
"""

from configs import full


def get_config():
    c = full.get_config()
    c.stl.split = False
    c.ltv.attention = False
    return c
