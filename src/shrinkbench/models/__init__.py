"""The model zoo: `create(name, num_classes=..., in_channels=...)`, `list_models`, `load_weights`.

Any `nn.Module` works with shrinkbench; the zoo is a convenience. Every zoo model names its final
classifier in `model.shrinkbench_classifier`, which pruning leaves alone by default.
"""

from __future__ import annotations

from . import cifar_resnet, convnets, gpt, hf, mlp, mobilenet, resnet, vgg, vit  # noqa: F401  (registration)
from .gpt import example_input, hf_causal_lm, takes_tokens
from .weights import check_state_dict, file_sha256, load_weights
from .zoo import MODELS, ModelEntry, ModelInfo, create, list_models, model_info, register_model

__all__ = [
    "MODELS",
    "ModelEntry",
    "ModelInfo",
    "check_state_dict",
    "create",
    "example_input",
    "file_sha256",
    "hf_causal_lm",
    "list_models",
    "load_weights",
    "model_info",
    "register_model",
    "takes_tokens",
]
