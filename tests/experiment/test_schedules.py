"""Schedules: config rules, the sparsity path of each one, rewinding, the lottery controls, the
training cost, and resume after an interruption (tiny digits runs, under a second each)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from shrinkbench.errors import ConfigError
from shrinkbench.experiment.checkpoint import load_state
from shrinkbench.experiment.components import build_model, load_data
from shrinkbench.experiment.config import Config, config_from_dict
from shrinkbench.experiment.loops import fit
from shrinkbench.experiment.runner import execute
from shrinkbench.experiment.schedules import (agp_events, agp_keeps, agp_sparsity, parse_step,
                                              rewind, rounds_path, shuffled, weights_of)
from shrinkbench.pruning import masked_parameters, prune
from shrinkbench.results.files import run_dir

from tiny_config import tiny

NO_LATENCY = {"enabled": False}
MEASURED = ("time_", "latency", "speedup_measured", "env")


def cfg_of(**schedule) -> Config:
    return config_from_dict({**tiny(), "schedule": schedule, "latency": NO_LATENCY})


def deterministic(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(MEASURED)}


def masks_in(folder) -> dict[str, torch.Tensor]:
    state = load_state(folder / "model.pt")
    return {k[: -len("_mask")]: v for k, v in state.items() if k.endswith("_mask")}


# ---- config ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule, words", [
    ({"kind": "iterative", "rewind": "1ep"}, "schedule.rewind: applies to schedule kind lottery"),
    ({"kind": "oneshot", "control": "reinit"}, "schedule.control: applies to schedule kind lottery"),
    ({"kind": "lottery", "at_init": True}, "schedule.at_init: applies to schedule kind oneshot or gradual"),
    ({"kind": "gradual", "rate": 0.5}, "schedule.rate: applies"),
    ({"kind": "sometimes"}, "schedule.kind: expected one of: oneshot"),
    ({"kind": "lottery", "rewind": "3 epochs"}, "schedule.rewind: expected a step"),
    ({"kind": "lottery", "rate": 1.0}, "schedule.rate: expected a number in (0, 1)"),
])
def test_schedule_fields_are_checked(schedule, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        cfg_of(**schedule)


def test_schedule_rules_across_sections():
    with pytest.raises(ConfigError, match="structured strategies"):
        config_from_dict({**tiny(pruning={"strategy": "global_channel_l1"}), "schedule": {"kind": "gradual"}})
    with pytest.raises(ConfigError, match="classifier_rate.*include_classifier"):
        config_from_dict(tiny(pruning={"classifier_rate": 0.5}))
    # the unpruned control is one run whatever the schedule
    a = config_from_dict({**tiny(pruning={"compression": 1}), "schedule": {"kind": "lottery"}})
    b = config_from_dict(tiny(pruning={"compression": 1}))
    assert a.run_id == b.run_id and a.schedule.is_default


def test_default_schedule_keeps_run_ids_and_steps_have_one_spelling():
    assert config_from_dict({**tiny(), "latency": NO_LATENCY}).run_id == cfg_of().run_id
    assert cfg_of(kind="lottery", rewind=0).run_id == cfg_of(kind="lottery", rewind="0it").run_id
    assert cfg_of(kind="lottery", rewind="0").schedule.rewind == "0it"
    assert cfg_of(kind="lottery").run_id != cfg_of(kind="lottery", rewind="1ep").run_id


# ---- pure schedule arithmetic ----------------------------------------------------------------------

def test_parse_step():
    assert parse_step("0", 17) == 0 and parse_step("3ep", 17) == 51 and parse_step("40it", 17) == 40
    with pytest.raises(ConfigError):
        parse_step("3 epochs", 17)


def test_agp_cubic_schedule_by_hand():
    # Zhu & Gupta: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3
    assert agp_sparsity(0, 0, 100, 0.0, 0.9) == 0.0
    assert agp_sparsity(50, 0, 100, 0.0, 0.9) == pytest.approx(0.9 - 0.9 * 0.125)
    assert agp_sparsity(75, 0, 100, 0.2, 0.9) == pytest.approx(0.9 - 0.7 * 0.25 ** 3)
    assert agp_sparsity(100, 0, 100, 0.0, 0.9) == 0.9 and agp_sparsity(130, 0, 100, 0.0, 0.9) == 0.9
    assert agp_events(10, 50, 20) == [10, 30, 50] and agp_events(0, 45, 20) == [0, 20, 40, 45]
    keeps = agp_keeps(1000, 100, [0, 25, 50, 75, 100], 0, 100, 0.0)
    # ceil(1000 (1 - s_t)) at each event, the last exactly the target
    assert keeps == [1000, math.ceil(1000 * (1 - (0.9 - 0.9 * 0.75 ** 3))),
                     math.ceil(1000 * (1 - (0.9 - 0.9 * 0.125))),
                     math.ceil(1000 * (1 - (0.9 - 0.9 * 0.25 ** 3))), 100]


def test_rounds_path_prunes_the_rate_of_what_is_left():
    assert rounds_path(1000, 100, 0.2) == [800, 640, 512, 410, 328, 262, 210, 168, 134, 107, 100]
    assert rounds_path(100, 100, 0.2) == []


# ---- rewinding ---------------------------------------------------------------------------------------

def test_rewind_restores_exactly_the_recorded_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    recorded = weights_of(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model[1].running_mean.add_(1.0)
    prune(model, "global_magnitude", 2.0, include_classifier=True)
    rewind(model, recorded)
    for name, _, local, mask in masked_parameters(model):
        weight = model.get_parameter(name)
        assert torch.equal(weight[mask.bool()], recorded[name][mask.bool()])
        assert bool((weight[~mask.bool()] == 0).all())
    assert torch.equal(model[1].running_mean, recorded["1.running_mean"])
    assert torch.equal(model[0].bias, recorded["0.bias"])


def test_training_to_step_k_reproduces_the_dense_trajectory():
    cfg = cfg_of()
    device = torch.device("cpu")
    bundle = load_data(cfg, cfg.dense.recipe, device)
    seen = {}
    full = build_model(cfg, bundle.info, device)
    count = [0]

    def capture(batch: int) -> None:
        count[0] += 1
        if count[0] == 27:
            seen.update(weights_of(full))

    fit(full, cfg.dense.recipe, bundle.train, bundle.val, phase="dense", seed=cfg.seed, device=device,
        on_step=capture)
    short = build_model(cfg, bundle.info, device)
    fit(short, cfg.dense.recipe, bundle.train, bundle.val, phase="dense", seed=cfg.seed,
        device=device, stop_step=27)
    for key, value in weights_of(short).items():
        assert torch.equal(value, seen[key]), key


def test_shuffled_masks_keep_counts_and_move_entries():
    masks = {"a": (torch.arange(100) % 3 == 0).float().view(10, 10), "b": torch.ones(7)}
    out = shuffled(masks, torch.Generator().manual_seed(0))
    assert int(out["a"].sum()) == int(masks["a"].sum()) and not torch.equal(out["a"], masks["a"])
    assert torch.equal(out["b"], masks["b"])


# ---- whole runs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("schedules")


def counts(cfg: Config) -> tuple[int, int, int]:
    """(all parameters, unprunable ones, prunable ones) of the tiny model."""
    from shrinkbench.pruning import prunable_parameters

    model = build_model(cfg, load_data(cfg, cfg.finetune, torch.device("cpu")).info)
    total = sum(p.numel() for p in model.parameters())
    prunable = sum(p.numel() for p in prunable_parameters(model).values())
    return total, total - prunable, prunable


def test_oneshot_path_and_cost_by_hand(out):
    cfg = cfg_of()
    m = execute(cfg, out)
    assert m["schedule"] == "oneshot" and m["schedule_name"] == "one-shot"
    assert m["path_step"] == [0] and m["path_compression"] == [m["compression_ratio"]]
    bundle = load_data(cfg, cfg.finetune, torch.device("cpu"))
    examples = bundle.train.num_samples
    dense_steps = 3 * math.ceil(examples / 64)
    assert m["train_steps"] == dense_steps + 2 * math.ceil(examples / 64)
    assert m["train_epochs"] == 5.0
    assert m["train_macs"] == pytest.approx(3 * examples * (3 * m["macs_dense"] + 2 * m["macs_sparse"]))


def test_iterative_path_is_the_rate_of_what_is_left(out):
    cfg = cfg_of(kind="iterative", rate=0.5, round_epochs=1)
    m = execute(cfg, out)
    total, fixed, prunable = counts(cfg)
    target = math.floor(total / 4.0) - fixed
    keeps = rounds_path(prunable, target, 0.5)
    assert len(keeps) == 3
    assert m["path_compression"] == pytest.approx([total / (fixed + k) for k in keeps], rel=1e-12)
    assert m["round_compression"] == pytest.approx(m["path_compression"], rel=1e-12)
    steps = math.ceil(load_data(cfg, cfg.finetune, torch.device("cpu")).train.num_samples / 64)
    assert m["path_step"] == [0, steps, 2 * steps]  # one fine-tuning epoch per round
    assert len(m["round_test_acc1"]) == 3 and m["compression_ratio"] == pytest.approx(4.0, rel=1e-3)
    rows = (run_dir(out, cfg.run_id) / "epochs.csv").read_text().splitlines()
    assert len(rows) == 2  # only the last round's epoch is the run's own


def test_gradual_path_follows_the_cubic_schedule(out):
    cfg = cfg_of(kind="gradual", frequency=5, initial_sparsity=0.25)
    m = execute(cfg, out)
    total, fixed, prunable = counts(cfg)
    per_epoch = math.ceil(load_data(cfg, cfg.finetune, torch.device("cpu")).train.num_samples / 64)
    end = (3 * 2 * per_epoch) // 4
    events = agp_events(0, end, 5)
    keeps = agp_keeps(prunable, math.floor(total / 4.0) - fixed, events, 0, end, 0.25)
    assert m["path_step"] == events
    assert m["path_compression"] == pytest.approx([total / (fixed + k) for k in keeps], rel=1e-12)
    assert m["path_sparsity"][0] == pytest.approx(1 - (fixed + math.ceil(0.75 * prunable)) / total)
    # training MACs: every step at the density it ran at
    assert m["train_macs"] > 0 and m["train_steps"] == 3 * per_epoch + 2 * per_epoch


def test_at_init_runs_train_the_sparse_network_for_both_phases(out):
    cfg = cfg_of(kind="oneshot", at_init=True)
    m = execute(cfg, out)
    assert m["schedule_name"] == "one-shot at init" and m["path_step"] == [0]
    per_epoch = math.ceil(load_data(cfg, cfg.finetune, torch.device("cpu")).train.num_samples / 64)
    assert m["train_steps"] == 5 * per_epoch  # no dense training behind it
    examples = load_data(cfg, cfg.finetune, torch.device("cpu")).train.num_samples
    assert m["train_macs"] == pytest.approx(3 * 5 * examples * m["macs_sparse"], rel=1e-9)
    phases = [line.split(",")[0] for line in (run_dir(out, cfg.run_id) / "epochs.csv").read_text().splitlines()]
    assert len(phases) == 6  # header, three sparse "dense" epochs, two fine-tuning epochs


def test_lottery_ticket_and_controls(out, tmp_path):
    ticket_cfg = cfg_of(kind="lottery", rate=0.5)
    ticket = execute(ticket_cfg, out)
    assert ticket["schedule_name"] == "lottery (rewind init)"
    assert len(ticket["round_compression"]) == 3
    ticket_masks = masks_in(run_dir(out, ticket_cfg.run_id))
    init = build_model(ticket_cfg, load_data(ticket_cfg, ticket_cfg.finetune, torch.device("cpu")).info)

    reinit_cfg = cfg_of(kind="lottery", rate=0.5, control="reinit")
    reinit = execute(reinit_cfg, out)
    assert {k: torch.equal(v, ticket_masks[k]) for k, v in masks_in(run_dir(out, reinit_cfg.run_id)).items()} \
        == dict.fromkeys(ticket_masks, True)
    # the control's mask search is the ticket's: same path and cost up to its last pruning step
    assert reinit["path_step"] == ticket["path_step"] and reinit["train_steps"] == ticket["train_steps"]
    # found again without the ticket's folder: the same numbers
    alone = execute(reinit_cfg, tmp_path, force=True)
    assert deterministic(alone) == deterministic(reinit)

    shuffle_cfg = cfg_of(kind="lottery", rate=0.5, control="shuffle")
    execute(shuffle_cfg, out)
    shuffled_masks = masks_in(run_dir(out, shuffle_cfg.run_id))
    for name, mask in ticket_masks.items():
        assert int(shuffled_masks[name].sum()) == int(mask.sum())
        assert not torch.equal(shuffled_masks[name], mask)

    random_cfg = cfg_of(kind="lottery", rate=0.5, control="random")
    random = execute(random_cfg, out)
    assert random["compression_ratio"] == pytest.approx(ticket["compression_ratio"], rel=1e-9)
    assert random["path_step"] == [0]
    assert init is not None


def test_rewinding_point_after_an_epoch(out):
    cfg = cfg_of(kind="lottery", rate=0.5, rewind="1ep")
    m = execute(cfg, out)
    per_epoch = math.ceil(load_data(cfg, cfg.dense.recipe, torch.device("cpu")).train.num_samples / 64)
    # each round trains from the rewinding point to the end of the dense recipe: 2 of 3 epochs
    assert m["path_step"] == [0, 2 * per_epoch, 4 * per_epoch]
    with pytest.raises(ConfigError, match="past the end of dense training"):
        execute(cfg_of(kind="lottery", rate=0.5, rewind="9ep"), out)


class Stop(Exception):
    pass


@pytest.mark.parametrize("schedule, cut", [
    ({"kind": "iterative", "rate": 0.5, "round_epochs": 1}, 3),  # in the third round
    ({"kind": "lottery", "rate": 0.5, "rewind": "5it"}, 3),  # after replaying to step 5, one round
    ({"kind": "gradual", "at_init": True, "frequency": 7}, 2),  # at fine-tuning
])
def test_an_interrupted_schedule_resumes_with_the_same_numbers(schedule, cut, tmp_path, monkeypatch):
    import shrinkbench.experiment.scheduled as scheduled

    cfg = cfg_of(**schedule)
    whole = execute(cfg, tmp_path / "whole")
    calls = []
    real_fit = scheduled.fit

    def fit_until_cut(*args, **kwargs):
        calls.append(1)
        if len(calls) == cut:
            raise Stop
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(scheduled, "fit", fit_until_cut)
    with pytest.raises(Stop):
        execute(cfg, tmp_path / "cut")
    monkeypatch.setattr(scheduled, "fit", real_fit)
    assert (run_dir(tmp_path / "cut", cfg.run_id) / "checkpoint.pt").is_file()
    resumed = execute(cfg, tmp_path / "cut")
    assert deterministic(resumed) == deterministic(whole)


def test_cached_scheduled_run_replays_its_phases(out):
    cfg = cfg_of(kind="oneshot", at_init=True)
    execute(cfg, out)
    phases = []
    execute(cfg, out, on_epoch=lambda phase, epoch, row: phases.append((phase, epoch)))
    assert phases == [("dense", 1), ("dense", 2), ("dense", 3), ("finetune", 1), ("finetune", 2)]
    assert json.loads((run_dir(out, cfg.run_id) / "metrics.json").read_text())["schedule"] == "oneshot"
    assert dataclasses.replace(cfg.schedule, at_init=False).is_default


def test_classifier_rate_and_allocation_reach_the_run(out):
    cfg = config_from_dict({**tiny(pruning={"strategy": "LayerMagWeight", "include_classifier": True,
                                            "classifier_rate": 0.5}), "latency": NO_LATENCY})
    execute(cfg, out)
    masks = masks_in(run_dir(out, cfg.run_id))
    model = build_model(cfg, load_data(cfg, cfg.finetune, torch.device("cpu")).info)
    from shrinkbench.pruning import classifier_name

    head = f"{classifier_name(model)}.weight"
    pruned = {name: 1 - float(mask.mean()) for name, mask in masks.items()}
    others = [v for k, v in pruned.items() if k != head]
    assert all(v == pytest.approx(2 * pruned[head], abs=0.02) for v in others)
    erk = config_from_dict({**tiny(pruning={"allocation": "erk"}), "latency": NO_LATENCY})
    assert erk.run_id != config_from_dict({**tiny(), "latency": NO_LATENCY}).run_id
    m = execute(erk, out)
    assert m["compression_ratio"] == pytest.approx(4.0, rel=1e-3)
    # a random control keeps random pruning's own (global) allocation
    ctl = config_from_dict({**tiny(pruning={"strategy": "LayerMagWeight", "include_classifier": True,
                                            "classifier_rate": 0.5}),
                            "schedule": {"kind": "lottery", "rate": 0.5, "control": "random"},
                            "latency": NO_LATENCY})
    assert execute(ctl, out)["compression_ratio"] == pytest.approx(4.0, rel=1e-3)
