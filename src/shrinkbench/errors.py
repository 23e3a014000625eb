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


class DataNotFound(DataError):
    """A data set's files are not where they were looked for. The message ends with what to do,
    in Python terms; `hint("config")` says the same in config terms (`--set data.download=true`),
    for the commands that read configs."""

    def __init__(self, what: str, *, folder: str, downloadable: bool, root_option: bool = False):
        self.what, self.folder, self.downloadable = what, folder, downloadable
        self.root_option = root_option
        super().__init__(f"{what}; {self.hint('python')}")

    def hint(self, terms: str = "python") -> str:
        """What to do about it, as keyword arguments (`python`) or config overrides (`config`)."""
        config = terms == "config"
        download = "`--set data.download=true`" if config else "`download=True`"
        data_dir = "`--set data.data_dir=DIR`" if config else "`data_dir=DIR`"
        where = f"{data_dir} (or SHRINKBENCH_DATA) naming the folder that holds {self.folder}/"
        if self.root_option:
            where += (", or " + ("`--set data.options.root=DIR`" if config else "`root=DIR`")
                      + f" naming {self.folder}/ itself")
        if self.downloadable:
            return f"fetch it with {download}, or pass {where}"
        return f"it cannot be downloaded automatically: put it there, or pass {where}"


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
