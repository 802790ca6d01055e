"""Table 2, "Baseline": neither split STL nor attention in LTV."""

from configs import full


def get_config():
    c = full.get_config()
    c.stl.split = False
    c.ltv.attention = False
    return c
