"""The one exception of the configuration package: a problem the user can fix."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A configuration problem the user can fix; ``str(err)`` is the complete message.

    ``source`` (file name), ``field`` (dotted field path) and ``line`` are set
    when known, for callers that want to point at the spot themselves.
    """

    def __init__(
        self, message: str, *, source: str | None = None, field: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.source = source
        self.field = field
        self.line = line
