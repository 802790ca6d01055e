"""The main job (`make demo`): many people, the warp generator, 128×128 crops, minutes on a 2-core CPU.

    python demo.py --workdir runs/demo        (`make demo`; demo.py's default --config is this file)
    python train.py --config configs/demo.py --workdir runs/demo

Differences from configs/cpu.py (which the learning tests and the Table 2 configs use): the corpus
is `synthetic_talking_heads/people` (speakers made of several real people and morphs between them;
one identity held out for `test`), crops are 128×128, and the generator is "warp": the reference's
own pixels, moved by a thin-plate spline to the predicted landmarks, carry identity and sharpness,
so a person never seen in training keeps their face. An L1 term (pix2pix) next to the paper's MSE
keeps the painted mouth from averaging to grey (benchmarks/ltv_quality.py: +0.05 SSIM on the held-out
person at 64², BENCHMARKS.md), and an L1 term inside the target's lips makes the network paint the mouth
that a warp of a closed-mouth photo cannot open (+0.025 SSIM, +1.7 dB inside the lips, same table).
"""

from configs import cpu


def get_config():
    c = cpu.get_config()
    c.data.name = "synthetic_talking_heads/people"
    c.ltv.image_size = 128
    c.ltv.generator = "warp"
    c.ltv.batch_size = 8
    c.ltv.eval_batch_size = 8
    c.ltv.pairs_per_example = 2
    c.ltv.num_steps = 250  # the warp carries most of the picture; 300 steps put the demo past 15 min
    c.ltv.l1_weight = 10.0
    c.ltv.mouth_weight = 5.0  # the lips are ~1-2 % of the crop: without it the mouth is left to the warp
    # Chosen on validation with benchmarks/head_gain.py on this config's model: head speed 0.67 of the real
    # head's at 1, 0.91 at 1.8 for +0.06 px of head LMD (BENCHMARKS.md "head gain").
    c.stl.head_gain = 1.8
    return c
