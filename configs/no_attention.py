"""Table 2, "w/o Attention": split STL; the LTV UNet takes image and sketch concatenated, no mask.

    python train.py --config configs/no_attention.py --workdir runs/no_attention

Row "w/o Attention" of `python reproduce.py --workdir runs/reproduce` (see configs/full.py); there it
shares its STL net with "Full" and its LTV net with "Baseline".
"""

from configs import full


def get_config():
    c = full.get_config()
    c.ltv.attention = False
    return c
