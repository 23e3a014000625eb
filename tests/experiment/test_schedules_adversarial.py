"""Adversarial checks of schedules (tiny digits runs): odd configs that must be refused in one line
or run correctly, the report on scheduled runs, determinism across executors, kill -9 and resume,
the lottery controls with and without their ticket, and the pruning-at-initialization scores on a
model with batch norm, a residual, tied weights, a frozen parameter and dropout.

The first group of tests fails on the code as it stands (each names the bug it shows); the rest
pin down behaviour that was checked and holds but that no other test covers."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from shrinkbench.errors import ConfigError, PruningError
from shrinkbench.experiment.checkpoint import load_state
from shrinkbench.experiment.components import build_model, load_data
from shrinkbench.experiment.config import config_from_dict
from shrinkbench.experiment.dense import ensure_dense
from shrinkbench.experiment.device import pinned_threads
from shrinkbench.experiment.loops import fit
from shrinkbench.experiment.runner import execute
from shrinkbench.experiment.schedules import schedule_name, weights_of
from shrinkbench.pruning import masked_parameters, prunable_parameters, prune
from shrinkbench.results.files import run_dir

from tiny_config import tiny

MEASURED = ("time_", "latency", "speedup_measured", "env")


def config(schedule=None, **sections):
    tree = tiny(**sections)
    tree["latency"] = {"enabled": False}
    if schedule is not None:
        tree["schedule"] = schedule
    return config_from_dict(tree)


def deterministic(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(MEASURED)}


def masks_in(folder: Path) -> dict[str, torch.Tensor]:
    state = load_state(folder / "model.pt")
    return {k[: -len("_mask")]: v for k, v in state.items() if k.endswith("_mask")}


def sweep(spec: dict, out: Path, *extra: str) -> int:
    from shrinkbench.cli.main import main

    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        return main(["sweep", str(path), "--out", str(out), "--no-progress", *extra])
    except SystemExit as exc:
        return int(exc.code)


# A model with batch norm, a residual, a frozen parameter, dropout and a classifier whose weight is
# tied to another Linear layer's (registered by a fixture for the run that needs it).
class TiedNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.frozen = nn.Conv2d(8, 8, 1)
        self.frozen.weight.requires_grad_(False)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8, 16)
        self.emb = nn.Linear(16, num_classes, bias=False)
        self.out = nn.Linear(16, num_classes, bias=False)
        self.out.weight = self.emb.weight  # tied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = h + torch.relu(self.bn2(self.conv2(h)))  # residual
        h = torch.relu(self.frozen(h))
        h = self.drop(h.mean((2, 3)))
        return self.out(torch.relu(self.fc(h)))


@pytest.fixture
def tied_net_registered():
    """`adv_tied_net` in the model zoo for the test only (the zoo's list is checked elsewhere)."""
    from shrinkbench.models import MODELS, register_model

    @register_model("adv_tied_net", input_shape=(1, 8, 8), num_classes=10, family="custom")
    def adv_tied_net(num_classes, input_shape, generator=None):
        """BN, residual, frozen conv, dropout, classifier tied to another Linear."""
        model = TiedNet(input_shape[0], num_classes)
        model.shrinkbench_classifier = "out"
        return model

    try:
        yield "adv_tied_net"
    finally:
        MODELS._items.pop("adv_tied_net", None)


# ================================================================================================
# Bugs: these fail on the code as it stands.
# ================================================================================================

def test_summary_table_counts_the_seeds_of_gradual_runs(tmp_path):
    """Gradual runs record no accuracy "before fine-tuning" (they prune during it), and the results
    table counts the seeds of a row as the fewest values of any of its columns, so it says 0 seeds
    for a row that averages two (report/tables.py, summary_table: the `Seeds` cell)."""
    from shrinkbench.report.tables import summary_table
    from shrinkbench.results import load

    base = {**tiny(), "latency": {"enabled": False}}
    spec = {"base": base, "grid": {"seed": [0, 1], "schedule.kind": ["gradual"],
                                   "schedule.frequency": [5]}}
    assert sweep(spec, tmp_path / "out") == 0
    table = summary_table(load(tmp_path / "out"))
    row = table[table["Strategy"].str.contains("gradual")].iloc[0]
    assert "±" in row["Top-1 after FT (%)"]  # a mean over the two seeds is shown...
    assert row["Seeds"] == 2  # ...so the row stands on 2 seeds, not 0


def test_report_describes_the_random_control_as_it_is_run(tmp_path):
    """The report's Schedules section says the random control is "random pruning to the ticket's
    per-layer sparsity" (report/schedules.py, SCHEDULE_TEXT), while the run prunes at random with one
    global choice over all prunable weights (experiment/scheduled.py, lottery(): strategy="random"
    without the ticket's allocation; docs/schedules.md says so too). Here the ticket keeps a layerwise
    allocation and the control does not keep its per-layer sparsity."""
    from shrinkbench.report.schedules import SCHEDULE_TEXT

    text = dict(SCHEDULE_TEXT)["random control"]
    pruning = {"strategy": "LayerMagWeight"}
    ticket = config({"kind": "lottery", "rate": 0.5}, pruning=pruning)
    control = config({"kind": "lottery", "rate": 0.5, "control": "random"}, pruning=pruning)
    execute(ticket, tmp_path)
    execute(control, tmp_path)
    kept = {name: int(m.sum()) for name, m in masks_in(run_dir(tmp_path, ticket.run_id)).items()}
    random = {name: int(m.sum()) for name, m in masks_in(run_dir(tmp_path, control.run_id)).items()}
    same_layers = all(abs(kept[n] - random[n]) <= 1 for n in kept)
    if "per-layer" in text:
        assert same_layers, (text, kept, random)


@pytest.mark.parametrize("spelling, same_as", [("0ep", "0it"), ("00", "0it"), ("000it", "0it"),
                                               ("01ep", "1ep")])
def test_a_rewinding_step_has_one_spelling(spelling, same_as):
    """`0`, `"0"` and `"0it"` are one run (config.py, ScheduleConfig.__post_init__), but `0ep` (the
    initialization as well) and zero-padded steps keep their own run ids, and `rewind: 0ep` is
    labelled "lottery (rewind 0ep)" instead of "lottery (rewind init)", a separate curve in every
    report."""
    a = config({"kind": "lottery", "rewind": spelling})
    b = config({"kind": "lottery", "rewind": same_as})
    assert a.run_id == b.run_id
    assert schedule_name(a) == schedule_name(b)


def test_gradual_begin_0ep_is_the_default_begin():
    a = config({"kind": "gradual", "begin": "0ep"})
    b = config({"kind": "gradual"})
    assert a.run_id == b.run_id


@pytest.mark.parametrize("schedule", [
    {"kind": "gradual", "begin": "2ep", "end": "1ep"},  # out of order, same unit
    {"kind": "gradual", "begin": "30it", "end": "10it"},
    {"kind": "gradual", "end": "5ep"},  # fine-tuning has 2 epochs
    {"kind": "gradual", "at_init": True, "begin": "4ep"},  # dense training has 3
    {"kind": "lottery", "rewind": "9ep"},  # dense training has 3 epochs
])
def test_steps_that_cannot_fit_are_refused_with_the_config(schedule):
    """Steps in the wrong order, or past the epochs of their phase, are known from the config alone,
    yet they are refused only when the run starts (scheduled.py, gradual() and rewind_point()):
    after the dense model was trained, as a failed run in the store with a half-made run folder,
    and `shrinkbench sweep --dry-run` passes them."""
    with pytest.raises(ConfigError):
        config(schedule)


def test_rewinding_to_the_end_of_dense_training_is_refused(tmp_path):
    """`rewind` equal to the whole dense training passes the check (`k > total` in
    scheduled.py, rewind_point()): every round then trains 0 steps, the rounds record no validation
    accuracy and the "lottery ticket" is iterative pruning without any training."""
    with pytest.raises(ConfigError, match="schedule.rewind: 3ep is at or past the end of dense"):
        config({"kind": "lottery", "rate": 0.5, "rewind": "3ep"})  # refused with the config
    with pytest.raises(ConfigError, match="schedule.rewind: 60it is at or past the end"):
        execute(config({"kind": "lottery", "rate": 0.5, "rewind": "60it"}), tmp_path)  # by preflight
    assert not (tmp_path / "dense").exists()  # before anything trained


def test_initial_sparsity_above_the_target_is_refused(tmp_path):
    """A gradual schedule whose initial sparsity (0.99) exceeds the target's (compression 4: 0.78 of
    the prunable weights) cannot follow the cubic schedule (masks never grow back); agp_keeps clamps
    every step to the target, so the run silently prunes once, at `begin`, and is reported as
    gradual."""
    cfg = config({"kind": "gradual", "initial_sparsity": 0.99, "frequency": 5})
    with pytest.raises(ConfigError, match="initial_sparsity"):
        m = execute(cfg, tmp_path)
        assert len(m["path_step"]) > 1, m["path_step"]


def test_classifier_rate_with_a_tied_classifier(tmp_path, tied_net_registered):
    """`pruning.classifier_rate` names the classifier's weight by its module (`out.weight`), but a
    classifier tied to another Linear layer is listed by prunable_parameters under the first name
    it has (`emb.weight`): the run fails after training the dense model with "layer_rates names
    'out.weight', which is not a pruned parameter" (schedules.py, classifier_rates)."""
    cfg = config(pruning={"strategy": "LayerMagWeight", "include_classifier": True,
                          "classifier_rate": 0.5}, model={"name": tied_net_registered})
    m = execute(cfg, tmp_path)
    assert m["compression_ratio"] == pytest.approx(4.0, rel=1e-3)


def test_classifier_rate_with_an_ignored_classifier_names_the_field(tmp_path):
    """With the classifier in `pruning.ignore`, `classifier_rate` cannot apply; the error names
    `layer_rates` (an API argument the user never set) instead of `pruning.classifier_rate`."""
    cfg = config(pruning={"strategy": "LayerMagWeight", "include_classifier": True,
                          "classifier_rate": 0.5, "ignore": ["fc2"]})
    with pytest.raises((ConfigError, PruningError), match="classifier_rate"):
        execute(cfg, tmp_path)


# ================================================================================================
# Checked and holding, not covered elsewhere.
# ================================================================================================

def _steps_counted(monkeypatch) -> list[int]:
    """Count the optimizer steps every scheduled training phase takes (not the replay to the
    rewinding point, which the dense run's cost already holds)."""
    import shrinkbench.experiment.scheduled as scheduled

    counted = [0]
    real = scheduled.fit

    def counting(*args, **kwargs):
        if kwargs.get("stop_step") is None:
            inner = kwargs.get("on_step")

            def step(batch):
                counted[0] += 1
                if inner is not None:
                    inner(batch)
            kwargs["on_step"] = step
        return real(*args, **kwargs)

    monkeypatch.setattr(scheduled, "fit", counting)
    return counted


@pytest.mark.parametrize("schedule, pruning, from_dense", [
    ({"kind": "iterative", "rate": 0.5, "round_epochs": 1}, {"strategy": "LayerMagGrad"}, True),
    ({"kind": "gradual", "frequency": 3}, {"strategy": "GlobalMagAct"}, True),
    ({"kind": "gradual", "at_init": True, "frequency": 7, "begin": "3it", "end": "1ep"},
     {"strategy": "SNIP", "allocation": "erk"}, False),
    ({"kind": "oneshot", "at_init": True}, {"strategy": "SynFlow", "options": {"rounds": 4}}, False),
    ({"kind": "lottery", "rate": 0.6, "rewind": "7it"}, {"allocation": "uniform"}, True),
    ({"kind": "lottery", "rate": 0.6, "rewind": "7it", "control": "shuffle"},
     {"include_bias": True}, True),
])
def test_invariants_of_scheduled_runs(schedule, pruning, from_dense, tmp_path, monkeypatch):
    counted = _steps_counted(monkeypatch)
    cfg = config(schedule, pruning={**pruning, "compression": 6})
    m = execute(cfg, tmp_path)
    state = load_state(run_dir(tmp_path, cfg.run_id) / "model.pt")
    for key, mask in state.items():
        if key.endswith("_mask"):
            assert not bool((state[key[: -len("_mask")]][mask == 0] != 0).any()), key
    assert m["params_nonzero"] == math.floor(m["params_total"] / 6)
    path = m["path_compression"]
    assert all(b >= a for a, b in zip(path, path[1:])) and path[-1] == m["compression_ratio"]
    assert all(b >= a for a, b in zip(m["path_step"], m["path_step"][1:]))
    dense_steps = 3 * math.ceil(load_data(cfg, cfg.dense.recipe, torch.device("cpu")).train.num_samples / 64)
    # a control counts its ticket's rounds too (found here, not trained by this process's fit)
    if schedule.get("control") in (None, "none"):
        assert m["train_steps"] == counted[0] + (dense_steps if from_dense else 0)


@pytest.mark.parametrize("schedule, pruning", [
    ({"kind": "lottery", "rate": 0.5, "rewind": "7it", "control": "shuffle"}, {"allocation": "erk"}),
    ({"kind": "lottery", "rate": 0.5, "control": "reinit"},
     {"strategy": "LayerMagWeight", "include_classifier": True, "classifier_rate": 0.5}),
    ({"kind": "lottery", "rate": 0.5, "rewind": "1ep", "control": "shuffle"},
     {"strategy": "SynFlow", "options": {"rounds": 3}}),
])
def test_control_with_and_without_its_ticket_folder(schedule, pruning, tmp_path):
    ticket = config({**schedule, "control": "none"}, pruning=pruning)
    control = config(schedule, pruning=pruning)
    execute(ticket, tmp_path / "with")
    read = execute(control, tmp_path / "with")
    found = execute(control, tmp_path / "alone")
    assert deterministic(read) == deterministic(found)
    a = load_state(run_dir(tmp_path / "with", control.run_id) / "model.pt")
    b = load_state(run_dir(tmp_path / "alone", control.run_id) / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_replaying_the_whole_dense_training_gives_the_cached_dense_model(tmp_path):
    """The rewinding point is found by replaying dense training; replayed to its last step it is the
    cached dense model bit for bit (on the run's pinned thread count)."""
    cfg = config({"kind": "lottery"})
    dense_file = ensure_dense(cfg, tmp_path)
    device = torch.device("cpu")
    bundle = load_data(cfg, cfg.dense.recipe, device)
    model = build_model(cfg, bundle.info, device)
    with pinned_threads(cfg.threads):
        fit(model, cfg.dense.recipe, bundle.train, bundle.val, phase="dense", seed=cfg.seed,
            device=device, stop_step=cfg.dense.recipe.epochs * len(bundle.train))
    cached = load_state(dense_file)
    replay = weights_of(model)
    assert cached.keys() == replay.keys()
    assert all(torch.equal(cached[k], replay[k]) for k in cached)


def test_scheduled_sweep_local_and_process_executors_agree(tmp_path):
    base = {**tiny(), "latency": {"enabled": False}}
    spec = {"base": base, "grid": {"pruning.compression": [1, 4]},
            "zip": [{"schedule.kind": ["iterative", "gradual", "lottery", "lottery", "lottery"],
                     "schedule.at_init": [False, True, False, False, False],
                     "schedule.rate": [0.5, 0.2, 0.5, 0.5, 0.5],
                     "schedule.control": ["none", "none", "none", "reinit", "shuffle"]}]}
    assert sweep(spec, tmp_path / "local") == 0
    assert sweep(spec, tmp_path / "process", "--executor", "process", "--workers", "2") == 0
    ids = sorted(p.name for p in (tmp_path / "local" / "runs").iterdir() if (p / "metrics.json").is_file())
    assert len(ids) == 6
    for rid in ids:
        a = json.loads((tmp_path / "local" / "runs" / rid / "metrics.json").read_text())
        b = json.loads((tmp_path / "process" / "runs" / rid / "metrics.json").read_text())
        assert deterministic(a) == deterministic(b), rid


@pytest.mark.parametrize("body", [
    {"grid": {"schedule.kind": ["oneshot", "iterative"], "schedule.rate": [0.5]}},
    {"grid": {"schedule.kind": ["gradual", "lottery"], "schedule.at_init": [True]}},
    {"grid": {"pruning.strategy": ["GlobalChannelL1"]}, "zip": [{"schedule.kind": ["gradual"]}]},
])
def test_sweeps_mixing_schedules_badly_fail_in_one_line_and_write_nothing(body, tmp_path, capsys):
    spec = {"base": {**tiny(), "latency": {"enabled": False}}, **body}
    assert sweep(spec, tmp_path / "out", "--dry-run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("shrinkbench: error: sweep")
    assert not (tmp_path / "out").exists()


def test_kill_9_during_a_lottery_run_then_rerun_gives_the_same_numbers(tmp_path):
    """A real `shrinkbench run` killed with SIGKILL once its checkpoint shows a finished round,
    then run again: the same numbers, epochs and model as a run never interrupted."""
    tree = {**tiny(pruning={"compression": 8}), "latency": {"enabled": False},
            "schedule": {"kind": "lottery", "rate": 0.3, "rewind": "13it"}}
    cfg = config_from_dict(tree)
    whole = execute(cfg, tmp_path / "whole")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tree))
    out = tmp_path / "cut"
    ckpt = out / "runs" / cfg.run_id / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-m", "shrinkbench", "run", str(path), "--out", str(out),
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.is_file():
                try:
                    if int(torch.load(ckpt, weights_only=False)["stage"]) >= 3:
                        break
                except Exception:  # caught mid-rename
                    pass
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "runs" / cfg.run_id / "metrics.json").exists() and ckpt.is_file()
    resumed = execute(cfg, out)
    assert deterministic(resumed) == deterministic(whole)
    a = load_state(run_dir(out, cfg.run_id) / "model.pt")
    b = load_state(run_dir(tmp_path / "whole", cfg.run_id) / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [(run_dir(p, cfg.run_id) / "epochs.csv").read_text().splitlines() for p in (out, tmp_path / "whole")]
    drop_time = [[",".join(c for i, c in enumerate(r.split(",")) if i != 4) for r in rs] for rs in rows]
    assert drop_time[0] == drop_time[1]


def _snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "flags": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
    }


@pytest.mark.parametrize("strategy, options", [("SNIP", {}), ("GraSP", {}), ("SynFlow", {"rounds": 3})])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_init_scores_leave_a_bn_residual_tied_frozen_dropout_model_unchanged(strategy, options, mode):
    torch.manual_seed(0)
    model = TiedNet(3, 10)
    getattr(model, mode)()
    model.bn2.eval()  # mixed modes are kept too
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    model(x).sum().backward()  # .grad present on the trainable parameters
    before = _snapshot(model)
    result = prune(model, strategy, 2, inputs=x, targets=y, include_classifier=True, options=options)
    assert result.nonzero == math.floor(result.total / 2)
    after = _snapshot(model)
    masks = {n: m.bool() for n, _, _, m in masked_parameters(model)}
    assert set(masks) == set(prunable_parameters(model, include_classifier=True))
    assert "emb.weight" in masks and "out.weight" not in masks  # the tied tensor, once
    for key, value in before["state"].items():
        name = "emb.weight" if key == "out.weight" else key
        if name in masks:
            assert torch.equal(after["state"][key][masks[name]], value[masks[name]]), key
            assert bool((after["state"][key][~masks[name]] == 0).all()), key
        elif not key.endswith("_mask"):
            assert torch.equal(after["state"][key], value), key  # BN statistics included
    assert after["flags"] == before["flags"] and after["modes"] == before["modes"]
    for name, grad in before["grads"].items():
        assert (grad is None) == (after["grads"][name] is None), name
        assert grad is None or torch.equal(grad, after["grads"][name]), name
