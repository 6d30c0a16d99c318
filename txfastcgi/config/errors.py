# -*- test-case-name: tests.test_config_lexer -*-
"""
The one error type of the configuration reader.

Every problem in a configuration file, whatever layer finds it, ends up as
one L{ConfigError} whose C{str()} is a single line::

    httpd.conf:14: AppClass: -processes must be an integer between 1 and 50 (got 'many')

that is C{FILE:LINE: DIRECTIVE: WHAT IS WRONG (got VALUE)}; the
C{(got VALUE)} part is left out when there is no offending value to show
(an unclosed section, a directive with too few arguments).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ConfigError", "NO_VALUE", "Source", "formatValue"]


class Source(NamedTuple):
    """
    Where a configuration statement was written.

    @ivar filename: the file, as it was opened (the main file as given by
        the user, included files as resolved).
    @ivar line: the 1-based number of the statement's first physical line.
    """

    filename: str
    line: int

    def __str__(self) -> str:
        """
        @return: C{FILE:LINE}.
        """
        return f"{self.filename}:{self.line}"


class _NoValue:
    """
    The type of L{NO_VALUE}.
    """

    def __repr__(self) -> str:
        """
        @return: C{NO_VALUE}.
        """
        return "NO_VALUE"


NO_VALUE = _NoValue()
"""Passed as a L{ConfigError}'s value when there is no offending value."""


def formatValue(value: object) -> str:
    """
    Render an offending value the way error messages show it: strings and
    numbers with C{repr} (C{'many'}, C{51}), a sequence of arguments as
    one quoted string of the arguments joined by spaces.

    @param value: the value.
    @return: its rendering.
    """
    if isinstance(value, (list, tuple)):
        return repr(" ".join(str(v) for v in value))
    return repr(value)


class ConfigError(Exception):
    """
    A configuration file cannot be used.  Startup stops with C{str()} of
    this error, one line, on stderr.

    @ivar filename: the file holding the bad statement.
    @ivar line: the statement's line number (its first physical line).
    @ivar directive: the directive or section as the user should look for
        it (C{AppClass}, C{<Location>}).
    @ivar message: what is wrong, starting lower-case, without a period.
    @ivar value: the offending value, or L{NO_VALUE}.
    """

    def __init__(
        self,
        filename: str,
        line: int,
        directive: str,
        message: str,
        value: object = NO_VALUE,
    ) -> None:
        """
        @param filename: the file holding the bad statement.
        @param line: the statement's line number.
        @param directive: the directive or section name.
        @param message: what is wrong.
        @param value: the offending value, if there is one.
        """
        self.filename = filename
        self.line = line
        self.directive = directive
        self.message = message
        self.value = value
        super().__init__(str(self))

    @classmethod
    def at(
        cls, source: Source, directive: str, message: str, value: object = NO_VALUE
    ) -> ConfigError:
        """
        Build an error for a statement written at C{source}.

        @param source: where the statement was written.
        @param directive: the directive or section name.
        @param message: what is wrong.
        @param value: the offending value, if there is one.
        @return: the error.
        """
        return cls(source.filename, source.line, directive, message, value)

    @property
    def source(self) -> Source:
        """
        Where the bad statement was written.
        """
        return Source(self.filename, self.line)

    def __str__(self) -> str:
        """
        @return: the one-line message,
            C{FILE:LINE: DIRECTIVE: MESSAGE (got VALUE)}.
        """
        text = f"{self.filename}:{self.line}: {self.directive}: {self.message}"
        if self.value is not NO_VALUE:
            text += f" (got {formatValue(self.value)})"
        # One line, whatever the value holds.
        return text.replace("\n", "\\n").replace("\r", "\\r")

    def __repr__(self) -> str:
        """
        @return: a representation showing every field.
        """
        return (
            f"ConfigError({self.filename!r}, {self.line!r}, {self.directive!r}, "
            f"{self.message!r}, {self.value!r})"
        )
