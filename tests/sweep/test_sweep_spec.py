"""Sweep specs: parsing, validation errors naming the key, expansion to runs, ids and dedupe."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shrinkbench.errors import SweepError
from shrinkbench.experiment.config import config_from_dict, config_to_dict, dense_id, run_id
from shrinkbench.sweep import build_plan, expand, load_spec, spec_from_dict

BASE = {"data": {"name": "digits"}, "model": {"name": "mlp_digits"}}


def test_grid_and_zip_expand_to_validated_canonical_configs():
    spec = spec_from_dict({
        "base": BASE,
        "grid": {"pruning.strategy": ["GlobalMagWeight", "RandomPruning"], "pruning.compression": [1, 4]},
        "zip": {"seed": [0, 1], "finetune.lr": [0.1, 0.01]},
    })
    runs = expand(spec)
    assert len(runs) == len(spec) == 8
    first = runs[0]
    assert first.point == {"seed": 0, "finetune.lr": 0.1, "pruning.strategy": "GlobalMagWeight", "pruning.compression": 1}
    assert first.config.pruning.strategy == "none"  # compression 1: the shared control
    assert runs[1].config.pruning.strategy == "global_magnitude" and runs[1].config.pruning.compression == 4.0
    assert {(r.config.seed, r.config.finetune.lr) for r in runs} == {(0, 0.1), (1, 0.01)}
    for run, point in zip(runs, spec.axes.points()):
        # each point equals the config built from scratch with the point's values set
        raw = {**BASE, "seed": point["seed"], "finetune": {"lr": point["finetune.lr"]},
               "pruning": {"strategy": point["pruning.strategy"], "compression": point["pruning.compression"]}}
        exact = config_from_dict(raw)
        assert run.config == exact
        assert (run.run_id, run.dense_id) == (run_id(exact), dense_id(exact))
        assert config_from_dict(config_to_dict(run.config)) == run.config
    # the dense model depends on the seed only here: two dense ids, each shared by four runs
    assert len({r.dense_id for r in runs}) == 2
    # the two strategies' compression-1 points are one run per seed
    assert len(build_plan(runs).runs) == 6


def test_aliases_collapse_onto_one_run_and_plan_keeps_it_once():
    spec = spec_from_dict({"base": BASE, "grid": {"pruning.strategy": ["GlobalMagWeight", "global_magnitude"], "seed": [0, 1]}})
    plan = build_plan(expand(spec))
    assert len(plan.runs) == 2 and plan.duplicates == 2
    assert len(plan.dense) == 2


def test_base_file_is_relative_to_the_spec(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "finetune": {"epochs": 1}}))
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "s.yaml").write_text(yaml.safe_dump({"base": "../base.yaml", "grid": {"seed": [3, 4]}}))
    runs = expand(load_spec(sweeps / "s.yaml"))
    assert [r.config.seed for r in runs] == [3, 4]
    assert all(r.config.finetune.epochs == 1 for r in runs)


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"base": BASE, "grids": {}}, "unknown key 'grids'"),
        ({"base": BASE, "grid": {"pruning.strategyy": ["a"]}}, "pruning.strategyy"),
        ({"base": BASE, "grid": {"nosuch": [1]}}, "nosuch"),
        ({"base": BASE, "grid": {"pruning.compression": [4, 0.5]}}, "'pruning.compression' value 0.5"),
        ({"base": BASE, "grid": {"pruning.strategy": ["NoSuchStrategy"]}}, "NoSuchStrategy"),
        ({"base": BASE, "zip": {"seed": [0, 1], "finetune.lr": [0.1]}}, "seed has 2, finetune.lr has 1"),
        ({"base": BASE, "zip": {"seed": [0], "model.name": ["nosuchmodel"]}}, "zip row 0 (seed, model.name)"),
        ({"base": "missing.yaml"}, "missing.yaml"),
        ({"base": {"data": {"nme": "digits"}}}, "data.nme"),
        ({"base": 3}, "'base' must be a config file path or a mapping"),
    ],
)
def test_spec_errors_name_the_key(raw, needle):
    with pytest.raises(SweepError) as info:
        spec_from_dict(raw)
    assert needle in str(info.value)


def test_missing_or_broken_spec_file(tmp_path):
    with pytest.raises(SweepError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("grid: [\n")
    with pytest.raises(SweepError, match="invalid YAML"):
        load_spec(tmp_path / "bad.yaml")


configs = st.fixed_dictionaries({
    "seed": st.integers(0, 10**6),
    "pruning.strategy": st.sampled_from(["GlobalMagWeight", "LayerMagWeight", "RandomPruning"]),
    "pruning.compression": st.floats(1, 1000, allow_nan=False),
    "pruning.ignore": st.lists(st.sampled_from(["a", "b.weight"]), max_size=2),
    "finetune.lr": st.floats(1e-5, 1.0),
    "finetune.epochs": st.integers(0, 50),
    "dense.recipe.epochs": st.integers(1, 5),
    "device": st.sampled_from(["cpu", "auto"]),
    "checkpoint_every": st.integers(0, 3),
    "data.download": st.booleans(),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_a_point_is_the_config_built_from_scratch(values):
    from shrinkbench.common import set_dotted
    from shrinkbench.sweep import point_config

    raw = {**BASE}
    for key, value in values.items():
        set_dotted(raw, key, value)
    exact = config_from_dict(raw)
    point = point_config(config_from_dict(BASE), values)
    assert point == exact and (point.run_id, point.dense_id) == (exact.run_id, exact.dense_id)


def test_unhashed_fields_do_not_change_the_run(tmp_path):
    spec = spec_from_dict({"base": BASE, "grid": {"device": ["cpu", "auto"], "checkpoint_every": [0, 1]}})
    plan = build_plan(expand(spec))
    assert len(plan.runs) == 1 and plan.duplicates == 3


def test_overrides_apply_to_the_base(tmp_path):
    spec = spec_from_dict({"base": BASE, "grid": {"seed": [0]}}, overrides=["finetune.epochs=3", "pruning.compression=8"])
    (run,) = expand(spec)
    assert run.config.finetune.epochs == 3 and run.config.pruning.compression == 8.0
    with pytest.raises(SweepError, match="finetune.epochs"):
        spec_from_dict({"base": BASE}, overrides=["finetune.epochs=-1"])


def test_the_mnist_example_is_the_shrinkbench_grid():
    root = Path(__file__).resolve().parents[2]
    plan = build_plan(expand(load_spec(root / "examples" / "sweeps" / "mnist_lenet300.yaml")))
    assert len(plan.runs) == 57 and len(plan.dense) == 3
    assert {r.config.pruning.compression for r in plan.runs} == {1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0}
    assert {r.config.model.name for r in plan.runs} == {"lenet300"}
    # each dense model (one per seed) is shared by the 19 runs of its seed: 3 strategies x 6
    # compressions and one unpruned control
    by_dense = {d: sum(r.dense_id == d for r in plan.runs) for d in plan.dense}
    assert sorted(by_dense.values()) == [19, 19, 19] and plan.duplicates == 6


def test_a_dense_checkpoint_is_hashed_by_content_and_needs_no_dense_job(tmp_path):
    ckpt = tmp_path / "dense.pt"
    ckpt.write_bytes(b"weights v1")
    spec = spec_from_dict({"base": {**BASE, "dense": {"source": str(ckpt)}}, "grid": {"seed": [0, 1]}})
    runs = expand(spec)
    assert [r.dense_id for r in runs] == [None, None]
    assert [r.run_id for r in runs] == [config_from_dict({**BASE, "seed": s, "dense": {"source": str(ckpt)}}).run_id
                                        for s in (0, 1)]
    plan = build_plan(runs)
    assert plan.dense == {} and all(r.job().needs is None for r in plan.runs)
    ckpt.write_bytes(b"weights v2")  # other weights, other runs (the ids are fixed when a spec is read)
    again = spec_from_dict({"base": {**BASE, "dense": {"source": str(ckpt)}}, "grid": {"seed": [0, 1]}})
    assert expand(again)[0].run_id != runs[0].run_id and expand(spec)[0].run_id == runs[0].run_id
