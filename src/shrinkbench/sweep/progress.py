"""Sweep progress: one overall bar (counts, ETA) on stderr and one line per finished job."""

from __future__ import annotations

import sys
from typing import Any, Mapping, TextIO

from tqdm.auto import tqdm

from ..common import get_dotted
from ..experiment.config import Config, config_to_dict
from ..experiment.schedules import schedule_label
from ..experiment.validate import strategy_shown
from .jobs import Job, Outcome




def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def describe(job: Job | Mapping[str, Any]) -> str:
    """A short human description of a job (or a store row): what it trains or prunes, and the seed."""
    if isinstance(job, Job):
        kind, cfg = job.kind, job.config
        if isinstance(cfg, Config):
            cfg = config_to_dict(cfg)
    else:
        kind, cfg = job["kind"], job["config"] or {}
    data, model, seed = (get_dotted(cfg, key) for key in ("data.name", "model.name", "seed"))
    where = f"{data}/{model}" if data and model else ""
    if kind == "dense":
        return " ".join(p for p in ("dense", where, f"seed {seed}" if seed is not None else "") if p)
    strategy, compression = get_dotted(cfg, "pruning.strategy"), get_dotted(cfg, "pruning.compression")
    shown = strategy_shown(strategy) if isinstance(strategy, str) else ""
    target = get_dotted(cfg, "pruning.target")
    aim = f" ({target})" if isinstance(target, str) and target != "compression" else ""
    allocation = get_dotted(cfg, "pruning.allocation")
    shown += f" ({allocation})" if isinstance(allocation, str) and allocation else ""
    parts = [where, shown, f"x{_number(compression)}{aim}" if compression is not None else ""]
    schedule = get_dotted(cfg, "schedule")
    label = schedule_label(schedule, compression == 1) if isinstance(schedule, Mapping) else "one-shot"
    if label != "one-shot":
        parts.append(f"[{label}]")
    if seed is not None:
        parts.append(f"seed {seed}")
    calibration = get_dotted(cfg, "pruning.calibration_seed")
    if calibration is not None:
        parts.append(f"calibration seed {calibration}")
    return " ".join(p for p in parts if p)


def outcome_line(job: Job, outcome: Outcome) -> str:
    """The line printed when a job finishes."""
    word = "done" if outcome.ok else "INTERRUPTED" if outcome.interrupted else "FAILED"
    head = f"{word} {job.id} {describe(job)}"
    if not outcome.ok:
        return f"{head} ({outcome.seconds:.1f} s): {outcome.error}"
    acc = outcome.metrics.get("post_test_acc1", outcome.metrics.get("dense_test_acc1"))
    acc_text = f" test top-1 {100 * acc:.2f}%" if isinstance(acc, (int, float)) else ""
    ppl = outcome.metrics.get("post_test_ppl", outcome.metrics.get("dense_test_ppl"))
    if not acc_text and isinstance(ppl, (int, float)):
        acc_text = f" test perplexity {ppl:.3f}"
    theoretical, measured = outcome.metrics.get("speedup"), outcome.metrics.get("speedup_measured")
    if job.kind != "dense" and isinstance(theoretical, (int, float)) and isinstance(measured, (int, float)):
        acc_text += f", speedup {theoretical:.2f}x (measured {measured:.2f}x)"
    return f"{head}{acc_text} ({outcome.seconds:.1f} s)"


class Progress:
    """The overall bar (on a terminal, unless `bar` is False) and the per-job lines (unless `lines` is False)."""

    def __init__(self, total: int, *, bar: bool = True, lines: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.lines = lines
        self.failed = 0
        self._tqdm = tqdm
        # bar=True shows it on a terminal only (None: tqdm's own check); the lines go everywhere
        self.bar = tqdm(total=total, desc="sweep", unit="job", file=self.stream, disable=None if bar else True,
                        dynamic_ncols=True)
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"failed {self.failed}", refresh=False)

    def finished(self, job: Job, outcome: Outcome) -> None:
        """Count a finished job and print its line."""
        if not outcome.ok:
            self.failed += 1
        if self.lines:
            self._tqdm.write(outcome_line(job, outcome), file=self.stream)
        self._postfix()
        self.bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()
