"""Exception types: everything a user can get wrong raises a ShrinkBenchError subclass."""

from __future__ import annotations


class ShrinkBenchError(Exception):
    """Base class of every error caused by user input (config, path, data, checkpoint, request)."""


class ConfigError(ShrinkBenchError):
    """A config field, command-line option or override is invalid."""


class UnknownNameError(ConfigError):
    """A name (strategy, model, data set, executor...) is not registered."""


class DataError(ShrinkBenchError):
    """A data set is missing, corrupt, truncated or of the wrong format."""


class DownloadError(DataError):
    """A download failed (unreachable server, bad checksum)."""


class ModelError(ShrinkBenchError):
    """A model cannot be built, or weights do not fit it."""


class CheckpointError(ShrinkBenchError):
    """A checkpoint file is missing, corrupt or does not match the model."""


class PruningError(ShrinkBenchError):
    """A pruning request is invalid (bad mask, no prunable parameters)."""


class CompressionError(PruningError):
    """A requested compression is below 1 or cannot be reached."""


class StoreError(ShrinkBenchError):
    """The results store or a run folder is unusable."""


class SweepError(ShrinkBenchError):
    """A sweep spec is invalid."""


class RunError(ShrinkBenchError):
    """A run failed or was interrupted (its traceback is in the results store)."""

    exit_code = 1
