"""Tables over several training seeds (`reproduce.py --seeds N`): mean ± std per cell, and which of the
paper's orderings (Table 2: Full best; each component helps; every model above the floors) exceed the
seed-to-seed spread.

The per-seed inputs are `thflax.measures.evaluation.summarize` outputs, one per training seed; the cells
follow `evaluation.COLUMNS`. The evaluation protocol itself lives in `evaluation`; this module only
combines its results across seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thflax.measures.evaluation import COLUMNS, FLOOR_ROWS, markdown_rows

#: The paper's Table 2 ablation that reproduce.py trains, in table order: (row name, the config under
#: configs/ it trains with). The orderings find the rows by these names.
ABLATION_ROWS = (("Baseline", "baseline"), ("w/o Splitnet", "no_split"), ("w/o Attention", "no_attention"),
                 ("Full", "full"))
MODEL_ROWS = tuple(name for name, _ in ABLATION_ROWS)

#: The paper's own metrics, compared in the orderings; LMD is better lower, SSIM and PSNR higher.
ORDERING_KEYS = (("LMD", "lmd"), ("SSIM", "ssim"), ("PSNR", "psnr"))
LOWER_IS_BETTER = frozenset({"lmd", "lmd_sum", "lmd_head", "lmd_stl", "lse_d"})

ORDERING_RULE = (
    "A beats B on a metric when, with d_i = A's advantage over B in training seed i (paired: every seed "
    "trains on the same corpus and is scored on the same test utterances, so the corpus' difficulty "
    "cancels), d_i > 0 in every seed AND mean(d) > std(d) (sample std over seeds, ddof=1): the mean "
    "advantage exceeds its seed-to-seed spread; and mean(d) is at least half a unit of the last digit the "
    "table prints (LMD 0.005, SSIM 0.0005, PSNR 0.005), so no order is claimed between equal-looking cells. "
    "'reversed' is the same with B ahead; anything else is 'within the spread'. A screen, not a "
    "significance test: with 3 seeds it amounts to a paired t above sqrt(3) = 1.7 (one-sided p ~ 0.11) on "
    "top of the sign agreeing in all 3 seeds.")


def _resolution(key: str) -> float:
    """Half a unit of the last digit `evaluation.markdown_table` prints for `key` (0 for keys it does not print)."""
    return next((0.5 * 10.0 ** -digits for _, k, digits in COLUMNS if k == key), 0.0)


def aggregate_seeds(summaries: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """`summarize` outputs of several training seeds -> {row: {key: {"mean", "std", "n", "values"}}}.

    `values` are the per-seed numbers in seed order (NaN where a seed has none: an undefined metric, a
    blank cell such as the real video's SSIM); `mean` and `std` are over the finite ones, `std` the sample
    standard deviation (ddof=1, NaN with fewer than 2), `n` how many were finite. Rows and keys keep the
    first summary's order; a row or key missing from a seed counts as NaN there.
    """
    rows: dict[str, list[str]] = {}
    for s in summaries:
        for name, row in s.items():
            keys = rows.setdefault(name, [])
            keys += [k for k in row if k not in keys]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, keys in rows.items():
        out[name] = {}
        for key in keys:
            vals = [s.get(name, {}).get(key) for s in summaries]
            vals = [float("nan") if v is None else float(v) for v in vals]
            ok = np.array([v for v in vals if np.isfinite(v)])
            out[name][key] = {"mean": float(ok.mean()) if ok.size else float("nan"),
                              "std": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
                              "n": int(ok.size), "values": vals}
    return out


def mean_std_cell(cell: dict[str, Any] | None, digits: int, n_seeds: int) -> str:
    """"m ± s" at `digits`; "–" when undefined in every seed; "(k/N seeds)" when some seeds lack it."""
    if not cell or not cell["n"]:
        return "–"
    text = f"{cell['mean']:.{digits}f}"
    if np.isfinite(cell["std"]):
        text += f" ± {cell['std']:.{digits}f}"
    if cell["n"] < n_seeds:
        text += f" ({cell['n']}/{n_seeds} seeds)"
    return text


def markdown_table_seeds(agg: dict[str, dict[str, dict[str, Any]]]) -> str:
    """`markdown_table`'s layout with "mean ± std" over seeds per cell (from `aggregate_seeds`)."""
    n_seeds = max((len(c["values"]) for row in agg.values() for c in row.values()), default=0)
    return markdown_rows(agg, lambda c, digits: mean_std_cell(c, digits, n_seeds))


def paired_comparison(summaries: list[dict[str, dict[str, float]]], better: str, worse: str,
                      key: str) -> dict[str, Any]:
    """Whether row `better` beats row `worse` on `key` over seeds, by `ORDERING_RULE`.

    Returns {"better", "worse", "key", "diffs": [per-seed advantage of `better`, > 0 = ahead; NaN where
    either is undefined], "mean", "std" (of the finite diffs, ddof=1), "n", "verdict"}: verdict is "holds",
    "reversed", "within the spread", "one seed (no spread)" or "undefined" (no seed has both).
    """
    sign = -1.0 if key in LOWER_IS_BETTER else 1.0
    diffs = []
    for s in summaries:
        a, b = s.get(better, {}).get(key), s.get(worse, {}).get(key)
        diffs.append(float("nan") if a is None or b is None else sign * (float(a) - float(b)))
    d = np.array([x for x in diffs if np.isfinite(x)])
    mean = float(d.mean()) if d.size else float("nan")
    std = float(d.std(ddof=1)) if d.size > 1 else float("nan")
    res = _resolution(key)
    if d.size == 0:
        verdict = "undefined"
    elif d.size == 1:
        verdict = "one seed (no spread)"
    elif np.all(d > 0) and mean > std and mean >= res:
        verdict = "holds"
    elif np.all(d < 0) and -mean > std and -mean >= res:
        verdict = "reversed"
    else:
        verdict = "within the spread"
    return {"better": better, "worse": worse, "key": key, "diffs": diffs, "mean": mean, "std": std,
            "n": int(d.size), "verdict": verdict}


def orderings(summaries: list[dict[str, dict[str, float]]], model_rows: tuple[str, ...] = MODEL_ROWS,
              full: str = "Full", floors: tuple[str, ...] = FLOOR_ROWS) -> dict[str, Any]:
    """The paper's Table 2 claims checked against the seed-to-seed spread (`paired_comparison`).

    * components: `full` vs each other model row on LMD, SSIM and PSNR ("each component helps": vs
      w/o Splitnet, vs w/o Attention, vs Baseline);
    * best: "`full` best on <metric>" holds only if every one of those comparisons on it holds ("against":
      each comparison's verdict);
    * floors: every model row vs each floor row (copied reference, template landmarks).
    Rows absent from the summaries are left out. Returns {"rule", "components", "best", "floors"}.
    """
    present = [n for n in summaries[0]] if summaries else []
    others = [r for r in model_rows if r != full and r in present]
    has_full = full in present
    components = [paired_comparison(summaries, full, r, key) for r in others for _, key in ORDERING_KEYS] \
        if has_full else []
    best = []
    for label, key in ORDERING_KEYS:
        pairs = [c for c in components if c["key"] == key]
        if not pairs:
            continue
        verdicts = {c["verdict"] for c in pairs}
        verdict = "holds" if verdicts == {"holds"} else (
            "one seed (no spread)" if "one seed (no spread)" in verdicts else "not shown")
        best.append({"claim": f"{full} best on {label}", "key": key, "verdict": verdict,
                     "against": {c["worse"]: c["verdict"] for c in pairs}})
    floor_cmp = [paired_comparison(summaries, r, f, key) for r in model_rows if r in present
                 for f in floors if f in present for _, key in ORDERING_KEYS]
    return {"rule": ORDERING_RULE, "components": components, "best": best, "floors": floor_cmp}


def comparison_line(c: dict[str, Any]) -> str:
    """One `paired_comparison` as a markdown list item: the claim, its verdict and the per-seed numbers."""
    label = {k: lbl for lbl, k in ORDERING_KEYS}.get(c["key"], c["key"])
    if c["n"] > 1:
        detail = (f"mean advantage {c['mean']:+.3g} ± {c['std']:.2g} over {c['n']} seeds; per seed "
                  + ", ".join("–" if not np.isfinite(x) else f"{x:+.3g}" for x in c["diffs"]))
    elif c["n"] == 1:
        detail = f"advantage {c['mean']:+.3g}"
    else:
        detail = "no seed has both"
    return f"- {c['better']} better than {c['worse']} on {label}: **{c['verdict']}** ({detail})"


def markdown_orderings(ords: dict[str, Any]) -> str:
    """`orderings` as a markdown section: the rule, then one line per claim."""
    lines = ["## Orderings", "", ords["rule"], "", "The paper's claims (Table 2: Full best on LMD, SSIM "
             "and PSNR among its own rows; each component helps):", ""]
    lines += [f"- {b['claim']}: **{b['verdict']}**"
              + (" (" + "; ".join(f"vs {r}: {v}" for r, v in b["against"].items() if v != "holds") + ")"
                 if b["verdict"] == "not shown" else "")
              for b in ords["best"]]
    lines += [comparison_line(c) for c in ords["components"]]
    if ords["floors"]:
        lines += ["", "Model rows against the floors (a model must beat copying the reference and "
                  "ignoring the speech):", ""]
        lines += [comparison_line(c) for c in ords["floors"]]
    return "\n".join(lines)
