"""DataFrames from a synthetic store: columns, values, failed runs, epochs and layers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from shrinkbench.errors import StoreError
from shrinkbench.results import load
from shrinkbench.results.files import run_dir, write_csv
from shrinkbench.results.frame import KEY_COLUMNS, METRIC_KEYS, frame_metric_name, load_epochs, load_layers
from shrinkbench.results.store import Store


def _config(strategy, compression, seed, lr=0.1):
    return {
        "data": {"name": "mnist", "data_dir": "/data", "batch_size": 64},
        "model": {"name": "lenet300", "pretrained": None},
        "dense": {"epochs": 5},
        "pruning": {"strategy": strategy, "compression": compression, "ignore": ["fc3"]},
        "finetune": {"epochs": 2, "lr": lr, "optimizer": "sgd"},
        "seed": seed,
        "device": "cpu",
    }


def _metrics(acc, ratio):
    return {"post_test_acc1": acc, "pre_test_acc1": acc - 0.1, "compression_ratio": ratio, "speedup": ratio * 0.9,
            "custom_extra": 7, "env": {"torch": "2.13", "python": "3.12", "cuda": {"available": False}}}


@pytest.fixture
def out(tmp_path):
    with Store(tmp_path) as s:
        s.register("r1", "prune", _config("global_magnitude", 2, 0))
        s.start("r1"), s.finish("r1", _metrics(0.9, 2.0))
        s.register("r2", "prune", _config("GlobalMagWeight", 4, 1, lr=0.01))  # ShrinkBench alias
        s.start("r2"), s.finish("r2", _metrics(0.8, 4.01))
        s.register("r3", "prune", _config("random", 8, 0))
        s.start("r3"), s.fail("r3", "CompressionError: too much", "tb")
        s.register("r4", "prune", _config("random", 16, 0))
        s.register("d1", "dense", {"data": {"name": "mnist"}, "model": {"name": "lenet300"}, "seed": 0})
        s.start("d1"), s.finish("d1", {"dense_test_acc1": 0.97})
        s.add_epoch("d1", "dense", 0, {"train_loss": 1.0, "val_acc1": 0.9})
        s.add_epoch("r1", "finetune", 0, {"train_loss": 0.5, "val_acc1": 0.95})
        s.add_epoch("r1", "finetune", 1, {"train_loss": 0.4, "val_acc1": 0.96})
    write_csv(run_dir(tmp_path, "r1") / "layers.csv", [
        {"name": "fc1.weight", "kind": "Linear", "shape": (300, 784), "params": 235200, "nonzero": 117600,
         "density": 0.5, "macs_dense": 235200, "macs_sparse": 117600},
        {"name": "fc2.weight", "kind": "Linear", "shape": (100, 300), "params": 30000, "nonzero": 15000,
         "density": 0.5, "macs_dense": 30000, "macs_sparse": 15000},
    ])
    return tmp_path


def test_load_columns_and_values(out):
    df = load(out)
    assert list(df["run_id"]) == ["r1", "r2"]
    assert list(df.columns[:7]) == ["run_id", "status", *KEY_COLUMNS]
    metric_cols = list(df.columns[7:7 + len(METRIC_KEYS)])
    assert metric_cols == [frame_metric_name(k) for k in METRIC_KEYS]
    assert metric_cols[:3] == ["dense_val_top1_pct", "dense_val_top5_pct", "dense_val_loss"]
    assert list(df["strategy"]) == ["GlobalMagWeight", "GlobalMagWeight"]  # the ShrinkBench name
    assert df["compression"].dtype == float and df["seed"].dtype == "int64"
    assert list(df["compression"]) == [2.0, 4.0] and list(df["seed"]) == [0, 1]
    assert list(df["post_test_top1_pct"]) == [90.0, 80.0]  # stored as fractions, shown in percent
    assert math.isnan(df["post_test_top5_pct"].iloc[0])  # a known metric not recorded
    assert list(df["custom_extra"]) == [7, 7]
    assert df["env.torch"].iloc[0] == "2.13" and not df["env.cuda.available"].iloc[0]
    assert list(df["finetune.lr"]) == [0.1, 0.01]
    assert df["pruning.ignore"].iloc[0] == ("fc3",)
    assert df["data.data_dir"].iloc[0] == "/data" and df["device"].iloc[0] == "cpu"
    for dotted in ("data.name", "model.name", "pruning.strategy", "pruning.compression", "config.seed", "env"):
        assert dotted not in df.columns
    assert "error" not in df.columns
    # columns: keys, metrics, then env.*, then config
    cols = list(df.columns)
    assert cols.index("custom_extra") < cols.index("env.torch") < cols.index("data.batch_size")


def test_load_with_failed_and_all(out):
    df = load(out, status=["done", "failed"])
    assert list(df["run_id"]) == ["r1", "r2", "r3"]
    assert df.set_index("run_id").loc["r3", "error"] == "CompressionError: too much"
    assert pd.isna(df.set_index("run_id").loc["r1", "error"])
    assert list(load(out, status=None)["status"]) == ["done", "done", "failed", "pending"]
    dense = load(out, kind="dense")
    assert list(dense["run_id"]) == ["d1"] and dense["dense_test_top1_pct"].iloc[0] == 97.0
    assert pd.isna(dense["strategy"].iloc[0]) and math.isnan(dense["compression"].iloc[0])


def test_load_empty_store_has_columns(tmp_path):
    Store(tmp_path).close()
    df = load(tmp_path)
    assert len(df) == 0 and list(df.columns[:7]) == ["run_id", "status", *KEY_COLUMNS]
    assert "post_test_top1_pct" in df.columns


def test_missing_store_names_folder(tmp_path):
    with pytest.raises(StoreError, match=str(tmp_path)):
        load(tmp_path)
    assert not (tmp_path / "results.sqlite").exists()
    with pytest.raises(StoreError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_load_epochs(out):
    df = load_epochs(out)
    assert list(df.columns[:8]) == ["run_id", *KEY_COLUMNS, "phase", "epoch"]
    assert list(zip(df["run_id"], df["phase"], df["epoch"])) == [
        ("d1", "dense", 0), ("r1", "finetune", 0), ("r1", "finetune", 1)
    ]
    assert list(df["val_top1_pct"]) == [90.0, 95.0, 96.0]
    assert list(load_epochs(out, kind="prune")["run_id"]) == ["r1", "r1"]


def test_load_layers(out):
    df = load_layers(out)
    assert list(df.columns[:6]) == ["run_id", *KEY_COLUMNS]
    assert list(df["name"]) == ["fc1.weight", "fc2.weight"]
    assert list(df["run_id"]) == ["r1", "r1"] and list(df["compression"]) == [2.0, 2.0]
    assert list(df["nonzero"]) == [117600, 15000] and list(df["density"]) == [0.5, 0.5]


def test_load_layers_without_files(tmp_path):
    Store(tmp_path).close()
    df = load_layers(tmp_path)
    assert len(df) == 0 and "macs_sparse" in df.columns
