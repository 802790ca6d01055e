"""Table 2, "w/o Splitnet": one STL branch predicts all 68 points; attentional LTV."""

from configs import full


def get_config():
    c = full.get_config()
    c.stl.split = False
    return c
