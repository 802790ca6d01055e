"""Table 1 / the paper's published rows kept apart from ours (thflax/measures/paper_tables.py, issue #14), on
the hand-made per-seed summaries of tests/measures/seed_summaries.py."""

from __future__ import annotations

import numpy as np

from thflax.measures import paper_tables, seed_tables

from tests.measures.seed_summaries import _cells, _seeds


def test_table1_puts_measured_and_published_ssim_in_separate_columns():
    agg = seed_tables.aggregate_seeds(_seeds())
    md = paper_tables.markdown_table1(agg, "synthetic_talking_heads/small", seed_tables.orderings(_seeds()))
    cells = _cells(md)
    head = [c.strip() for c in md.splitlines()[2].strip("|").split("|")]
    measured, published = head[1], head[2]
    assert "measured here" in measured and "3 training seeds" in measured
    assert "not measured here" in published
    assert cells["Chen [12]"][measured] == "–" and cells["Chen [12]"][published] == "0.74"
    assert cells["ATVG [4]"][published] == "0.80"
    full = cells['The proposed (w attention) = our "Full"']
    assert full[published] == "0.88" and full[measured] == f"0.810 ± {np.std([0.80, 0.81, 0.82], ddof=1):.3f}"
    assert cells['The proposed (w/o attention) = our "w/o Attention"'][published] == "0.83"
    assert cells["Reference frame (copied) (floor)"][measured] == "0.700 ± 0.000"
    assert cells["Reference frame (copied) (floor)"][published] == "–"
    # The SSIM orderings of our two rows follow the table.
    assert "- Full better than w/o Attention on SSIM: **holds**" in md
    # One seed: values without ±, no orderings.
    one = _cells(paper_tables.markdown_table1(seed_tables.aggregate_seeds(_seeds()[:1]), "x"))
    assert one['The proposed (w attention) = our "Full"']["SSIM measured here (x)"] == "0.800"


def test_published_table2_is_marked_and_apart_from_ours():
    md = paper_tables.markdown_published_table2()
    assert md.startswith("## ") and "not measured here" in md.splitlines()[0]
    cells = _cells(md)
    assert list(cells) == ["Chen [12]", "Wiles [15]", "Chung [1]", "Baseline", "ATVGnet [4]",
                           "The proposed (w/o Splitnet)", "The proposed (w/o Attention)", "The proposed"]
    assert [cells["The proposed"][k] for k in ("LMD", "SSIM", "PSNR")] == ["1.01", "0.91", "29.73"]
    assert [cells["ATVGnet [4]"][k] for k in ("LMD", "SSIM", "PSNR")] == ["1.29", "0.83", "32.15"]
