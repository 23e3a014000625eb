"""Structured runs end to end: prune channels, remove them, fine-tune the slim model, measure
latency beside the dense model; resume with the slim architecture; export reads the slim file."""

from __future__ import annotations

import pytest
import torch

from shrinkbench.common import is_measured
from shrinkbench.errors import ConfigError
from shrinkbench.experiment import config_from_dict, config_to_dict, ensure_dense, execute, run_id
from shrinkbench.experiment.export import load_run_model
from shrinkbench.experiment.ids import hashed_tree
from shrinkbench.pruning.structured import is_slim
from shrinkbench.results.files import run_dir

from test_experiment_runner import kill_at_epoch_2, state


def _structured(tiny: dict, **pruning) -> dict:
    tiny["pruning"] = {"strategy": "layer_channel_l1", "compression": 2, "target": "speedup", **pruning}
    return tiny


def test_a_structured_run_fine_tunes_the_slim_model_and_measures_both(tmp_path, tiny):
    cfg = config_from_dict(_structured(tiny))
    metrics = execute(cfg, tmp_path)
    assert metrics["structured"] == 1.0
    assert 2.0 <= metrics["speedup"] < 2.3
    assert metrics["channels_kept"] < metrics["channels_total"]
    assert metrics["channels_kept_fraction"] == metrics["channels_kept"] / metrics["channels_total"]
    assert metrics["params_nonzero"] < metrics["params_total"]
    for key in ("latency_ms", "latency_dense_ms", "latency_iqr_ms", "latency_dense_iqr_ms"):
        assert metrics[key] > 0
    assert metrics["speedup_measured"] == pytest.approx(metrics["latency_dense_ms"] / metrics["latency_ms"])
    assert metrics["latency_batch"] == 16 and metrics["latency_threads"] == 1
    assert metrics["post_test_acc1"] > 0.5
    payload = state(run_dir(tmp_path, cfg.run_id) / "model.pt")
    assert is_slim(payload) and payload["architecture"]
    row = {"id": cfg.run_id, "config": config_to_dict(cfg)}
    model, _ = load_run_model(tmp_path, row)
    assert sum(p.numel() for p in model.parameters()) == metrics["params_nonzero"]


def test_an_unstructured_run_records_measured_speed_and_latency_can_be_off(tmp_path, tiny):
    metrics = execute(config_from_dict(tiny), tmp_path / "on")
    assert metrics["structured"] == 0.0 and metrics["speedup_measured"] > 0
    assert "channels_kept" not in metrics
    tiny["latency"] = {"enabled": False}
    off = execute(config_from_dict(tiny), tmp_path / "off")
    assert not any(k.startswith("latency_") or k == "speedup_measured" for k in off)


def test_new_fields_leave_earlier_run_ids_unchanged_unless_set(tiny):
    tree = hashed_tree(config_from_dict(tiny))
    assert "latency" not in tree and "target" not in tree["pruning"]
    changed = dict(tiny, latency={"batch_size": 4})
    assert run_id(config_from_dict(changed)) != run_id(config_from_dict(tiny))
    assert "target" in hashed_tree(config_from_dict(_structured(tiny)))["pruning"]


def test_a_target_other_than_compression_needs_a_structured_strategy(tiny):
    tiny["pruning"]["target"] = "speedup"
    with pytest.raises(ConfigError, match="pruning.target: 'speedup' needs a structured"):
        config_from_dict(tiny)
    tiny["pruning"]["target"] = "flops"
    with pytest.raises(ConfigError, match="pruning.target"):
        config_from_dict(tiny)


def test_a_structured_run_resumes_into_the_slim_architecture(tmp_path, tiny):
    _structured(tiny)
    tiny["finetune"]["epochs"] = 4
    cfg = config_from_dict(tiny)
    out = tmp_path / "killed"
    ensure_dense(cfg, out)
    kill_at_epoch_2(tiny, out, tmp_path / "epoch", "finetune")
    folder = run_dir(out, cfg.run_id, create=False)
    saved = state(folder / "checkpoint.pt")
    assert saved["epoch"] >= 1 and saved["architecture"]
    resumed = execute(cfg, out)
    reference = execute(cfg, tmp_path / "straight")
    assert {k: v for k, v in resumed.items() if not is_measured(k)} == \
        {k: v for k, v in reference.items() if not is_measured(k)}
    a = state(folder / "model.pt")["state_dict"]
    b = state(run_dir(tmp_path / "straight", cfg.run_id) / "model.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_of_a_slim_run_carries_its_architecture(tmp_path, tiny):
    from shrinkbench.experiment.export import export_run, load_exported
    from shrinkbench.models import create
    from shrinkbench.pruning.structured import apply_architecture
    from shrinkbench.sweep import run_experiment

    cfg = config_from_dict(_structured(tiny))
    metrics = run_experiment(cfg, tmp_path, progress=False)
    x = torch.randn(3, 1, 8, 8)
    outputs = []
    for fmt in ("state_dict", "csr"):
        result = export_run(tmp_path, cfg.run_id, fmt)
        obj = torch.load(result.path, weights_only=True)
        fresh = create("convnet_digits", num_classes=10, input_shape=(1, 8, 8))
        apply_architecture(fresh, obj["architecture"])
        fresh.load_state_dict(load_exported(result.path))
        assert sum(p.numel() for p in fresh.parameters()) == metrics["params_nonzero"]
        outputs.append(fresh.eval()(x))
    assert torch.allclose(outputs[0], outputs[1])


def test_an_unreachable_channel_target_is_refused_before_anything_is_trained(tmp_path, tiny):
    from shrinkbench.errors import CompressionError
    from shrinkbench.experiment.components import preflight

    _structured(tiny, target="channels", compression=40)
    with pytest.raises(CompressionError, match=r"channels 40 cannot be reached .* at most 37.33"):
        preflight(config_from_dict(tiny))
    assert not tmp_path.joinpath("dense").exists()
    _structured(tiny, strategy="GlobalChannelL1", compression=60)  # beyond the unstructured limit
    preflight(config_from_dict(tiny))  # channels remove biases and batch norms too: reachable
