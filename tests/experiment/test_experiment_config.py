"""The config: defaults, YAML and overrides, validation messages, canonical form and ids."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shrinkbench.errors import ConfigError, ShrinkBenchError, UnknownNameError
from shrinkbench.experiment import (Config, config_from_dict, config_to_dict, dense_id, load_config,
                                    run_id)
from shrinkbench.experiment.components import preflight
from shrinkbench.experiment.optim import lr_at

DOCS = Path(__file__).resolve().parents[2] / "docs" / "experiments.md"


def _fields(obj, prefix=""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


def test_defaults_round_trip_and_every_field_is_documented():
    cfg = config_from_dict({})
    assert cfg == Config()
    assert config_from_dict(config_to_dict(cfg)) == cfg
    import re

    import yaml

    documented = dict(re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", DOCS.read_text(), re.M))
    for name, f in _fields(Config()):
        assert f.metadata["help"], name
        assert name in documented, f"{name} missing from docs/experiments.md"
        node = Config()
        for part in name.split("."):
            node = getattr(node, part)
        value = yaml.safe_load(documented[name])
        assert (list(node) if isinstance(node, tuple) else node) == value, name


def test_canonical_names_and_alias_hash_equal():
    a = config_from_dict({"pruning": {"strategy": "GlobalMagWeight"}, "finetune": {"optimizer": "SGD"}})
    b = config_from_dict({"pruning": {"strategy": "global_magnitude"}, "finetune": {"optimizer": "sgd"}})
    assert a.pruning.strategy == "global_magnitude" and a.finetune.optimizer == "sgd"
    assert run_id(a) == run_id(b) and len(run_id(a)) == 16
    # a config built in code with an alias hashes like the canonical one too
    c = dataclasses.replace(Config(), pruning=dataclasses.replace(Config().pruning, strategy="GlobalMagWeight"))
    assert run_id(c) == run_id(b)


def test_unhashed_fields_do_not_change_ids(tmp_path):
    base = config_from_dict({})
    other = config_from_dict({"device": "cpu", "checkpoint_every": 5,
                              "data": {"data_dir": str(tmp_path), "download": True}})
    assert run_id(base) == run_id(other) and dense_id(base) == dense_id(other)


def test_dense_id_is_shared_by_pruned_runs_but_not_across_seeds_or_recipes():
    base = config_from_dict({})
    pruned = config_from_dict({"pruning": {"strategy": "RandomPruning", "compression": 16},
                               "finetune": {"lr": 0.5, "epochs": 9}})
    assert dense_id(base) == dense_id(pruned) and run_id(base) != run_id(pruned)
    assert dense_id(config_from_dict({"seed": 1})) != dense_id(base)
    assert dense_id(config_from_dict({"dense": {"recipe": {"lr": 0.2}}})) != dense_id(base)
    assert dense_id(config_from_dict({"data": {"augment": False}})) != dense_id(base)


def test_dense_checkpoint_hashed_by_content(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"w": torch.zeros(2)}, a)
    b.write_bytes(a.read_bytes())
    ca = config_from_dict({"dense": {"source": str(a)}})
    cb = config_from_dict({"dense": {"source": str(b), "recipe": {"lr": 0.3}}})
    assert run_id(ca) == run_id(cb)  # same bytes, recipe irrelevant for a given checkpoint
    torch.save({"w": torch.ones(2)}, b)
    assert run_id(ca) != run_id(config_from_dict({"dense": {"source": str(b)}}))


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("pruning:\n  strategy: LayerMagWeight\n  compression: 8\nfinetune:\n  lr: 1e-3\n")
    cfg = load_config(path, ["finetune.epochs=7", "finetune.lr=2e-3", "pruning.ignore=[fc1.weight]",
                             "data.val_size=0.1", "seed=3"])
    assert cfg.pruning.strategy == "layer_magnitude" and cfg.pruning.compression == 8.0
    assert cfg.finetune.epochs == 7 and cfg.finetune.lr == pytest.approx(2e-3)
    assert cfg.pruning.ignore == ("fc1.weight",) and cfg.data.val_size == 0.1 and cfg.seed == 3
    assert isinstance(load_config(path, ["data.val_size=100"]).data.val_size, int)
    assert load_config(path).finetune.lr == pytest.approx(1e-3)  # YAML 1.1 reads 1e-3 as text


BAD = [
    ({"finetune": {"lr": -1}}, "finetune.lr: expected a positive number, got -1"),
    ({"finetune": {"lr": "abc"}}, "finetune.lr: expected a number"),
    ({"finetune": {"lr": float("nan")}}, "finetune.lr: expected a finite number"),
    ({"finetune": {"lrr": 1}}, "finetune.lrr: unknown key; valid keys: optimizer, lr"),
    ({"bogus": 1}, "bogus: unknown key"),
    ({"pruning": {"strategy": "Nope"}}, "pruning.strategy: unknown pruning strategy 'Nope'"),
    ({"pruning": {"compression": 0.5}}, "pruning.compression: expected a number >= 1"),
    ({"pruning": {"score_batches": 0}}, "pruning.score_batches: expected a positive number"),
    ({"pruning": {"ignore": {"a": 1}}}, "pruning.ignore: expected a list"),
    ({"model": {"name": "resnet9000"}}, "model.name: unknown model 'resnet9000'"),
    ({"data": {"name": "mnistt"}}, "data.name: unknown data set 'mnistt'"),
    ({"data": 3}, "data: expected a mapping of fields, got 3"),
    ({"data": {"val_size": 1.5}}, "data.val_size: expected an integer >= 0 or a fraction"),
    ({"finetune": {"optimizer": "rmsprop"}}, "finetune.optimizer: unknown optimizer 'rmsprop'"),
    ({"finetune": {"schedule": "poly"}}, "finetune.schedule: unknown schedule 'poly'"),
    ({"finetune": {"epochs": -1}}, "finetune.epochs: expected a number >= 0"),
    ({"finetune": {"epochs": 2.5}}, "finetune.epochs: expected an integer, got 2.5"),
    ({"finetune": {"batch_size": 0}}, "finetune.batch_size: expected a positive number, got 0"),
    ({"finetune": {"momentum": 1.5}}, "finetune.momentum: expected a number in [0, 1)"),
    ({"finetune": {"nesterov": True, "optimizer": "adam"}}, "finetune.nesterov: needs optimizer sgd"),
    ({"finetune": {"schedule": "multistep"}}, "finetune.milestones: the multistep schedule needs"),
    ({"dense": {"recipe": {"epochs": 0}}}, "dense.recipe.epochs: expected an integer >= 1"),
    ({"dense": {"source": "/nonexistent/dense.pt"}}, "dense.source: expected 'train' or an existing"),
    ({"seed": "x"}, "seed: expected an integer, got 'x'"),
    ({"seed": -1}, "seed: expected a number >= 0, got -1"),
    ({"seed": True}, "seed: expected an integer, got True"),
    ({"device": "tpu"}, "device: expected one of: auto, cpu, cuda, cuda:N, mps"),
    ({"precision": "fp16"}, "precision: expected one of: fp32, bf16"),
    ({"channels_last": "yes"}, "channels_last: expected true or false, got 'yes'"),
    ({"model": {"options": {"x": object()}}}, "model.options.x: expected plain data"),
    ({"model": {"options": {"width": 3}}}, "model.options.width: 'convnet_digits' has no such option"),
    ({"model": {"name": "mlp_digits", "options": {"hidden": [8], "depth": 2}}},
     "model.options.depth: 'mlp_digits' has no such option; valid options: hidden"),
    ({"data": {"options": {"x": 1}}}, "data.options.x: 'digits' has no such option"),
]


@pytest.mark.parametrize("raw, message", BAD, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_bad_configs_raise_one_line_naming_the_field(raw, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="choose from: .*GlobalMagWeight"):
        config_from_dict({"pruning": {"strategy": "GlobalMagWieght"}})


@pytest.mark.parametrize("overrides, message", [
    (["finetune.lr"], "--set 'finetune.lr': expected KEY=VALUE"),
    (["=3"], "--set '=3': expected KEY=VALUE"),
    (["seed.x=3"], "seed: is not a section"),
    (["finetune.lr=-0.5"], "finetune.lr: expected a positive number, got -0.5"),
])
def test_bad_overrides(tmp_path, overrides, message):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 0\n")
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace(".", r"\.")):
        load_config(path, overrides)


@pytest.mark.parametrize("text, message", [
    ("a: [1, 2\n", "invalid YAML at line"),
    ("- 1\n- 2\n", "expected a mapping of fields at the top, got list"),
])
def test_bad_yaml_files(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("raw, kind, message", [
    ({"model": {"name": "mlp_digits"}, "pruning": {"compression": 32}}, "CompressionError",
     "pruning.compression: 32 cannot be reached for mlp_digits"),
    ({"model": {"name": "lenet300"}, "data": {"name": "mnist", "data_dir": "."}}, "DataError", "mnist"),
    ({"data": {"data_dir": "/nonexistent/sb"}}, "ConfigError", "data.data_dir: folder '/nonexistent/sb' does not exist"),
])
def test_preflight_rejects_what_the_config_alone_cannot_show(raw, kind, message):
    with pytest.raises(ShrinkBenchError, match=message) as info:
        preflight(config_from_dict(raw))
    assert type(info.value).__name__ == kind


@settings(max_examples=40, deadline=None)
@given(lr=st.floats(1e-5, 10, allow_nan=False), epochs=st.integers(0, 50), seed=st.integers(0, 2**31),
       alias=st.sampled_from([("GlobalMagWeight", "global_magnitude"), ("RandomPruning", "random"),
                              ("LayerMagWeight", "layer_magnitude")]),
       every=st.integers(0, 5))
def test_ids_depend_on_what_matters_only(lr, epochs, seed, alias, every):
    def cfg(strategy, checkpoint_every, device):
        return config_from_dict({"seed": seed, "finetune": {"lr": lr, "epochs": epochs},
                                 "pruning": {"strategy": strategy}, "checkpoint_every": checkpoint_every,
                                 "device": device})

    a, b = cfg(alias[0], every, "auto"), cfg(alias[1], 1, "cpu")
    assert run_id(a) == run_id(b) and dense_id(a) == dense_id(b)
    assert config_from_dict(config_to_dict(a)) == a
    c = dataclasses.replace(a, finetune=dataclasses.replace(a.finetune, lr=lr * 1.5))
    assert run_id(c) != run_id(a) and dense_id(c) == dense_id(a)


@pytest.mark.parametrize("recipe, expected", [
    ({"schedule": "constant", "epochs": 4}, [0.1, 0.1, 0.1, 0.1]),
    ({"schedule": "step", "step_size": 2, "gamma": 0.5, "epochs": 5}, [0.1, 0.1, 0.05, 0.05, 0.025]),
    ({"schedule": "multistep", "milestones": [1, 3], "gamma": 0.1, "epochs": 4}, [0.1, 0.01, 0.01, 0.001]),
    ({"schedule": "cosine", "epochs": 4}, [0.1, 0.0853553, 0.05, 0.0146447]),
    ({"schedule": "cosine", "epochs": 4, "warmup_epochs": 2}, [0.05, 0.1, 0.1, 0.05]),
])
def test_learning_rate_schedules(recipe, expected):
    r = config_from_dict({"finetune": {"lr": 0.1, **recipe}}).finetune
    assert [lr_at(r, e) for e in range(r.epochs)] == pytest.approx(expected, rel=1e-5)


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_are_valid_configs(path):
    cfg = load_config(path)
    assert cfg.pruning.strategy == "global_magnitude"
    # full recipes, except the transformers', whose CPU budgets are documented in their files (one
    # epoch of 34 plays for the character models, ten MNIST epochs for the vision transformer)
    assert cfg.dense.recipe.epochs >= 12 or cfg.model.name in ("char_gpt", "hf_causal", "vit_tiny")
    if cfg.data.name == "digits":
        assert preflight(cfg) is cfg


def test_examples_cover_the_classic_benchmarks():
    pairs = {(load_config(p).data.name, load_config(p).model.name) for p in EXAMPLES}
    assert {("mnist", "lenet300"), ("cifar10", "resnet56"), ("imagenet", "resnet50"),
            ("digits", "convnet_digits")} <= pairs


def test_a_config_is_checked_when_built_and_carries_its_ids():
    cfg = config_from_dict({"pruning": {"strategy": "LayerMagWeight", "compression": 8}})
    assert (cfg.run_id, cfg.dense_id) == (run_id(cfg), dense_id(cfg))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
    # replace() builds a new section, checked like any other
    with pytest.raises(ConfigError, match="^compression: expected a number >= 1, got 0.5"):
        dataclasses.replace(cfg.pruning, compression=0.5)
    other = dataclasses.replace(cfg, pruning=dataclasses.replace(cfg.pruning, strategy="RandomPruning"))
    assert other.pruning.strategy == "random" and other.run_id != cfg.run_id
    assert other.dense_id == cfg.dense_id


def test_compression_one_is_one_control_run_shared_by_every_strategy():
    ids = set()
    for strategy in ("GlobalMagWeight", "RandomPruning", "LayerMagGrad"):
        cfg = config_from_dict({"pruning": {"strategy": strategy, "compression": 1, "score_batches": 3,
                                            "ignore": ["fc.weight"]}})
        assert cfg.is_control and cfg.pruning.strategy == "none" and cfg.pruning.ignore == ()
        ids.add(cfg.run_id)
    assert len(ids) == 1
    with pytest.raises(ConfigError, match="^pruning.strategy: 'none' prunes nothing"):
        config_from_dict({"pruning": {"strategy": "none", "compression": 4}})


def test_threads_are_part_of_the_run_and_dense_ids():
    one, two = config_from_dict({}), config_from_dict({"threads": 2})
    assert one.threads == 1 and one.run_id != two.run_id and one.dense_id != two.dense_id
    with pytest.raises(ConfigError, match="^threads: expected a positive number, got 0"):
        config_from_dict({"threads": 0})


def test_machine_facts_are_not_config_errors():
    # a CUDA device or a missing data folder is a fact of the machine that runs the job: the config
    # builds anywhere (e.g. on a Ray head without GPUs), and preflight refuses it where it runs
    cfg = config_from_dict({"device": "cuda:3", "data": {"data_dir": "/nonexistent/sb"}})
    assert cfg.device == "cuda:3"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="^device: 'cuda:3' is not usable here"):
            preflight(cfg)


@pytest.mark.parametrize("raw, message", [
    ({"seed": 2**63}, "seed: expected an integer between -2\\*\\*63 and 2\\*\\*63"),
    ({"finetune": {"epochs": 10**400}},
     "finetune.epochs: expected an integer .* got an integer of 401 digits"),
    ({"finetune": {"lr": 10**400}}, "finetune.lr: expected a finite number"),
    ({"pruning": {"compression": 10**400}}, "pruning.compression: expected a finite number"),
    ({"model": {"options": {"x": [1, -(10**30)]}}}, r"model.options.x\[1\]: expected an integer"),
])
def test_integers_beyond_64_bits_are_refused_naming_the_field(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)
    assert config_from_dict({"seed": 2**63 - 1}).seed == 2**63 - 1


def test_overrides_are_read_like_config_files(tmp_path):
    from shrinkbench.experiment.config import apply_overrides

    assert apply_overrides({}, ["a.b=[1, 2]", "c=not: yaml: here"]) == {"a": {"b": [1, 2]},
                                                                       "c": "not: yaml: here"}
    for value, message in (("&a [*a]", r"alias \*a refers to itself"), ("{x: 1, x: 2}", "duplicate key 'x'"),
                           ("[" * 500 + "]" * 500, "nested more than")):
        with pytest.raises(ConfigError, match=f"--set model.options: {message}"):
            apply_overrides({}, [f"model.options={value}"])


def test_a_directory_as_dense_source_says_so(tmp_path):
    with pytest.raises(ConfigError, match=f"dense.source: '{tmp_path}' is a directory"):
        config_from_dict({"dense": {"source": str(tmp_path)}})
