"""Schedules in the results frame: strategy labels per schedule, list metrics as tuples (accuracy lists
in percent), stores that mix runs from before schedules with scheduled runs, and the statistics of
training cost, rounds and sparsity paths."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shrinkbench.results import analysis, load
from shrinkbench.results.frame import frame_metric_name, frame_metric_value, key_values, load_epochs
from shrinkbench.results.store import Store


def _config(strategy="global_magnitude", compression=4, seed=0, schedule=None, target=None):
    config = {"data": {"name": "mnist"}, "model": {"name": "lenet300"},
              "pruning": {"strategy": strategy, "compression": compression},
              "finetune": {"epochs": 2, "lr": 0.01}, "seed": seed}
    if target:
        config["pruning"]["target"] = target
    if schedule is not None:
        config["schedule"] = schedule
    return config


@pytest.mark.parametrize("name, label", [
    ("one-shot", "GlobalMagWeight"),
    ("one-shot at init", "GlobalMagWeight [one-shot at init]"),
    ("iterative", "GlobalMagWeight [iterative]"),
    ("gradual at init", "GlobalMagWeight [gradual at init]"),
    ("lottery (rewind 1ep)", "GlobalMagWeight [lottery (rewind 1ep)]"),
    ("lottery (rewind 0) shuffle control", "GlobalMagWeight [lottery (rewind 0) shuffle control]"),
])
def test_the_schedule_names_the_curve(name, label):
    assert key_values(_config(), {"schedule_name": name})["strategy"] == label
    assert analysis.base_strategy(label) == "GlobalMagWeight"
    assert analysis.schedule_of(label) == name


def test_schedule_before_the_target_suffix_and_recorded_names_first():
    keys = key_values(_config("channel_l1", target="speedup"), {"schedule_name": "iterative"})
    assert keys["strategy"] == "channel_l1 [iterative] (speedup)"
    assert analysis.target_of(keys["strategy"]) == "speedup"  # read at the end of the label
    assert analysis.base_strategy(keys["strategy"]) == "channel_l1 (speedup)"
    recorded = {"strategy_name": "MyPruner", "schedule_name": "gradual"}
    assert key_values(_config(), recorded)["strategy"] == "MyPruner [gradual]"


def test_without_a_recorded_name_the_config_names_the_schedule():
    # a failed run has no metrics: its label comes from schedule.* and matches what the run records
    lottery = {"kind": "lottery", "at_init": False, "rewind": "500it", "control": "random"}
    assert key_values(_config(schedule=lottery))["strategy"] == \
        "GlobalMagWeight [lottery (rewind 500it) random control]"
    assert key_values(_config(schedule={"kind": "gradual", "at_init": True}))["strategy"] == \
        "GlobalMagWeight [gradual at init]"
    # the names experiment.schedules.schedule_label gives
    assert key_values(_config(schedule={"kind": "iterative", "rate": 0.25}))["strategy"] == \
        "GlobalMagWeight [iterative 25%/round]"
    assert key_values(_config(schedule={"kind": "lottery", "rewind": "0it", "control": "none"}))["strategy"] == \
        "GlobalMagWeight [lottery (rewind init)]"
    assert key_values(_config(schedule={"kind": "oneshot", "at_init": True}))["strategy"] == \
        "GlobalMagWeight [one-shot at init]"
    assert key_values(_config("none", 1, schedule={"kind": "gradual", "at_init": True}))["strategy"] == "Unpruned"
    assert key_values(_config(schedule={"kind": "oneshot", "at_init": False}))["strategy"] == "GlobalMagWeight"
    assert key_values(_config())["strategy"] == "GlobalMagWeight"  # an older store: one-shot
    assert key_values(_config("none", 1))["strategy"] == "Unpruned"


def test_list_metrics_become_tuples_and_accuracy_lists_percent():
    assert frame_metric_name("round_test_acc1") == "round_test_top1_pct"
    assert frame_metric_value("round_test_acc1", [0.5, 0.25]) == (50.0, 25.0)
    assert frame_metric_value("round_val_acc5", [1, None]) == (100.0, None)
    assert frame_metric_value("path_sparsity", [0.2, 0.36]) == (0.2, 0.36)
    assert frame_metric_value("path_step", []) == ()
    assert frame_metric_value("post_test_acc1", 0.9) == 90.0  # scalars as before


def _old_metrics(acc):
    return {"post_test_acc1": acc, "pre_test_acc1": acc - 0.1, "compression_ratio": 4.0, "speedup": 3.0,
            "dense_test_acc1": 0.98, "env": {"torch": "2.3"}}


def _new_metrics(acc, name, kind, macs, rounds=None):
    out = {**_old_metrics(acc), "schedule": kind, "schedule_name": name, "path_step": [0, 100],
           "path_sparsity": [0.5, 0.75], "path_compression": [2.0, 4.0], "train_epochs": 12.0,
           "train_steps": 1200, "train_macs": macs}
    if rounds:
        out.update(round_compression=[2.0, 4.0], round_test_acc1=rounds, round_val_acc1=rounds)
    return out


@pytest.fixture
def mixed(tmp_path):
    """Runs from before schedules (no schedule, path, round or cost keys) beside scheduled runs."""
    with Store(tmp_path) as store:
        for seed in (0, 1):
            for run_id, config, metrics in (
                (f"old-{seed}", _config(seed=seed), _old_metrics(0.90 + 0.01 * seed)),
                (f"rand-{seed}", _config("random", seed=seed), _old_metrics(0.80 + 0.01 * seed)),
                (f"iter-{seed}", _config(seed=seed, schedule={"kind": "iterative", "at_init": False}),
                 _new_metrics(0.93 + 0.01 * seed, "iterative", "iterative", 2.0e9, [0.95, 0.93 + 0.01 * seed])),
                (f"ctrl-{seed}", _config("none", 1, seed), _old_metrics(0.97)),
            ):
                store.register(run_id, "prune", config)
                store.start(run_id)
                store.finish(run_id, metrics)
                store.add_epoch(run_id, "finetune", 1, {"val_acc1": 0.9, "mask_density": [0.5, 0.25]})
    return tmp_path


def test_a_mixed_store_loads_and_every_aggregation_runs(mixed):
    df = load(mixed).set_index("run_id")
    assert df.loc["iter-0", "strategy"] == "GlobalMagWeight [iterative]"
    assert df.loc["old-0", "strategy"] == "GlobalMagWeight"
    assert df.loc["iter-1", "round_test_top1_pct"] == pytest.approx((95.0, 94.0))
    assert df.loc["iter-0", "path_step"] == (0, 100) and df.loc["iter-0", "path_sparsity"] == (0.5, 0.75)
    assert df.loc["iter-0", "schedule_name"] == "iterative" and df.loc["iter-0", "schedule.kind"] == "iterative"
    assert pd.isna(df.loc["old-0", "round_test_top1_pct"]) and pd.isna(df.loc["old-0", "train_macs"])
    df = df.reset_index()
    # tuples hash: whole-row operations and groupby over every column work
    assert len(df.drop_duplicates()) == len(df)
    assert df.groupby("round_test_top1_pct", dropna=False).size().sum() == len(df)
    agg = analysis.aggregate(df)
    iterative = agg[agg["strategy"] == "GlobalMagWeight [iterative]"].iloc[0]
    assert iterative["post_test_top1_pct_mean"] == pytest.approx(93.5)
    agg = analysis.aggregate(df, metrics=["train_macs", "round_test_top1_pct"])
    row = agg.set_index("strategy").loc["GlobalMagWeight [iterative]"]
    assert row["train_macs_mean"] == 2.0e9 and row["round_test_top1_pct_n"] == 0  # a list is no number
    assert len(analysis.checklist(df)) == 6
    assert len(analysis.auc(df)) == 3 and len(analysis.pareto_front(df))
    changed = analysis.accuracy_change(df).set_index("run_id")
    assert changed.loc["iter-0", "delta_post_test_top1_pct"] == pytest.approx(93.0 - 97.0)
    epochs = load_epochs(mixed)
    assert epochs["mask_density"].iloc[0] == (0.5, 0.25)


def test_comparisons_carry_the_cost_and_unknown_cost_is_no_flag(mixed):
    df = load(mixed)
    out = analysis.compare_per_compression(df).set_index(["a", "b"])
    known = out.loc[("GlobalMagWeight", "GlobalMagWeight [iterative]")]
    assert math.isnan(known["macs_a"]) and known["macs_b"] == 2.0e9
    assert math.isnan(known["macs_ratio"]) and known["equal_cost"] is None
    old = out.loc[("GlobalMagWeight", "RandomPruning")]
    assert old["equal_cost"] is None


def _cost_rows(macs: dict[str, list[float]], compression=4.0):
    rows = []
    for label, values in macs.items():
        for seed, value in enumerate(values):
            kind = "oneshot" if "[" not in label else analysis.schedule_of(label).split()[0]
            rows.append({"dataset": "mnist", "model": "lenet300", "strategy": label, "compression": compression,
                         "seed": seed, "schedule": kind, "post_test_top1_pct": 90.0 + seed + len(label) % 3,
                         "train_macs": value, "train_epochs": 10.0, "train_steps": 1000})
    return rows


def test_training_cost_ratios_against_one_shot_of_the_same_base():
    rows = _cost_rows({"GlobalMagWeight": [100.0, 100.0], "LayerMagWeight": [50.0, 50.0],
                       "GlobalMagWeight [lottery (rewind 0)]": [520.0, 520.0],
                       "GlobalMagWeight [gradual]": [100.5, 100.5],
                       "MyPruner [iterative]": [300.0, 300.0]})
    costs = analysis.training_cost(pd.DataFrame(rows)).set_index("strategy")
    assert costs.loc["GlobalMagWeight", "reference"] and not costs.loc["GlobalMagWeight [gradual]", "reference"]
    assert costs.loc["GlobalMagWeight [lottery (rewind 0)]", "macs_ratio"] == pytest.approx(5.2)
    assert costs.loc["GlobalMagWeight [lottery (rewind 0)]", "reference_strategy"] == "GlobalMagWeight"
    assert costs.loc["GlobalMagWeight [gradual]", "equal_cost"]  # 0.5% apart: equal
    # no one-shot MyPruner: compared with every one-shot strategy at that compression (mean 75)
    assert costs.loc["MyPruner [iterative]", "reference_strategy"] == "GlobalMagWeight, LayerMagWeight"
    assert costs.loc["MyPruner [iterative]", "macs_ratio"] == pytest.approx(4.0)
    unequal = analysis.unequal_costs(costs.reset_index())
    assert set(unequal["strategy"]) == {"GlobalMagWeight [lottery (rewind 0)]", "MyPruner [iterative]"}
    assert costs.loc["LayerMagWeight", "train_epochs_mean"] == 10.0


def test_equal_cost_within_one_percent():
    assert analysis.equal_cost(100.0, 100.9) and analysis.equal_cost(100.9, 100.0)
    assert analysis.equal_cost(100.0, 101.5) is False and analysis.equal_cost(520.0, 100.0) is False
    assert analysis.equal_cost(np.nan, 1.0) is None and analysis.equal_cost(None, 1.0) is None
    assert analysis.cost_ratio(520.0, 100.0) == pytest.approx(5.2)


def test_comparison_cost_columns_paired_by_seed():
    rows = _cost_rows({"GlobalMagWeight": [100.0, 120.0], "GlobalMagWeight [iterative]": [250.0, 270.0]})
    out = analysis.compare_per_compression(pd.DataFrame(rows)).iloc[0]
    assert (out["a"], out["b"]) == ("GlobalMagWeight", "GlobalMagWeight [iterative]")
    assert out["macs_a"] == 110.0 and out["macs_b"] == 260.0
    assert out["macs_ratio"] == pytest.approx(110 / 260)
    assert out["equal_cost"] is not None and not out["equal_cost"]


def test_schedule_kinds_at_init_and_has_schedules():
    df = pd.DataFrame({"strategy": ["A", "A [gradual at init]", "A [one-shot at init]", "A"],
                       "schedule": ["oneshot", "gradual", None, None],
                       "schedule.kind": [None, "gradual", "oneshot", None],
                       "schedule.at_init": [False, True, np.nan, np.nan],
                       "schedule_name": ["one-shot", "gradual at init", "one-shot at init", None]})
    assert list(analysis.schedule_kinds(df)) == ["oneshot", "gradual", "oneshot", "oneshot"]
    assert list(analysis.at_init(df)) == [False, True, True, False]
    assert analysis.has_schedules(df) and not analysis.has_schedules(df.iloc[[0, 3]])
    assert analysis.has_schedules(df.iloc[[2]])  # one-shot at init counts
    assert not analysis.has_schedules(pd.DataFrame({"strategy": ["A"]}))  # an older store


def test_round_curves_pool_runs_and_add_controls_trained_once():
    base = {"dataset": "mnist", "model": "lenet300", "compression": 4.0, "dense_test_top1_pct": 98.0}
    df = pd.DataFrame([
        {**base, "run_id": "t0", "strategy": "A [lottery (rewind 0)]", "seed": 0, "schedule": "lottery",
         "round_compression": (2.0, 4.0), "round_test_top1_pct": (97.0, 95.0)},
        {**base, "run_id": "t1", "strategy": "A [lottery (rewind 0)]", "seed": 1, "schedule": "lottery",
         "round_compression": (2.0, 4.0), "round_test_top1_pct": (96.0, 94.0)},
        {**base, "run_id": "t8", "strategy": "A [lottery (rewind 0)]", "seed": 0, "compression": 8.0,
         "schedule": "lottery", "round_compression": (2.0, 4.0, 8.0), "round_test_top1_pct": (97.0, 95.0, 90.0)},
        {**base, "run_id": "c0", "strategy": "A [lottery (rewind 0) reinit control]", "seed": 0,
         "schedule": "lottery", "compression_ratio": 4.0, "post_test_top1_pct": 85.0,
         "round_compression": np.nan, "round_test_top1_pct": np.nan},
        {**base, "run_id": "o0", "strategy": "A", "seed": 0, "schedule": "oneshot", "compression_ratio": 4.0,
         "post_test_top1_pct": 93.0, "round_compression": np.nan, "round_test_top1_pct": np.nan},
    ])
    curves = analysis.round_curves(df)
    ticket = curves[curves["strategy"] == "A [lottery (rewind 0)]"]
    assert list(ticket["x"]) == [2.0, 4.0, 8.0] and list(ticket["n"]) == [3, 3, 1]
    assert list(ticket["mean"]) == pytest.approx([96 + 2 / 3, 94 + 2 / 3, 90.0])
    assert list(ticket["min"]) == [96.0, 94.0, 90.0] and list(ticket["max"]) == [97.0, 95.0, 90.0]
    control = curves[curves["strategy"] == "A [lottery (rewind 0) reinit control]"].iloc[0]
    assert (control["x"], control["mean"], control["from_rounds"]) == (4.0, 85.0, False)
    assert "A" not in set(curves["strategy"])  # one-shot has no rounds
    points = analysis.round_points(df)
    assert list(points.columns[-3:]) == ["round", "round_compression", "round_test_top1_pct"]
    assert len(points) == 7 and list(points[points["run_id"] == "t8"]["round"]) == [0, 1, 2]


def test_path_points_one_row_per_pruning_step():
    df = pd.DataFrame([{"run_id": "g", "strategy": "A [gradual]", "compression": 4.0, "seed": 0,
                        "path_step": (0, 50, 100), "path_sparsity": (0.0, 0.5, 0.75),
                        "path_compression": (1.0, 2.0, 4.0)},
                       {"run_id": "bad", "strategy": "A [gradual]", "compression": 4.0, "seed": 1,
                        "path_step": (0, 50), "path_sparsity": (0.5,), "path_compression": (2.0,)},
                       {"run_id": "old", "strategy": "A", "compression": 4.0, "seed": 0,
                        "path_step": np.nan, "path_sparsity": np.nan, "path_compression": np.nan}])
    points = analysis.path_points(df)
    assert list(points["run_id"]) == ["g"] * 3  # lists of unequal length are left out
    assert list(points["step"]) == [0, 50, 100] and list(points["compression_after"]) == [1.0, 2.0, 4.0]
    assert analysis.path_points(df.drop(columns=["path_step", "path_sparsity", "path_compression"])).empty


@pytest.mark.parametrize("schedule, compression", [
    ({}, 4.0), ({"kind": "oneshot", "at_init": True}, 4.0), ({"kind": "oneshot", "at_init": True}, 1.0),
    ({"kind": "iterative", "rate": 0.2}, 8.0), ({"kind": "iterative", "rate": 0.125}, 8.0),
    ({"kind": "gradual", "at_init": False}, 8.0), ({"kind": "gradual", "at_init": True}, 8.0),
    ({"kind": "lottery", "rewind": "0it", "control": "none"}, 8.0),
    ({"kind": "lottery", "rewind": "1ep", "control": "shuffle"}, 8.0),
    ({"kind": "lottery", "rewind": "500it", "control": "reinit"}, 8.0),
])
def test_config_names_match_the_runners(schedule, compression):
    # the results layer may not import the experiment (torch); this test can, and keeps the copy honest
    pytest.importorskip("torch")
    from shrinkbench.experiment.schedules import schedule_label
    from shrinkbench.results.frame import schedule_name

    config = _config(compression=compression, schedule=schedule or None)
    assert schedule_name(config) == schedule_label(schedule, control=compression == 1.0)


def test_an_allocation_override_is_its_own_curve():
    from shrinkbench.results.frame import key_values

    config = {"data": {"name": "shakespeare"}, "model": {"name": "char_gpt"}, "seed": 1,
              "pruning": {"strategy": "wanda", "compression": 1.94, "allocation": "2:4"}}
    assert key_values(config, {"strategy_name": "Wanda"})["strategy"] == "Wanda (2:4)"
    config["pruning"]["allocation"] = None
    assert key_values(config, {"strategy_name": "Wanda"})["strategy"] == "Wanda"
    config["pruning"]["allocation"] = "erk"
    config["schedule"] = {"kind": "gradual"}
    assert key_values(config, {"strategy_name": "SNIP", "schedule_name": "gradual"})["strategy"] \
        == "SNIP (erk) [gradual]"
