"""Calibration examples as config fields (`pruning.calibration_samples`, `calibration_length`,
`calibration_seed`): drawn at random from the training split, recorded with language-model runs,
and refused in one line before training when they cannot be drawn."""

from __future__ import annotations

import json

import pytest
import torch

from shrinkbench.data import get_data
from shrinkbench.data.loader import calibration_indices
from shrinkbench.errors import ConfigError
from shrinkbench.experiment import config_from_dict
from shrinkbench.experiment.components import preflight
from shrinkbench.experiment.runner import execute
from shrinkbench.experiment.scheduled import score_batches

from test_lm_run import TEXT, lm_config, text_dir  # noqa: F401  (fixture)


def digits_config(**pruning) -> dict:
    return {"data": {"name": "digits"}, "model": {"name": "mlp_digits"},
            "dense": {"recipe": {"epochs": 1, "batch_size": 64}},
            "pruning": {"strategy": "GlobalMagAct", "compression": 2, **pruning},
            "finetune": {"epochs": 0, "batch_size": 64}, "latency": {"enabled": False},
            "device": "cpu"}


def test_unset_fields_keep_the_run_id_and_set_ones_change_it(text_dir):  # noqa: F811
    base = config_from_dict(lm_config(text_dir))
    explicit = config_from_dict(lm_config(text_dir, calibration_samples=None,
                                          calibration_length=None, calibration_seed=None))
    assert explicit.run_id == base.run_id
    drawn = config_from_dict(lm_config(text_dir, calibration_samples=8))
    reseeded = config_from_dict(lm_config(text_dir, calibration_samples=8, calibration_seed=3))
    assert len({base.run_id, drawn.run_id, reseeded.run_id}) == 3
    # the unpruned control is one run whatever its calibration fields say
    control = config_from_dict(lm_config(text_dir, compression=1, calibration_samples=8))
    assert control.run_id == config_from_dict(lm_config(text_dir, compression=1)).run_id


def test_text_draws_are_training_substrings_fixed_by_the_seed(text_dir):  # noqa: F811
    bundle = get_data("text", root=str(text_dir), block_size=32, batch_size=16)
    train = bundle.train
    batches = train.calibration(20, seed=5, batch_size=8, length=24)
    assert [tuple(x.shape) for x, _ in batches] == [(8, 24), (8, 24), (4, 24)]
    text = train.vocab.decode(train.tokens.tolist())
    for x, y in batches:
        assert torch.equal(x[:, 1:], y[:, :-1])  # next-token targets
        for row, target in zip(x, y):
            seq = train.vocab.decode(row.tolist()) + train.vocab.decode(target[-1:].tolist())
            assert seq in text
    again = train.calibration(20, seed=5, batch_size=20, length=24)[0]
    assert torch.equal(again[0], torch.cat([x for x, _ in batches]))  # batch size changes nothing
    other = train.calibration(20, seed=6, batch_size=20, length=24)[0]
    assert not torch.equal(other[0], again[0])
    train.set_epoch(3)  # the loader's epoch does not move the draw
    assert torch.equal(train.calibration(20, seed=5, batch_size=20, length=24)[0][0], again[0])
    assert train.epoch == 3


def test_image_draws_are_distinct_unaugmented_training_examples():
    bundle = get_data("digits", batch_size=64, seed=0)
    train = bundle.train
    batches = train.calibration(100, seed=1, batch_size=64)
    x = torch.cat([b[0] for b in batches])
    assert x.shape[0] == 100 and [len(b[1]) for b in batches] == [64, 36]
    everything = torch.cat([b[0] for b in _all(train)])
    rows = {tuple(r.flatten().tolist()) for r in everything}
    assert all(tuple(r.flatten().tolist()) in rows for r in x)  # real training examples
    idx = calibration_indices(train.num_samples, 100, 1)
    assert len(set(idx.tolist())) == 100  # distinct examples
    assert torch.equal(x, train._normalize(train.x.index_select(0, idx), True))
    with pytest.raises(Exception, match="more than the"):
        train.calibration(train.num_samples + 1, seed=1, batch_size=64)


def _all(loader):
    loader.set_epoch(0)
    return list(loader)


def test_a_run_scores_on_the_drawn_sequences_and_records_them(text_dir, tmp_path):  # noqa: F811
    tree = lm_config(text_dir, strategy="Wanda", calibration_samples=24, calibration_length=20,
                     calibration_seed=7)
    tree["finetune"]["epochs"] = 0
    cfg = config_from_dict(tree)
    m = execute(cfg, tmp_path / "out")
    assert json.loads(m["lm_calibration"]) == {
        "sequences": 24, "length": 20, "seed": 7, "source": "drawn at random from the training split"}
    # the same draw, made by hand, is what the run scored on
    bundle = get_data("text", root=str(text_dir), block_size=32, batch_size=16)
    drawn = score_batches(cfg, bundle.train)
    assert [tuple(x.shape) for x, _ in drawn] == [(16, 20), (8, 20)]
    assert torch.equal(torch.cat([x for x, _ in drawn]),
                       torch.cat([x for x, _ in bundle.train.calibration(24, 7, 24, length=20)]))
    other = dict(tree, pruning=dict(tree["pruning"], calibration_seed=8))
    m2 = execute(config_from_dict(other), tmp_path / "out")
    assert m2["pre_val_ppl"] != m["pre_val_ppl"]  # another draw, other Wanda scores
    m3 = execute(config_from_dict(tree), tmp_path / "again")
    assert m3["pre_val_ppl"] == m["pre_val_ppl"]


@pytest.mark.parametrize("pruning, words", [
    ({"calibration_length": 16}, "calibration_length: 16 needs calibration_samples"),
    ({"calibration_seed": 2}, "calibration_seed: 2 needs calibration_samples"),
    ({"calibration_samples": 0}, "calibration_samples"),
])
def test_config_refusals(text_dir, pruning, words):  # noqa: F811
    with pytest.raises(ConfigError, match=words):
        config_from_dict(lm_config(text_dir, **pruning))


def test_length_refused_for_fixed_shape_data():
    with pytest.raises(ConfigError, match="applies to text data sets"):
        config_from_dict(digits_config(calibration_samples=10, calibration_length=8))


def test_preflight_refuses_what_cannot_be_drawn(text_dir):  # noqa: F811
    with pytest.raises(ConfigError, match="more than the .* training examples"):
        preflight(config_from_dict(digits_config(calibration_samples=10**6)))
    with pytest.raises(ConfigError, match="do not fit the .* training tokens"):
        preflight(config_from_dict(lm_config(text_dir, calibration_samples=4,
                                             calibration_length=len(TEXT))))
    with pytest.raises(ConfigError, match="does not take sequences of 64 tokens"):
        preflight(config_from_dict(lm_config(text_dir, calibration_samples=4,
                                             calibration_length=64)))
    assert preflight(config_from_dict(lm_config(text_dir, calibration_samples=4,
                                                calibration_length=32)))
    assert preflight(config_from_dict(digits_config(calibration_samples=100)))


def test_digits_run_with_drawn_examples(tmp_path):
    m = execute(config_from_dict(digits_config(calibration_samples=100, calibration_seed=1)),
                tmp_path / "out")
    assert m["compression_ratio"] == pytest.approx(2.0, rel=1e-3)
