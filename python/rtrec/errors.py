"""Exceptions raised by rtrec.

Every expected failure is an :class:`RtrecError`. The command line prints its message
on one line (plus :attr:`RtrecError.hint` when set) and exits 1; the HTTP API turns it
into a 4xx response. The native extension raises the same classes.
"""

from __future__ import annotations


class RtrecError(Exception):
    """Base class of every error rtrec raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class InvalidInputError(RtrecError, ValueError):
    """Input that cannot be used as given: the message names the field and the reason."""


class NotFoundError(RtrecError, KeyError):
    """A request names something rtrec does not know (an item id): HTTP 404."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(RtrecError):
    """A configuration file, environment variable or flag holds an invalid value."""


class CorruptDataError(RtrecError):
    """Stored bytes (a checkpoint, a replay buffer blob) are damaged or of a foreign format."""


class ModelNotFoundError(RtrecError):
    """A configured language model is not available locally."""


class StorageError(RtrecError):
    """The event log cannot be opened or written."""


class Overloaded(RtrecError):
    """The learner is behind: new events are refused for now (HTTP 429) so that freshness holds."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s
