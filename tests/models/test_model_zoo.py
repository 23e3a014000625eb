"""The registry: names, info, options, sizes from the input, errors, reproducible initialization."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from shrinkbench.errors import ModelError, UnknownNameError
from shrinkbench.models import MODELS, ModelInfo, create, list_models, model_info, register_model

REQUIRED = [
    "lenet300", "lenet5", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "vgg16_cifar",
    "resnet18", "resnet34", "resnet50", "vgg16", "mobilenet_v2", "mlp_digits", "convnet_digits",
]


def test_list_models_has_the_zoo_sorted() -> None:
    names = list_models()
    assert names == sorted(names)
    assert set(REQUIRED) <= set(names)


def test_list_models_pattern() -> None:
    assert list_models("resnet*") == sorted(
        ["resnet18", "resnet20", "resnet32", "resnet34", "resnet44", "resnet50", "resnet56", "resnet110"]
    )
    assert list_models("*DIGITS") == ["convnet_digits", "mlp_digits"]
    assert list_models("nothing*") == []


def test_model_info_fields() -> None:
    info = model_info("resnet56")
    assert info == ModelInfo(
        "resnet56", "cifar-resnet", (3, 32, 32), 10, info.description, min_size=4
    )
    assert "ResNet-56" in info.description
    assert model_info("vgg16").default_input_shape == (3, 224, 224)
    assert model_info("vgg16").default_num_classes == 1000
    assert model_info("mlp_digits").default_input_shape == (1, 8, 8)
    assert model_info("mobilenetv2").name == "mobilenet_v2"  # alias


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(UnknownNameError, match="resnet56") as err:
        create("resnet57")
    assert "lenet300" in str(err.value)
    with pytest.raises(UnknownNameError):
        model_info("alexnet")


def test_names_are_case_insensitive() -> None:
    assert isinstance(create("LeNet300"), nn.Module)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dropout": 0.1}, "no option 'dropout'; its options: shortcut"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"in_channels": -1}, "in_channels"),
        ({"in_channels": 1, "input_shape": (3, 32, 32)}, "disagrees"),
        ({"input_shape": (32, 32)}, r"\(C, H, W\)"),
        ({"input_shape": (3, 0, 32)}, "positive"),
        ({"shortcut": "C"}, "shortcut 'C'.*A, B"),
    ],
)
def test_bad_arguments_raise_model_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        create("resnet20", **kwargs)


def test_bad_options_of_other_models() -> None:
    with pytest.raises(ModelError, match="dropout"):
        create("mobilenet_v2", dropout=1.0)
    with pytest.raises(ModelError, match="its options: none"):
        create("lenet5", dropout=0.5)
    with pytest.raises(ModelError, match="needs inputs of at least 16x16"):
        create("lenet5", input_shape=(1, 12, 12))
    with pytest.raises(ModelError, match="needs inputs of at least 32x32"):
        create("vgg16_cifar", input_shape=(3, 16, 16))
    with pytest.raises(ModelError, match="hidden"):
        create("mlp_digits", hidden=(32, 0))


def test_dropout_option_reaches_the_classifier() -> None:
    model = create("vgg16_cifar", dropout=0.3)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    model = create("mobilenet_v2", dropout=0.0)
    assert model.classifier[0].p == 0.0


def test_in_channels_and_input_shape() -> None:
    mlp = create("lenet300", input_shape=(1, 8, 8))
    assert mlp.fc1.in_features == 64
    assert create("lenet300").fc1.in_features == 784
    assert create("lenet5").fc1.in_features == 800  # Caffe LeNet-5 on 28x28: 50*4*4
    assert create("lenet5", input_shape=(3, 32, 32)).fc1.in_features == 50 * 5 * 5
    net = create("resnet20", in_channels=1)
    assert net.conv1.in_channels == 1
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert create("resnet18", in_channels=1, num_classes=10).conv1.weight.shape == (64, 1, 7, 7)
    assert create("vgg16_cifar", input_shape=(1, 64, 64)).classifier[1].in_features == 512 * 4


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(["lenet300", "mlp_digits", "convnet_digits", "lenet5"]),
    channels=st.integers(1, 3),
    height=st.integers(16, 30),
    width=st.integers(16, 30),
    classes=st.integers(1, 12),
    batch=st.integers(1, 3),
)
def test_small_models_follow_their_input(
    name: str, channels: int, height: int, width: int, classes: int, batch: int
) -> None:
    model = create(name, num_classes=classes, input_shape=(channels, height, width))
    out = model(torch.zeros(batch, channels, height, width))
    assert out.shape == (batch, classes)
    first = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    if isinstance(first, nn.Linear):
        assert first.in_features == channels * height * width
    else:
        assert first.in_channels == channels


def test_generator_fixes_the_initialization() -> None:
    torch.manual_seed(123)
    a = create("resnet20", generator=torch.Generator().manual_seed(5)).state_dict()
    torch.manual_seed(456)  # the global RNG plays no part
    b = create("resnet20", generator=torch.Generator().manual_seed(5)).state_dict()
    c = create("resnet20", generator=torch.Generator().manual_seed(6)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_standard_initialization() -> None:
    model = create("resnet56", generator=torch.Generator().manual_seed(0))
    conv = model.layer3[0].conv2.weight  # 64x64x3x3: Kaiming normal, fan_out = 64*9
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    assert conv.mean().item() == pytest.approx(0.0, abs=0.01)
    bn = model.layer2[1].bn1
    assert torch.equal(bn.weight, torch.ones(32)) and torch.equal(bn.bias, torch.zeros(32))
    fc = create("vgg16_cifar", generator=torch.Generator().manual_seed(0)).classifier[1]
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.equal(fc.bias, torch.zeros(512))


def test_option_a_shortcut_has_no_parameters() -> None:
    block = create("resnet20").layer2[0]
    assert block.downsample is None
    assert sum(p.numel() for p in block.shortcut.parameters()) == 0
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    y = block.shortcut(x)
    assert y.shape == (2, 32, 2, 2)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.equal(y[:, 16:], torch.zeros(2, 16, 2, 2))


def test_register_model_adds_a_user_model() -> None:
    @register_model("test_tiny_linear", input_shape=(4,), num_classes=3, family="test")
    def tiny(
        num_classes: int, input_shape: tuple[int, ...], generator: object = None, *, bias: bool = True
    ) -> nn.Module:
        """A single linear layer, for the registry test."""
        model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes, bias=bias))
        model.shrinkbench_classifier = "1"
        return model

    try:
        model = create("test_tiny_linear", bias=False)
        assert model[1].weight.shape == (3, 4) and model[1].bias is None
        assert model_info("test_tiny_linear").description == "A single linear layer, for the registry test."
        assert "test_tiny_linear" in list_models("test_*")
    finally:
        MODELS._items.pop("test_tiny_linear")


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg16", "vgg16_cifar", "mobilenet_v2", "lenet5",
                                  "resnet20", "convnet_digits"])
def test_min_size_is_the_smallest_input_the_forward_pass_keeps_spatial(name) -> None:
    """At min_size every feature map is at least 1x1; half of it is refused with one line that
    names the models that do fit."""
    size = model_info(name).min_size
    channels = model_info(name).default_input_shape[0]
    model = create(name, num_classes=10, input_shape=(channels, size, size)).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, channels, size, size)).shape == (1, 10)
    if size > 1:
        small = max(size // 2, 1)
        with pytest.raises(ModelError, match=rf"needs inputs of at least {size}x{size}, .*models for inputs "
                                              rf"this small: .*lenet300"):
            create(name, num_classes=10, input_shape=(channels, small, small))
