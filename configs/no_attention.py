"""Table 2, "w/o Attention": split STL; the LTV UNet takes image and sketch concatenated, no mask."""

from configs import full


def get_config():
    c = full.get_config()
    c.ltv.attention = False
    return c
