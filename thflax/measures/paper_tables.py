"""The paper's published numbers (Wang et al., Interspeech 2020), shown beside ours, never mixed with them:
its Table 2 under its own heading, and its Table 1 (SSIM) as a column next to the SSIM measured here
(mean ± std over training seeds, from `thflax.measures.seed_tables`). What reproduce.py writes to
table2.md's last section and to table1.md.
"""

from __future__ import annotations

from typing import Any

from thflax.measures.evaluation import FLOOR_ROWS
from thflax.measures.seed_tables import comparison_line, mean_std_cell

#: Table 2 (GRID): (method, LMD, SSIM, PSNR) as printed. Measured by the paper on GRID; LMD at the
#: paper's (unstated) landmark scale, so not comparable in absolute value with ours at 256 px.
PAPER_TABLE2 = (("Chen [12]", 1.59, 0.76, 29.33), ("Wiles [15]", 1.48, 0.80, 29.39),
                ("Chung [1]", 1.44, 0.79, 29.87), ("Baseline", 1.82, 0.77, 28.78),
                ("ATVGnet [4]", 1.29, 0.83, 32.15), ("The proposed (w/o Splitnet)", 1.07, 0.84, 29.23),
                ("The proposed (w/o Attention)", 1.33, 0.89, 29.68), ("The proposed", 1.01, 0.91, 29.73))
#: Table 1 (the paper's own recordings with natural head motion): (method, SSIM, our row or None).
PAPER_TABLE1 = (("Chen [12]", 0.74, None), ("ATVG [4]", 0.80, None),
                ("The proposed (w/o attention)", 0.83, "w/o Attention"),
                ("The proposed (w attention)", 0.88, "Full"))
PUBLISHED_NOTE = "published, not measured here"


def markdown_published_table2() -> str:
    """The paper's Table 2 as printed, under its own heading: published numbers, not measured here."""
    lines = [f"## Paper's Table 2 on GRID ({PUBLISHED_NOTE})", "",
             "Numbers as printed in Wang et al. 2020 (GRID, real speakers); not reproduced by this run and "
             "not comparable in absolute value (other data, LMD at another scale). Only the orderings "
             "within a table can be compared.", "",
             "| Method | LMD | SSIM | PSNR |", "|---|---:|---:|---:|"]
    lines += [f"| {m} | {lmd:.2f} | {ssim:.2f} | {psnr:.2f} |" for m, lmd, ssim, psnr in PAPER_TABLE2]
    return "\n".join(lines)


def markdown_table1(agg: dict[str, dict[str, dict[str, Any]]], data_name: str,
                    ords: dict[str, Any] | None = None, floors: tuple[str, ...] = FLOOR_ROWS) -> str:
    """Table 1 (SSIM): our measured SSIM (mean ± std over seeds, from `aggregate_seeds`) beside the paper's
    published numbers, in separate columns: the floors and the paper's two rows matched to ours
    (w/o attention = "w/o Attention", w attention = "Full"), and its published peers (Chen, ATVG).
    With `ords` (`orderings` of several seeds) the SSIM comparisons of those rows follow the table."""
    n_seeds = max((len(c["values"]) for row in agg.values() for c in row.values()), default=0)
    mine = [row for _, _, row in PAPER_TABLE1 if row]

    def ours(row: str | None) -> str:
        return mean_std_cell(agg.get(row, {}).get("ssim"), 3, n_seeds) if row else "–"

    seeds = f", mean ± std over {n_seeds} training seeds (ddof=1)" if n_seeds > 1 else ""
    lines = [f"# Table 1: SSIM ({data_name})", "",
             f"| Method | SSIM measured here ({data_name}{seeds}) | SSIM in the paper ({PUBLISHED_NOTE}) |",
             "|---|---:|---:|"]
    lines += [f"| {f} (floor) | {ours(f)} | – |" for f in floors if f in agg]
    for method, ssim, row in PAPER_TABLE1:
        name = f"{method} = our \"{row}\"" if row else method
        lines.append(f"| {name} | {ours(row)} | {ssim:.2f} |")
    lines += ["", "The paper's Table 1 is on data with natural head motion: read this file from a run on a "
              "head-motion corpus (the default synthetic_talking_heads/small, not grid_like). Its published "
              "column is the paper's own recordings (real people, 300×300 crops) and its peers as it reports "
              "them: not measured here, and comparable with ours only in its ordering (w attention > "
              "w/o attention > ATVG > Chen)."]
    if ords is not None:
        cmp = [c for c in ords["components"] + ords["floors"]
               if c["key"] == "ssim" and c["better"] in mine and c["worse"] in set(mine) | set(floors)]
        if cmp:
            lines += ["", "SSIM orderings over seeds (the rule: table2.md's Orderings section):", ""]
            lines += [comparison_line(c) for c in cmp]
    return "\n".join(lines)
