"""Run and dense ids hashed straight from canonical plain configs, for fast expansion of big sweeps.

`experiment.config.run_id(cfg)` re-validates the whole config tree (milliseconds per run); a sweep
already has each point as canonical plain data, so it hashes that the same way instead. The two are
checked against each other on a sample of points of every expansion (`verify_ids`), and the tests
compare them on random configs, so a change to the experiment's hashing cannot go unnoticed: on a
mismatch the expansion falls back to the experiment's own functions for every run.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import replace

DENSE_TREE_KEYS = ("data", "model", "dense", "seed", "precision", "channels_last")
SAMPLES = 8  # points per expansion whose ids are recomputed by the experiment's functions


class IdHasher:
    """Computes run and dense ids of canonical plain configs (as `config_to_dict` gives them)."""

    def __init__(self) -> None:
        from ..experiment.config import UNHASHED
        from ..experiment.ids import ID_LENGTH

        self.unhashed = [key.split(".") for key in UNHASHED]
        self.length = ID_LENGTH

    def hashed(self, plain: dict) -> dict:
        """The tree that is hashed: unhashed fields dropped, a dense checkpoint by its content."""
        from ..experiment.ids import file_sha256

        tree = dict(plain)
        for *parents, leaf in self.unhashed:
            node = tree
            for key in parents:
                node[key] = dict(node[key])
                node = node[key]
            node.pop(leaf, None)
        if tree["dense"]["source"] != "train":
            tree["dense"] = {"source": "sha256:" + file_sha256(tree["dense"]["source"])}
        return tree

    def digest(self, tree: dict) -> str:
        text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[: self.length]

    def run_id(self, plain: dict) -> str:
        """The id of the run with this config."""
        return self.digest(self.hashed(plain))

    def dense_id(self, plain: dict) -> str:
        """The id of the dense model this config starts from."""
        tree = self.hashed(plain)
        return self.digest({key: tree[key] for key in DENSE_TREE_KEYS})


def exact_ids(plain: dict) -> tuple[str, str | None]:
    """(run id, dense id or None) by the experiment's own functions (validating the config)."""
    from ..experiment.config import config_from_dict, dense_id, run_id

    cfg = config_from_dict(plain)
    return run_id(cfg), dense_id(cfg) if cfg.dense.source == "train" else None


def verify_ids(runs: list, hasher: IdHasher, samples: int = SAMPLES) -> None:
    """Check the ids of a few runs (first, last, spread between) against `exact_ids`, in place;
    on any mismatch recompute every run's ids exactly (slow but right) and warn."""
    if not runs:
        return
    picks = sorted({round(i * (len(runs) - 1) / max(1, samples - 1)) for i in range(samples)})
    if all(exact_ids(runs[i].config) == (runs[i].run_id, runs[i].dense_id) for i in picks):
        return
    warnings.warn("sweep ids hashed from plain configs differ from experiment.run_id; "
                  "expanding with the experiment's functions (slow)", RuntimeWarning, stacklevel=3)
    _recompute(runs)


def _recompute(runs: list) -> None:
    for i, run in enumerate(runs):
        rid, did = exact_ids(run.config)
        runs[i] = replace(run, run_id=rid, dense_id=did)
