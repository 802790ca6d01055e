"""Table 2, "w/o Splitnet": one STL branch predicts all 68 points; attentional LTV.

    python train.py --config configs/no_split.py --workdir runs/no_split

Row "w/o Splitnet" of `python reproduce.py --workdir runs/reproduce` (see configs/full.py); there it
shares its STL net with "Baseline" and its LTV net with "Full".
"""

from configs import full


def get_config():
    c = full.get_config()
    c.stl.split = False
    return c
