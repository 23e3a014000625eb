"""ImageNet models carry torchvision's state_dict names and shapes, so its weights load strictly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from shrinkbench.models import create, load_weights


def _state(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = create(name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# (model, number of state_dict entries in torchvision, sample entries with their shapes)
SAMPLES = {
    "resnet18": (122, {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_var": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.0.downsample.1.running_mean": (128,),
        "layer4.1.bn2.num_batches_tracked": (),
        "fc.weight": (1000, 512),
        "fc.bias": (1000,),
    }),
    "resnet34": (218, {
        "layer3.5.conv2.weight": (256, 256, 3, 3),
        "layer4.0.downsample.0.weight": (512, 256, 1, 1),
        "fc.weight": (1000, 512),
    }),
    "resnet50": (320, {
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer3.5.bn3.weight": (1024,),
        "layer4.2.bn3.running_var": (2048,),
        "fc.weight": (1000, 2048),
    }),
    "vgg16": (32, {
        "features.0.weight": (64, 3, 3, 3),
        "features.28.weight": (512, 512, 3, 3),
        "features.28.bias": (512,),
        "classifier.0.weight": (4096, 25088),
        "classifier.3.weight": (4096, 4096),
        "classifier.6.weight": (1000, 4096),
    }),
    "mobilenet_v2": (314, {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.0.1.running_mean": (32,),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),
        "features.1.conv.0.1.weight": (32,),
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.1.conv.2.running_var": (16,),
        "features.2.conv.0.0.weight": (96, 16, 1, 1),
        "features.2.conv.1.0.weight": (96, 1, 3, 3),
        "features.2.conv.2.weight": (24, 96, 1, 1),
        "features.2.conv.3.num_batches_tracked": (),
        "features.17.conv.2.weight": (320, 960, 1, 1),
        "features.18.0.weight": (1280, 320, 1, 1),
        "features.18.1.bias": (1280,),
        "classifier.1.weight": (1000, 1280),
    }),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_torchvision_names_and_shapes(name: str) -> None:
    count, samples = SAMPLES[name]
    state = _state(name)
    assert len(state) == count
    assert {k: state.get(k) for k in samples} == samples


def test_vgg16_key_set_is_torchvision_exactly() -> None:
    convs = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    expected = {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    expected |= {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
    assert set(_state("vgg16")) == expected


def test_resnet_layout_details() -> None:
    state = _state("resnet50")
    assert not any(k.startswith("layer1.1.downsample") for k in state)
    with torch.device("meta"):
        model = create("resnet50")
    # torchvision's "v1.5": the stride sits on the 3x3 conv of the bottleneck.
    assert model.layer2[0].conv1.stride == (1, 1) and model.layer2[0].conv2.stride == (2, 2)
    assert model.conv1.padding == (3, 3) and model.maxpool.stride == 2
    mobile = create("mobilenet_v2")
    depthwise = mobile.features[2].conv[1][0]
    assert isinstance(depthwise, nn.Conv2d) and depthwise.groups == 96 and depthwise.stride == (2, 2)
    assert [b.use_res_connect for b in mobile.features[1:18]].count(True) == 10


def test_torchvision_style_state_dict_loads_strictly(tmp_path: Path) -> None:
    source = create("mobilenet_v2", generator=torch.Generator().manual_seed(0))
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(source.state_dict(), path)
    target = load_weights(create("mobilenet_v2", generator=torch.Generator().manual_seed(1)), path)
    assert torch.equal(target.features[18][0].weight, source.features[18][0].weight)
