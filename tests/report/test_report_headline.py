"""The summary's findings: the best strategy per compression, its runner-up, and what the tests allow."""

from __future__ import annotations

import pandas as pd
import pytest

from shrinkbench.report.headline import findings, winners, winners_table
from shrinkbench.results.analysis import compare_per_compression


def _frame() -> pd.DataFrame:
    """At 2x A leads B and C within the noise; at 4x A beats B by 5 pp with little noise, C trails far."""
    rows = []
    noise = [0.10, -0.20, 0.05, 0.15, -0.10]
    for seed, e in enumerate(noise):
        rows += [
            {"strategy": "A", "compression": 2.0, "post_test_top1_pct": 90.0 + e},
            {"strategy": "B", "compression": 2.0, "post_test_top1_pct": 89.9 - e},
            {"strategy": "C", "compression": 2.0, "post_test_top1_pct": 89.0 + 30 * e},
            {"strategy": "A", "compression": 4.0, "post_test_top1_pct": 85.0 + e},
            {"strategy": "B", "compression": 4.0, "post_test_top1_pct": 80.0 + e / 2},
            {"strategy": "C", "compression": 4.0, "post_test_top1_pct": 40.0 + 2 * e},
            {"strategy": "Unpruned", "compression": 1.0, "post_test_top1_pct": 91.0 + e},
        ]
        for row in rows[-7:]:
            row["seed"] = seed
    return pd.DataFrame(rows).assign(dataset="d", model="m")


def test_winners_and_their_tests():
    runs = _frame()
    comparisons = compare_per_compression(runs)
    table = winners(runs, comparisons)
    assert table["compression"].tolist() == [2.0, 4.0]
    assert table["best"].tolist() == ["A", "A"] and table["next"].tolist() == ["B", "B"]
    at4 = table.iloc[1]
    assert at4["diff"] == pytest.approx(5.0 + sum([0.10, -0.20, 0.05, 0.15, -0.10]) / 10)
    row = comparisons[(comparisons["compression"] == 4.0) & (comparisons["a"] == "A") & (comparisons["b"] == "B")]
    assert at4["p_holm"] == pytest.approx(row["p_holm"].iloc[0]) and at4["significant"]
    assert at4["below"] == ["B", "C"]
    at2 = table.iloc[0]
    assert not at2["significant"] and at2["below"] == []
    cells = winners_table(table)
    assert cells["Compression"].tolist() == ["2\u00d7", "4\u00d7"]
    assert cells["Significant"].tolist() == ["no", "yes"]
    assert cells["Significantly worse than the best"].tolist() == ["none", "B, C"]
    assert cells["Best: top-1 (%) [95% CI]"].iloc[1].startswith("A 85.00 [")


def test_findings_name_the_winner_and_the_test():
    runs = _frame()
    comparisons = compare_per_compression(runs)
    text = findings(winners(runs, comparisons), comparisons, runs)
    assert text[0] == "Highest mean top-1 after fine-tuning: A at 2\u00d7 and 4\u00d7."
    assert text[1].startswith("The best strategy is significantly better than the runner-up for A over B at 4\u00d7")
    assert "at the other 1 compression the two are not distinguishable" in text[1]
    assert "Holm's correction over the 6 tests" in text[1] and "over 5 seeds" in text[1]
    assert text[2] == "Significantly worse than the best: B at 4\u00d7; C at 4\u00d7."
    assert text[3].startswith("Reference: the unpruned control") and "91.00% top-1 (95% CI [" in text[3]


def test_one_seed_gives_no_test():
    runs = _frame()
    runs = runs[runs["seed"] == 0]
    comparisons = compare_per_compression(runs)
    table = winners(runs, comparisons)
    text = findings(table, comparisons, runs)
    assert "a paired test needs at least two seeds" in text[1]
    assert winners_table(table)["Significant"].tolist() == ["not tested", "not tested"]


def test_a_single_strategy_has_nothing_to_compare():
    runs = _frame()
    runs = runs[runs["strategy"].isin(["A", "Unpruned"])]
    comparisons = compare_per_compression(runs)
    assert comparisons.empty
    text = findings(winners(runs, comparisons), comparisons, runs)
    assert text[1] == "Only one strategy was run at each compression: there is nothing to compare it with."


def test_runs_without_an_accuracy_are_named_not_silently_dropped():
    runs = _frame()
    runs.loc[(runs["strategy"] == "B") & (runs["compression"] == 4.0) & (runs["seed"] == 2),
             "post_test_top1_pct"] = float("nan")
    comparisons = compare_per_compression(runs)
    text = findings(winners(runs, comparisons), comparisons, runs)
    assert "1 done run has no top-1 after fine-tuning (NaN) and is left out of the means and tests: " \
           "B 4\u00d7 seed 2." in text
