"""Hand-made per-seed summaries (what `evaluation.summarize` returns per seed) and a markdown table reader,
shared by the tests of seed_tables.py and paper_tables.py."""

from __future__ import annotations

NAN = float("nan")


def _row(lmd: float, ssim: float, psnr: float, **extra: float) -> dict[str, float]:
    return {"lmd": lmd, "ssim": ssim, "psnr": psnr, "sync_r": 0.5, "utterances": 4, **extra}


def _seeds() -> list[dict[str, dict[str, float]]]:
    """Three seeds. Full vs Baseline: ahead on every metric by the same margin in each seed (holds). Full vs
    w/o Attention on LMD: the sign flips between seeds (within the spread). Full vs w/o Splitnet on SSIM:
    behind in every seed (reversed); on PSNR ahead in every seed but by 0.01, 0.01 and 1.0 (mean 0.34 <
    std 0.57: within the spread). The real video's pixel cells are blank (NaN) in every seed; the
    template's sync_r in seed 1 only."""
    out = []
    for i, (full_lmd, noatt_lmd) in enumerate([(2.00, 2.10), (2.10, 2.00), (2.05, 2.10)]):
        full = _row(full_lmd, 0.80 + 0.01 * i, 25.0 + 0.1 * i)
        out.append({
            "Real video (ceiling)": {"lmd": NAN, "ssim": NAN, "psnr": NAN, "sync_r": 0.8, "utterances": 4},
            "Reference frame (copied)": _row(3.0 + 0.1 * i, 0.70, 22.0, sync_r=NAN),
            "Template landmarks (no speech)": _row(2.8, 0.72, 23.0, sync_r=0.1 if i == 1 else NAN),
            "Baseline": _row(full_lmd + 0.5, full["ssim"] - 0.05, full["psnr"] - 1.0),
            "w/o Splitnet": _row(full_lmd + 0.3, full["ssim"] + 0.02, full["psnr"] - (0.01, 0.01, 1.0)[i]),
            "w/o Attention": _row(noatt_lmd, full["ssim"] - 0.03, full["psnr"] - 0.5),
            "Full": full,
        })
    return out


def _cells(table: str) -> dict[str, dict[str, str]]:
    """{row: {column header: cell}} of a markdown table."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(head, cells))
    return rows
