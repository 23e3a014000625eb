"""Masks, prunable-parameter selection, importance scores, allocation (N:M included), strategies
(Wanda and SparseGPT included) and prune()."""

from .allocation import ALLOCATIONS
from .api import PruneResult, nm_compression, prune
from .masks import (
    Hold,
    apply_masks,
    attach_mask,
    densities,
    get_mask,
    hold,
    load_state_dict,
    masked_parameters,
    remove_masks,
)
from .prunable import classifier_name, prunable_parameters
from .scores import ScoreContext
from .strategies import (
    STRATEGIES,
    Strategy,
    list_strategies,
    register_strategy,
    strategy_info,
)

__all__ = [
    "ALLOCATIONS",
    "Hold",
    "STRATEGIES",
    "PruneResult",
    "ScoreContext",
    "Strategy",
    "apply_masks",
    "attach_mask",
    "classifier_name",
    "densities",
    "get_mask",
    "hold",
    "list_strategies",
    "load_state_dict",
    "masked_parameters",
    "nm_compression",
    "prunable_parameters",
    "prune",
    "register_strategy",
    "remove_masks",
    "strategy_info",
]
