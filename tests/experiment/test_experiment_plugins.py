"""Plugins and strategy options: a user's strategy from the CLI, configs, sweeps and spawned workers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from shrinkbench.cli.main import main
from shrinkbench.errors import ConfigError
from shrinkbench.experiment import config_from_dict, config_to_dict, load_config
from shrinkbench.experiment import plugins as plugin_module
from shrinkbench.pruning import STRATEGIES, prune
from shrinkbench.results.store import Store

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = '''
from shrinkbench.pruning import register_strategy


@register_strategy("global_relative_power", allocation="global", aliases=["GlobalRelPow"])
def relative_power(params, ctx, *, power=1.0):
    """(|w| / max |w| of its tensor) ** power."""
    return {name: (p.detach().abs() / p.detach().abs().max()) ** power for name, p in params.items()}
'''

TINY = {
    "data": {"name": "digits"},
    "model": {"name": "mlp_digits"},
    "dense": {"recipe": {"epochs": 1}},
    "finetune": {"epochs": 1},
    "pruning": {"compression": 4},
    "device": "cpu",
}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    path = folder / "my_methods.py"
    path.write_text(PLUGIN)
    return path


def test_a_plugin_file_registers_a_strategy_usable_with_options(plugin, tmp_path):
    cfg = config_from_dict({**TINY, "pruning": {"strategy": "GlobalRelPow", "compression": 4,
                                                "options": {"power": 2.0}}}, plugins=[str(plugin)])
    assert cfg.pruning.strategy == "global_relative_power" and cfg.plugins == (str(plugin.resolve()),)
    same = config_from_dict({**TINY, "plugins": [str(plugin)],
                             "pruning": {"strategy": "global_relative_power", "compression": 4,
                                         "options": {"power": 2.0}}})
    other = config_from_dict({**TINY, "pruning": {"strategy": "GlobalRelPow", "compression": 4,
                                                  "options": {"power": 3.0}}})
    assert same.run_id == cfg.run_id and other.run_id != cfg.run_id  # options are hashed
    moved = config_from_dict({**TINY, "pruning": config_to_dict(cfg)["pruning"]})
    assert moved.run_id == cfg.run_id  # where the plugin file lives is not part of the run
    with pytest.raises(ConfigError, match="^pruning.options.pow: 'GlobalRelPow' has no such "
                                          "option; valid options: power$"):
        config_from_dict({**TINY, "pruning": {"strategy": "GlobalRelPow", "options": {"pow": 2}}})
    with pytest.raises(ConfigError, match="^pruning.options.power: 'GlobalMagWeight' has no such "
                                          "option; valid options: none$"):
        config_from_dict({**TINY, "pruning": {"strategy": "GlobalMagWeight", "options": {"power": 2}}})


def test_the_option_reaches_the_score_function(monkeypatch):
    from shrinkbench.pruning import register_strategy

    monkeypatch.setattr(STRATEGIES, "_items", dict(STRATEGIES._items))  # the test's strategy goes with it

    seen = []

    @register_strategy("test_recording_options")
    def recording(params, ctx, *, shift=0.0, flip=False):
        seen.append((shift, flip))
        return {name: (-1 if flip else 1) * p.detach().abs() + shift for name, p in params.items()}

    def pruned(**options):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(20, 20), torch.nn.Linear(20, 2))
        prune(model, "test_recording_options", 2.0, options=options)
        return model[0].weight_mask.bool(), model[0].weight.detach()

    small, weight = pruned()
    large, _ = pruned(flip=True, shift=1.0)
    assert seen == [(0.0, False), (1.0, True)]
    assert not (small & large).any()  # flipped scores keep the other end of the magnitudes
    assert weight[small].abs().min() >= weight[~small].abs().max()
    with pytest.raises(Exception, match="has no option 'shfit'"):
        pruned(shfit=1.0)


def test_cli_run_and_list_with_plugin(plugin, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    code = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--no-progress", "--plugin", str(plugin),
                 "--set", "pruning.strategy=GlobalRelPow", "--set", "pruning.options.power=2"])
    out = capsys.readouterr().out
    # one name everywhere: the CamelCase alias the plugin registered, as for the built-ins
    assert code == 0 and "GlobalRelPow x4" in out and "compression 4.00" in out
    from shrinkbench.results import load

    assert list(load(tmp_path / "out")["strategy"]) == ["GlobalRelPow"]
    assert main(["list", "strategies", "--plugin", str(plugin)]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("GlobalRelPow"))
    assert "also: global_relative_power" in line and "options: power" in line


def test_config_plugins_are_relative_to_the_config_file(plugin, tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "methods.py").write_text(plugin.read_text().replace("global_relative_power", "relpow_b")
                                       .replace("GlobalRelPow", "RelPowB"))
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump({**TINY, "plugins": ["methods.py"], "pruning": {"strategy": "RelPowB"}}))
    cfg = load_config(path)
    assert cfg.pruning.strategy == "relpow_b" and cfg.plugins == (str((folder / "methods.py").resolve()),)
    assert load_config(path).run_id == cfg.run_id  # imported once per process, not registered twice
    bad = folder / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "plugins": ["nowhere.py"]}))
    with pytest.raises(ConfigError, match="^plugins: file .*nowhere.py' does not exist"):
        load_config(bad)
    with pytest.raises(ConfigError, match="^plugins: no module named 'no_such_module_sb'"):
        config_from_dict({**TINY, "plugins": ["no_such_module_sb"]})


def test_process_workers_import_the_plugin(plugin, tmp_path, capsys):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"base": {**TINY, "pruning": {"strategy": "GlobalRelPow"}},
                                    "grid": {"pruning.options.power": [1.0, 2.0]}}))
    code = main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", "process",
                 "--workers", "2", "--no-progress", "--plugin", str(plugin)])
    assert code == 0, capsys.readouterr()
    with Store(tmp_path / "out") as store:
        rows = store.runs(kind="prune")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"done"}
    assert {r["config"]["pruning"]["options"].get("power", 1.0) for r in rows} == {1.0, 2.0}


MAIN_SCRIPT = '''
import sys
from shrinkbench.errors import ShrinkBenchError
from shrinkbench.experiment import config_from_dict
from shrinkbench.pruning import register_strategy
from shrinkbench.sweep import plan_configs, run_plan

if __name__ == "__main__":
    @register_strategy("in_main_only")
    def score(params, ctx):
        return {name: p.detach().abs() for name, p in params.items()}

    cfg = config_from_dict({"data": {"name": "digits"}, "model": {"name": "mlp_digits"},
                            "pruning": {"strategy": "in_main_only"}, "device": "cpu"})
    try:
        run_plan(plan_configs([cfg]), sys.argv[1], executor="process", workers=1, progress=False)
    except ShrinkBenchError as exc:
        print(exc)
'''


def test_a_strategy_registered_in_main_is_refused_for_workers_with_a_clear_line(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(MAIN_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pruning.strategy: 'in_main_only' is registered in the __main__ "
                                  "script, which worker processes do not run; move it into a module")
    assert not (tmp_path / "out").exists()


def test_a_worker_missing_a_name_says_so(plugin, monkeypatch):
    cfg = config_from_dict({**TINY, "pruning": {"strategy": "GlobalRelPow"}}, plugins=[str(plugin)])
    monkeypatch.delitem(STRATEGIES._items, "global_relative_power")
    with pytest.raises(ConfigError, match="^pruning.strategy: 'global_relative_power' is not registered "
                                          "in this worker process"):
        plugin_module.check_registered(cfg)


def test_entry_point_plugins_are_imported(tmp_path, monkeypatch):
    (tmp_path / "sb_ep_plugin.py").write_text(PLUGIN.replace("global_relative_power", "ep_strategy")
                                              .replace("GlobalRelPow", "EpStrategy"))
    info = tmp_path / "sb_ep_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sb-ep-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[shrinkbench.plugins]\nmine = sb_ep_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugin_module, "_ENTRY_POINTS_LOADED", False)
    cfg = config_from_dict({**TINY, "pruning": {"strategy": "EpStrategy"}})
    assert cfg.pruning.strategy == "ep_strategy"


@pytest.mark.parametrize("source, message", [
    ("def f(:\n", "failed to import (line 1): SyntaxError"),
    ("raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
    ("import sys\nsys.exit(3)\n", "failed to import: SystemExit: 3"),
])
def test_a_plugin_that_fails_to_import_is_one_line(tmp_path, capsys, source, message):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text(source)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    code = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--plugin", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()
    code = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--plugin", str(tmp_path)])
    assert code == 2 and "is a directory, not a .py file" in capsys.readouterr().err


def test_plugins_cannot_be_a_sweep_axis(plugin):
    from shrinkbench.errors import SweepError
    from shrinkbench.sweep import spec_from_dict

    with pytest.raises(SweepError, match="^sweep key 'plugins' cannot be varied: plugins are imported once"):
        spec_from_dict({"base": TINY, "grid": {"plugins": [[str(plugin)]]}})


def test_options_equal_to_their_defaults_are_the_same_run(plugin):
    def cfg(options):
        return config_from_dict({**TINY, "pruning": {"strategy": "GlobalRelPow", "options": options}},
                                plugins=[str(plugin)])

    unset, one_float, one_int = cfg({}), cfg({"power": 1.0}), cfg({"power": 1})
    assert unset.run_id == one_float.run_id == one_int.run_id and one_int.pruning.options == {}
    assert cfg({"power": 2}).pruning.options == {"power": 2.0} and cfg({"power": 2}).run_id == cfg({"power": 2.0}).run_id


def test_config_options_are_read_only():
    cfg = config_from_dict({**TINY, "model": {"name": "mlp_digits", "options": {"hidden": [8]}}})
    with pytest.raises(TypeError, match="read-only"):
        cfg.model.options["hidden"] = [16]
    with pytest.raises(TypeError, match="read-only"):
        cfg.pruning.options.update(x=1)
    import pickle

    assert pickle.loads(pickle.dumps(cfg)) == cfg and pickle.loads(pickle.dumps(cfg)).run_id == cfg.run_id


def test_a_relative_plugin_path_on_the_command_line_is_taken_from_the_current_folder(
        plugin, tmp_path, capsys, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    cfg = configs / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.py").write_text(plugin.read_text().replace("global_relative_power", "cwd_relpow")
                                  .replace("GlobalRelPow", "CwdRelPow"))
    monkeypatch.chdir(work)
    code = main(["run", str(cfg), "--out", "out", "--no-progress", "--plugin", "mine.py",
                 "--set", "pruning.strategy=CwdRelPow"])
    assert code == 0, capsys.readouterr().err
    spec = configs / "spec.yaml"
    spec.write_text(yaml.safe_dump({"base": "cfg.yaml", "grid": {"pruning.compression": [2]}}))
    code = main(["sweep", str(spec), "--out", "out2", "--no-progress", "--plugin", "mine.py",
                 "--set", "pruning.strategy=CwdRelPow"])
    assert code == 0, capsys.readouterr().err
