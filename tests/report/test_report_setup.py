"""The setup section: the grid, the budgets and only the settings that differ from the config defaults."""

from __future__ import annotations

import pandas as pd

from shrinkbench.common import flatten_dotted
from shrinkbench.report.defaults import CONFIG_DEFAULTS, DEFINING, same_value
from shrinkbench.report.tables import setup_table


def test_defaults_table_matches_the_experiment_config():
    # the report cannot import experiment (torch); this test can, and keeps the copy honest
    from shrinkbench.experiment.config import Config, config_to_dict

    actual = flatten_dotted(config_to_dict(Config()))
    actual = {k: tuple(v) if isinstance(v, list) else v for k, v in actual.items()}
    assert set(actual) == set(CONFIG_DEFAULTS), "update shrinkbench/report/defaults.py"
    for key, value in actual.items():
        assert same_value(value, CONFIG_DEFAULTS[key]), f"{key}: {value!r} != {CONFIG_DEFAULTS[key]!r}"


def test_same_value():
    assert same_value(0, 0.0) and same_value(float("nan"), None) and same_value([], ())
    assert not same_value(1, True) and not same_value(None, 0) and not same_value((1,), ())


def _runs() -> pd.DataFrame:
    base = {"dataset": "digits", "model": "convnet_digits", "seed": 0,
            "finetune.lr": 0.01, "finetune.epochs": 4, "dense.recipe.epochs": 20, "threads": 1,
            "pruning.include_bias": False, "data.val_size": None, "model.options.width": None}
    rows = [{**base, "strategy": "GlobalMagWeight", "compression": 4.0, "pruning.include_bias": True,
             "finetune.lr": 0.05},
            {**base, "strategy": "RandomPruning", "compression": 4.0, "pruning.include_bias": True,
             "seed": 1},
            {**base, "strategy": "Unpruned", "compression": 1.0}]  # a control resets pruning.*
    return pd.DataFrame(rows)


def test_setup_shows_what_differs_and_what_defines_the_experiment():
    table, left_out = setup_table(_runs(), {"prune": {"done": 3}, "dense": {"done": 2}})
    rows = dict(zip(table["Setting"], zip(table["Value"], table["Default"])))
    assert rows["pruned runs"] == ("3 done", "") and rows["dense runs"] == ("2 done", "")
    assert rows["Data set"][0] == "digits (10 classes)"
    assert rows["Strategies"][0] == "GlobalMagWeight, RandomPruning; Unpruned: the compression-1 control"
    assert rows["Compressions"][0] == "1, 4" and rows["Seeds"][0] == "0, 1"
    # the budgets are always shown, with their defaults
    assert rows["Dense training epochs (dense.recipe.epochs)"] == ("20", "20")
    assert rows["Fine-tuning epochs (finetune.epochs)"] == ("4", "4")
    # settings off their default, with run counts when they vary
    assert rows["finetune.lr"] == ("0.01 (2 runs), 0.05 (1 runs)", "0.01")
    assert rows["pruning.include_bias"] == ("True", "False")  # judged on pruned runs only
    # defaults and unset unknown keys are left out, and counted
    assert not {"threads", "data.val_size", "model.options.width"} & set(rows)
    assert left_out == 2  # threads, data.val_size
    assert len(DEFINING) == 2
