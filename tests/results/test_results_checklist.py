"""The reporting checklist on run sets that pass and that fail each rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shrinkbench.results import checklist
from shrinkbench.results.checks import RULES

RULE_NAMES = ["operating_points", "seeds", "compression_and_speedup", "baselines", "dense_control", "top5"]


def _runs(dataset="cifar100", strategies=("global_magnitude", "random"), compressions=(2, 4, 8, 16, 32),
          seeds=(0, 1, 2)):
    rows = []
    for strategy in strategies:
        for c in compressions:
            for s in seeds:
                rows.append({"dataset": dataset, "model": "resnet20", "strategy": strategy, "compression": float(c),
                             "seed": s, "compression_ratio": c * 1.001, "speedup": c * 0.8,
                             "post_test_top1_pct": 0.7, "post_test_top5_pct": 0.9,
                             "finetune.epochs": 2, "finetune.lr": 0.1})
    for s in seeds:
        rows.append({"dataset": dataset, "model": "resnet20", "strategy": strategies[0], "compression": 1.0,
                     "seed": s, "compression_ratio": 1.0, "speedup": 1.0, "post_test_top1_pct": 0.75,
                     "post_test_top5_pct": 0.92, "finetune.epochs": 2, "finetune.lr": 0.1})
    return pd.DataFrame(rows)


def _verdicts(df):
    items = checklist(df)
    assert [i.rule for i in items] == RULE_NAMES
    return {i.rule: i for i in items}


def _only_failure(df, rule):
    verdicts = _verdicts(df)
    assert {r for r, i in verdicts.items() if not i.passed} == {rule}, {r: i.detail for r, i in verdicts.items()}
    return verdicts[rule].detail


def test_complete_run_set_passes_every_rule():
    verdicts = _verdicts(_runs())
    assert all(i.passed for i in verdicts.values()), {r: i.detail for r, i in verdicts.items()}
    assert verdicts["operating_points"].detail == "5 to 5 compressions per strategy"
    assert verdicts["top5"].detail == "cifar100: top-5 reported"
    for item in verdicts.values():
        assert item.description == RULES[item.rule][0] and item.reference


def test_operating_points():
    df = _runs()
    df = df[~((df["strategy"] == "random") & (df["compression"] == 32))]
    assert "cifar100/resnet20/random: 4" in _only_failure(df, "operating_points")
    more = pd.concat([_runs(), _runs(compressions=(64,))[lambda d: d["compression"] > 1]])
    assert _verdicts(more)["operating_points"].detail == "6 to 6 compressions per strategy"


def test_seeds():
    df = _runs()
    df = df[~((df["strategy"] == "random") & (df["compression"] == 8) & (df["seed"] == 2))]
    assert "cifar100/resnet20/random/8.0: 2" in _only_failure(df, "seeds")
    control_short = _runs()
    control_short = control_short[~((control_short["compression"] == 1) & (control_short["seed"] == 0))]
    assert "/1.0: 2" in _only_failure(control_short, "seeds")


def test_compression_and_speedup():
    assert "speedup missing" in _only_failure(_runs().drop(columns="speedup"), "compression_and_speedup")
    df = _runs()
    df.loc[3, "compression_ratio"] = np.inf
    df.loc[[4, 5], "speedup"] = np.nan
    detail = _only_failure(df, "compression_and_speedup")
    assert "compression_ratio on 1 of" in detail and "speedup on 2 of" in detail


def test_baselines():
    assert "lacks RandomPruning" in _only_failure(_runs(strategies=("global_magnitude", "global_gradient")), "baselines")
    detail = _only_failure(_runs(strategies=("random", "global_gradient")), "baselines")
    assert "lacks GlobalMagWeight or LayerMagWeight" in detail
    assert _verdicts(_runs(strategies=("LayerMagWeight", "RandomPruning")))["baselines"].passed


def test_dense_control():
    df = _runs()
    assert "has no compression-1 control" in _only_failure(df[df["compression"] != 1], "dense_control")
    other = df.copy()
    other.loc[other["compression"] == 1, "finetune.epochs"] = 0  # control got less fine-tuning
    assert "different recipe" in _only_failure(other, "dense_control")
    no_recipe = df.drop(columns=["finetune.epochs", "finetune.lr"])
    assert "not recorded" in _only_failure(no_recipe, "dense_control")


def test_top5():
    assert "100 classes but post_test_top5_pct missing" in _only_failure(_runs().drop(columns="post_test_top5_pct"), "top5")
    few = _verdicts(_runs(dataset="mnist").drop(columns="post_test_top5_pct"))["top5"]
    assert few.passed and few.detail == "mnist: not applicable (10 classes)"
    unknown = _runs(dataset="mydata").drop(columns="post_test_top5_pct")
    assert "number of classes unknown" in _only_failure(unknown, "top5")
    assert _verdicts(unknown.assign(num_classes=5))["top5"].passed
    assert not _verdicts(unknown.assign(**{"data.num_classes": 50}))["top5"].passed
    synthetic = _runs(dataset="synthetic").drop(columns="post_test_top5_pct").assign(**{"data.options.num_classes": 4})
    assert _verdicts(synthetic)["top5"].detail == "synthetic: not applicable (4 classes)"
    assert _verdicts(_runs(dataset="ImageNet"))["top5"].passed


def test_empty_or_keyless_frame_fails_every_rule():
    assert [(i.passed, i.detail) for i in checklist(pd.DataFrame())] == [(False, "no runs")] * 6
    items = checklist(_runs().drop(columns="seed"))
    assert all(not i.passed and i.detail == "column seed missing" for i in items)
