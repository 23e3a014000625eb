"""The tiny digits run that the CLI and experiment tests share (well under a second), and a helper
that varies it section by section."""

from __future__ import annotations

import copy
from typing import Any

TINY: dict[str, Any] = {
    "data": {"name": "digits"},
    "model": {"name": "convnet_digits"},
    "dense": {"recipe": {"epochs": 3, "lr": 0.05, "batch_size": 64}},
    "pruning": {"strategy": "GlobalMagWeight", "compression": 4},
    "finetune": {"epochs": 2, "lr": 0.01, "batch_size": 64},
    "device": "cpu",
}


def tiny(**sections: dict[str, Any]) -> dict[str, Any]:
    """A copy of TINY with each given section's keys replaced, e.g. `tiny(finetune={"epochs": 1})`;
    `dense` takes its recipe's keys (`tiny(dense={"epochs": 1})`)."""
    tree = copy.deepcopy(TINY)
    for name, changes in sections.items():
        target = tree["dense"]["recipe"] if name == "dense" else tree.setdefault(name, {})
        target.update(changes)
    return tree
