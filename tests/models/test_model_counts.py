"""Every zoo model: exact parameter count, MACs against the published figure, forward, classifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shrinkbench.metrics import count_macs
from shrinkbench.models import create, example_input, list_models, model_info, takes_tokens

# name -> (exact parameters with the default classes, MACs for one default-size image, relative
# tolerance: 0 where the figure is exact, 1% where the published figure is rounded).
EXPECTED = {
    "lenet300": (266_610, 266_200, 0),  # Han et al. 2015: 267K
    "lenet5": (431_080, 2_293_000, 0),  # Caffe LeNet-5, Han et al. 2015: 431K
    "mlp_digits": (17_226, 17_024, 0),
    "convnet_digits": (38_282, 337_536, 0),
    # CIFAR ResNets (option A): He et al. 2016 give 0.27M / 0.85M / 1.7M parameters.
    "resnet20": (269_722, 40.6e6, 0.01),
    "resnet32": (464_154, 68_862_592, 0),  # exact: see the hand count below
    "resnet44": (658_586, 97_174_144, 0),
    "resnet56": (853_018, 125.5e6, 0.01),
    "resnet110": (1_727_962, 253e6, 0.01),
    "vgg16_cifar": (14_991_946, 313e6, 0.01),  # Li et al. 2017: 1.5e7 parameters, 3.13e8 FLOPs
    # ImageNet, torchvision's published figures.
    "resnet18": (11_689_512, 1.82e9, 0.01),
    "resnet34": (21_797_672, 3.66e9, 0.01),
    "resnet50": (25_557_032, 4.09e9, 0.01),
    "vgg16": (138_357_544, 15.47e9, 0.01),
    "mobilenet_v2": (3_504_872, 0.30e9, 0.01),
    # Transformers, exact: the hand formulas are in tests/models/test_transformer_models.py.
    "char_gpt": (818_048, 118_505_472, 0),  # one sequence of 128 characters
    "vit_tiny": (809_354, 55_838_976, 0),
    # A small LLaMA through transformers (optional), 65 tokens, 128 positions, counted by hand:
    # embeddings 65 x 128 and an untied head; per layer q/k/v/o 4 x 128^2, a gated MLP 3 x 128 x 384
    # and two RMSNorms (128 each); a final RMSNorm. MACs: 128 tokens x (4 x 128^2 + 3 x 128 x 384)
    # per layer, QK^T and AV 2 x 4 heads x 128^2 x 32, the head 128 x 128 x 65.
    "hf_causal": (2 * 65 * 128 + 4 * (4 * 128**2 + 3 * 128 * 384 + 2 * 128) + 128,
                  4 * (128 * (4 * 128**2 + 3 * 128 * 384) + 2 * 4 * 128**2 * 32) + 128 * 128 * 65, 0),
}
OPTIONAL = {"hf_causal": "transformers"}  # skipped where the package is not installed
SLOW = {"vgg16", "resnet34", "resnet50"}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_model_has_expected_figures() -> None:
    assert sorted(EXPECTED) == list_models()


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(EXPECTED)]
)
def test_model_counts_forward_and_classifier(name: str) -> None:
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    params, macs, tol = EXPECTED[name]
    info = model_info(name)
    model = create(name, generator=torch.Generator().manual_seed(0)).eval()
    assert _params(model) == params
    dense = count_macs(model, example_input(name)).dense
    assert dense == pytest.approx(macs, rel=tol, abs=0)
    with torch.no_grad():
        out = model(example_input(name, 2, generator=torch.Generator().manual_seed(1)))
    # a language model gives logits at every position of its token input
    per_token = info.default_input_shape if takes_tokens(info) else ()
    assert out.shape == (2, *per_token, info.default_num_classes)
    assert torch.isfinite(out).all()
    classifier = dict(model.named_modules())[model.shrinkbench_classifier]
    assert isinstance(classifier, nn.Linear)
    assert classifier.out_features == info.default_num_classes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classifier_follows_num_classes(name: str) -> None:
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    with torch.device("meta"):
        model = create(name, num_classes=7)
    classifier = dict(model.named_modules())[model.shrinkbench_classifier]
    assert classifier.out_features == 7
    # The classifier is the last Linear, as pruning's fallback rule would also find.
    last_linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    assert model.shrinkbench_classifier == last_linear


def _cifar_resnet_params(n: int, shortcut: str) -> int:
    """Counted by hand from the paper's layout: conv1, 3 stages of n blocks, fc (10 classes)."""
    stem = 3 * 16 * 9 + 2 * 16
    stage1 = n * (2 * 16 * 16 * 9 + 2 * 2 * 16)
    stage2 = (16 * 32 * 9 + 32 * 32 * 9 + 2 * 2 * 32) + (n - 1) * (2 * 32 * 32 * 9 + 2 * 2 * 32)
    stage3 = (32 * 64 * 9 + 64 * 64 * 9 + 2 * 2 * 64) + (n - 1) * (2 * 64 * 64 * 9 + 2 * 2 * 64)
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64) if shortcut == "B" else 0
    return stem + stage1 + stage2 + stage3 + projections + 64 * 10 + 10


def _cifar_resnet_macs(n: int) -> int:
    """Conv MACs at 32x32: every 3x3 conv of a stage costs the same except the first of stages 2, 3."""
    per_conv = 32 * 32 * 16 * 16 * 9  # equal in all stages: channels double as the area quarters
    stem = 32 * 32 * 16 * 3 * 9
    return stem + (6 * n) * per_conv - 2 * (per_conv // 2) + 64 * 10


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_cifar_resnet_counts_match_hand_count(depth: int, shortcut: str) -> None:
    n = (depth - 2) // 6
    model = create(f"resnet{depth}", shortcut=shortcut)
    assert _params(model) == _cifar_resnet_params(n, shortcut)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 * n + 1 + (2 if shortcut == "B" else 0)
    if shortcut == "A":
        assert count_macs(model, torch.zeros(1, 3, 32, 32)).dense == _cifar_resnet_macs(n)


def test_cifar_resnet_figures_quoted_with_projection_shortcuts() -> None:
    # 272,474 / 855,770 / 1,730,714 (often quoted) are the option-B counts: A plus 2,752.
    assert [_params(create(f"resnet{d}", shortcut="B")) for d in (20, 56, 110)] == [
        272_474,
        855_770,
        1_730_714,
    ]
    assert _params(create("resnet20", shortcut="B")) - _params(create("resnet20")) == 2_752
