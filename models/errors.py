"""Errors the toolkit raises for bad input. Each message is one line: the problem, then the fix.

Command-line entry points catch :class:`ClipDeployError` and print ``error: <message>`` with a
non-zero exit instead of a traceback.
"""


class ClipDeployError(Exception):
    """Base class: an input problem the user can fix."""
    exit_code = 2


class UnknownModelError(ClipDeployError, KeyError):
    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(ClipDeployError):
    """Missing, unreadable, unsafe or corrupt checkpoint file."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint whose keys or shapes do not fit the requested model."""

    def __init__(self, message, missing=(), unexpected=(), mismatched=(), looks_like=None):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        self.looks_like = looks_like


class DownloadError(ClipDeployError):
    """Network failure, HTTP error or checksum mismatch while fetching weights."""
