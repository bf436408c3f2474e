"""Errors that dlcamp reports to people: one readable message, naming the fix."""


class DlcampError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits non-zero."""


class DatasetNotFound(DlcampError):
    """A dataset's files are not on this machine."""


class DatasetCorrupt(DlcampError):
    """A dataset file exists but its content is not what it should be."""


class UnknownName(DlcampError, KeyError):
    """An unknown model, dataset or option name."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0])


class BadArgument(DlcampError, ValueError):
    """A value that cannot work (e.g. images too small for a model)."""


class CheckpointError(DlcampError):
    """A checkpoint is missing, unreadable, or belongs to another model."""


class RunDirExists(DlcampError):
    """Refusing to overwrite an existing run directory."""
