"""Exceptions raised while loading configuration.

A configuration mistake should be fixable from the message alone, so every
error carries the file, section, option and offending value, plus a "did you
mean" suggestion when the option name looks like a typo.
"""

from __future__ import annotations

# The longest part of a value an error message quotes: a huge value must not become a huge log line or reply.
QUOTED_VALUE_LIMIT = 200


def shorten(text: str, limit: int = QUOTED_VALUE_LIMIT) -> str:
    """`text` cut to `limit` characters, with its full length said, for names an error message shows unquoted."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def quote_value(value: object, limit: int = QUOTED_VALUE_LIMIT) -> str:
    """`repr(value)` for an error message, cut to about `limit` characters with the full length said.

    Every message that quotes a value a user, a client or a file supplied goes through here.
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return shorten(repr(value), limit)


class ConfigError(Exception):
    """A configuration file is unreadable, malformed or holds an invalid value."""

    def __init__(self, reason: str, *, file: str | None = None, section: str | None = None, option: str | None = None,
                 value: str | None = None, suggestion: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.file = file
        self.section = section
        self.option = option
        self.value = value
        self.suggestion = suggestion
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}:")
        if self.section is not None:
            parts.append(f"[{shorten(self.section)}]")
        if self.option is not None and self.value is not None:
            parts.append(f"{shorten(self.option)} = {quote_value(self.value)}: {self.reason}")
        else:
            parts.append(self.reason)
        text = " ".join(parts)
        if self.suggestion:
            text += f" (did you mean {self.suggestion!r}?)"
        return text


class InvalidValue(ValueError):
    """A converter rejected a value.

    ``str()`` is a complete sentence naming the value (``expected an integer,
    got 'abc'``), while ``reason`` is the short form that ``ConfigError``
    prints after ``option = 'value':`` so the value is not repeated.
    """

    def __init__(self, reason: str, value: object, message: str | None = None) -> None:
        self.reason = reason
        self.value = value
        super().__init__(message or f"{reason}, got {quote_value(value)}")
