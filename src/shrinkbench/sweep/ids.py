"""Run and dense ids of sweep points, hashed from their canonical plain configs.

`experiment.config.run_id(cfg)` re-validates the whole config tree (milliseconds per run); a sweep
already has each point as plain data, so it hashes that with `experiment.ids.ids_from_plain`. Each
expansion re-derives the ids of a sample of points through full validation (`verify_ids`), so a
point whose plain data is not canonical cannot go unnoticed: on a mismatch the expansion falls back
to validating every run.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

SAMPLES = 8  # points per expansion whose ids are recomputed by validating their configs


def exact_ids(plain: dict) -> tuple[str, str | None]:
    """(run id, dense id or None) by the experiment's own functions (validating the config)."""
    from ..experiment.config import config_from_dict, dense_id, run_id

    cfg = config_from_dict(plain)
    return run_id(cfg), dense_id(cfg) if cfg.dense.source == "train" else None


def verify_ids(runs: list, samples: int = SAMPLES) -> None:
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
