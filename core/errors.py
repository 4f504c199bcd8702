"""Exceptions a user can cause.

Anything deriving from :class:`SegsuiteError` is reported by the CLI as one line on
stderr with exit code 2 (no traceback unless ``--debug``). Other exceptions are bugs and
keep their traceback.
"""

from __future__ import annotations


class SegsuiteError(Exception):
    """An error caused by input, configuration or environment, not by a bug."""


class ClassMapError(SegsuiteError, ValueError):
    """A class map is inconsistent (duplicate ids or names, ids out of range, bad colours)."""


class DomainError(SegsuiteError, ValueError):
    """A plugin described a domain that cannot be used."""


class UnknownNameError(SegsuiteError, KeyError):
    """A domain, model, format or class name that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class InputFileError(SegsuiteError, OSError):
    """A file that is missing, unreadable or not in the expected format."""


class NotImplementedYet(SegsuiteError):
    """A command whose skeleton exists but whose implementation has not landed."""

    exit_code = 3
