"""reproduce.py --seeds N: mean ± std per cell over training seeds and which of the paper's orderings exceed
the seed-to-seed spread (thflax/measures/seed_tables.py, issue #14).

Hand-made per-seed summaries (what `evaluation.summarize` returns per seed, tests/measures/seed_summaries.py):
no corpus, no training. Table 1 / the paper's published rows are tests/measures/test_paper_tables.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from thflax.measures import evaluation, seed_tables

from tests.measures.seed_summaries import NAN, _cells, _seeds


def test_aggregate_seeds_mean_sample_std_and_nan_cells():
    seeds = _seeds()
    agg = seed_tables.aggregate_seeds(seeds)
    assert list(agg) == list(seeds[0])  # row order kept
    full_lmd = agg["Full"]["lmd"]
    assert full_lmd["values"] == [2.00, 2.10, 2.05] and full_lmd["n"] == 3
    assert full_lmd["mean"] == pytest.approx(2.05)
    assert full_lmd["std"] == pytest.approx(np.std([2.00, 2.10, 2.05], ddof=1))  # sample std, not ddof=0
    assert full_lmd["std"] != pytest.approx(np.std([2.00, 2.10, 2.05]))
    real = agg["Real video (ceiling)"]["ssim"]
    assert real["n"] == 0 and np.isnan(real["mean"]) and np.isnan(real["std"]) and len(real["values"]) == 3
    tmpl = agg["Template landmarks (no speech)"]["sync_r"]  # defined in one seed only
    assert tmpl["n"] == 1 and tmpl["mean"] == pytest.approx(0.1) and np.isnan(tmpl["std"])
    # A row or key missing from a seed counts as undefined there.
    partial = seed_tables.aggregate_seeds([{"A": {"lmd": 1.0}}, {"A": {"lmd": 3.0, "ssim": 0.5}}, {}])
    assert partial["A"]["lmd"]["n"] == 2 and partial["A"]["lmd"]["mean"] == 2.0
    assert partial["A"]["ssim"]["n"] == 1 and np.isnan(partial["A"]["ssim"]["values"][0])


def test_markdown_table_seeds_shows_mean_pm_std_and_dashes_for_nan():
    agg = seed_tables.aggregate_seeds(_seeds())
    cells = _cells(seed_tables.markdown_table_seeds(agg))
    assert cells["Full"]["LMD"] == "2.05 ± 0.05"
    assert cells["Full"]["SSIM"] == f"0.810 ± {np.std([0.80, 0.81, 0.82], ddof=1):.3f}"
    assert cells["Real video (ceiling)"]["SSIM"] == "–" and cells["Real video (ceiling)"]["LMD"] == "–"
    assert cells["Real video (ceiling)"]["sync r"] == "0.80 ± 0.00"
    assert cells["Reference frame (copied)"]["sync r"] == "–"
    assert cells["Template landmarks (no speech)"]["sync r"] == "0.10 (1/3 seeds)"
    assert cells["Full"]["head LMD"] == "–"  # a key no seed has
    # One seed: the value alone, no "±".
    one = _cells(seed_tables.markdown_table_seeds(seed_tables.aggregate_seeds(_seeds()[:1])))
    assert one["Full"]["LMD"] == "2.00" and one["Real video (ceiling)"]["SSIM"] == "–"


def _verdicts(comparisons: list[dict]) -> dict[tuple[str, str, str], str]:
    return {(c["better"], c["worse"], c["key"]): c["verdict"] for c in comparisons}


def test_orderings_hold_only_beyond_the_paired_spread():
    ords = seed_tables.orderings(_seeds())
    comp = _verdicts(ords["components"])
    assert {k for k in comp} == {("Full", r, k) for r in ("Baseline", "w/o Splitnet", "w/o Attention")
                                 for k in ("lmd", "ssim", "psnr")}
    # Consistent margin in every seed: holds, for a lower-is-better and higher-is-better metric alike.
    assert comp[("Full", "Baseline", "lmd")] == comp[("Full", "Baseline", "ssim")] == "holds"
    assert comp[("Full", "Baseline", "psnr")] == "holds"
    # Sign flips between seeds.
    assert comp[("Full", "w/o Attention", "lmd")] == "within the spread"
    # Ahead in every seed, but the mean advantage does not exceed its spread.
    assert comp[("Full", "w/o Splitnet", "psnr")] == "within the spread"
    # Behind in every seed beyond the spread.
    assert comp[("Full", "w/o Splitnet", "ssim")] == "reversed"
    c = next(c for c in ords["components"] if (c["worse"], c["key"]) == ("Baseline", "lmd"))
    assert c["diffs"] == pytest.approx([0.5, 0.5, 0.5]) and c["mean"] == pytest.approx(0.5)  # > 0 = Full ahead
    best = {b["claim"]: b for b in ords["best"]}
    assert best["Full best on LMD"]["verdict"] == "not shown"
    assert best["Full best on LMD"]["against"] == {"Baseline": "holds", "w/o Splitnet": "holds",
                                                   "w/o Attention": "within the spread"}
    assert best["Full best on SSIM"]["verdict"] == "not shown"
    # Every model row against both floors; the real video (no pixel cells) is no floor.
    floors = _verdicts(ords["floors"])
    assert len(floors) == 4 * 2 * 3
    assert floors[("Full", "Reference frame (copied)", "lmd")] == "holds"
    assert not any("Real video" in k[1] for k in floors)


def test_orderings_full_best_holds_when_every_pair_does():
    seeds = _seeds()
    for s in seeds:  # make w/o Attention and w/o Splitnet clearly worse on LMD in every seed
        s["w/o Attention"]["lmd"] = s["Full"]["lmd"] + 0.2
    best = {b["claim"]: b["verdict"] for b in seed_tables.orderings(seeds)["best"]}
    assert best["Full best on LMD"] == "holds"
    assert best["Full best on PSNR"] == "not shown"  # w/o Splitnet's PSNR is within the spread


def test_orderings_with_one_seed_and_undefined_cells():
    one = seed_tables.orderings(_seeds()[:1])
    assert {c["verdict"] for c in one["components"]} == {"one seed (no spread)"}
    assert {b["verdict"] for b in one["best"]} == {"one seed (no spread)"}
    c = seed_tables.paired_comparison(_seeds(), "Real video (ceiling)", "Full", "ssim")
    assert c["verdict"] == "undefined" and c["n"] == 0
    # A seed where one side is undefined is left out of the pairs, not counted as a win or a loss.
    seeds = _seeds()
    seeds[1]["Baseline"]["lmd"] = NAN
    c = seed_tables.paired_comparison(seeds, "Full", "Baseline", "lmd")
    assert c["n"] == 2 and c["verdict"] == "holds" and np.isnan(c["diffs"][1])


def test_orderings_claim_nothing_below_the_printed_resolution():
    """A consistent advantage smaller than the table's last digit (SSIM prints 3 decimals) is no ordering."""
    seeds = _seeds()
    for i, s in enumerate(seeds):
        s["Template landmarks (no speech)"]["ssim"] = s["Full"]["ssim"] - 1e-5 * (1 + 0.1 * i)
        s["Reference frame (copied)"]["ssim"] = s["Full"]["ssim"] - 1e-3 * (1 + 0.1 * i)
    floors = _verdicts(seed_tables.orderings(seeds)["floors"])
    assert floors[("Full", "Template landmarks (no speech)", "ssim")] == "within the spread"
    assert floors[("Full", "Reference frame (copied)", "ssim")] == "holds"


def test_orderings_markdown_states_the_rule_and_every_claim():
    md = seed_tables.markdown_orderings(seed_tables.orderings(_seeds()))
    assert "ddof=1" in md and "every seed" in md
    assert "- Full best on LMD: **not shown** (vs w/o Attention: within the spread)" in md
    assert "- Full better than w/o Attention on LMD: **within the spread** (mean advantage" in md
    assert "- Full better than Baseline on LMD: **holds** (mean advantage +0.5 ± " in md
    assert "per seed +0.5, +0.5, +0.5)" in md
    assert "Reference frame (copied) on SSIM" in md


def test_seed_summary_json_is_strict_with_nan_as_null(tmp_path):
    seeds = _seeds()
    obj = {"rows": seed_tables.aggregate_seeds(seeds), "orderings": seed_tables.orderings(seeds)}
    path = tmp_path / "summary.json"
    evaluation.write_json(str(path), obj)
    raw = json.loads(path.read_text())  # strict JSON: no bare NaN
    assert raw["rows"]["Real video (ceiling)"]["ssim"]["mean"] is None
    back = evaluation.read_json(str(path))
    assert np.isnan(back["rows"]["Real video (ceiling)"]["ssim"]["values"][0])
    assert back["rows"]["Full"]["lmd"]["values"] == [2.00, 2.10, 2.05]


def test_ordering_row_names_match_the_rows_run_table_makes(monkeypatch, tmp_path):
    """The orderings find their rows by name: run_table's ceiling and floor rows are named `REAL_ROW` and
    `FLOOR_ROWS`, and the model rows keep the names they are given (reproduce.py gives
    `seed_tables.ABLATION_ROWS`' names)."""
    seen = []

    def fake_evaluate(rows, utterances, max_utterances=None, progress=True, expert=None):
        seen.extend((r.name, r.kind) for r in rows)
        return {r.name: [] for r in rows}

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    evaluation.run_table([(name, object()) for name in seed_tables.MODEL_ROWS], [], str(tmp_path))
    assert seen == [(evaluation.REAL_ROW, "real"), (evaluation.FLOOR_ROWS[0], "reference"),
                    (evaluation.FLOOR_ROWS[1], "template")] + [(name, "model") for name in seed_tables.MODEL_ROWS]
    assert set(evaluation.FLOOR_ROWS) <= set(_seeds()[0]) and set(seed_tables.MODEL_ROWS) <= set(_seeds()[0])
