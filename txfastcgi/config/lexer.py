# -*- test-case-name: tests.test_config_lexer -*-
"""
The syntax of Apache's httpd.conf, one file at a time: physical lines to
logical lines, a logical line to a directive name and its arguments, and
the lines of a file to a tree of directives and sections.

Rules (Apache's C{ap_cfg_getline} and C{ap_getword_conf})
=========================================================

  - Lines end at C{\\n} (a C{\\r} before it is dropped); no other
    character ends a line.
  - A physical line whose last non-blank character is a backslash is
    continued by the next one: the backslash (and the blanks after it) is
    removed and the next line is appended as it is, leading blanks
    included.  A statement's line number is that of its first physical
    line.
  - Leading and trailing blanks of a logical line are ignored; a line that
    is then empty, or starts with C{#}, is skipped.  C{#} elsewhere is not a
    comment (Apache has no trailing comments: C{Port 80 # web} is three
    arguments).
  - Arguments are separated by blanks.  An argument starting with C{"} or
    C{'} extends to the matching quote; inside it C{\\"} (or C{\\'}) and
    C{\\\\} stand for the quote and the backslash, and other backslashes
    are kept.  Outside quotes C{\\\\} stands for one backslash.  Unlike
    Apache, an unterminated quote is an error rather than running silently
    to the end of the line.
  - C{<Name args>} opens a section and C{</Name>} closes it, in the same
    file; names compare case-insensitively.  Everything else is a directive:
    its name is the first argument.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from txfastcgi.config.errors import NO_VALUE, ConfigError, Source

__all__ = [
    "MAX_SECTION_DEPTH",
    "Directive",
    "LogicalLine",
    "Node",
    "Section",
    "logicalLines",
    "parseText",
    "quoteArgument",
    "splitArguments",
]

_BLANKS = " \t\f\v\r"

MAX_SECTION_DEPTH = 32
"""How deeply sections may nest in one file."""


@dataclass(frozen=True)
class LogicalLine:
    """
    One statement's text, continuation lines joined.

    @ivar source: where it starts.
    @ivar text: the text, without leading and trailing blanks.
    """

    source: Source
    text: str


@dataclass(frozen=True)
class Directive:
    """
    A directive statement.

    @ivar name: the name as written (compare it case-insensitively).
    @ivar args: the arguments, quotes and escapes resolved.
    @ivar source: where it was written.
    """

    name: str
    args: tuple[str, ...]
    source: Source


@dataclass(frozen=True)
class Section:
    """
    A section, C{<Name args>} ... C{</Name>}.

    @ivar name: the name as written, without the angle bracket.
    @ivar args: the arguments of the opening line.
    @ivar source: where the opening line was written.
    @ivar children: the statements inside, in order.
    """

    name: str
    args: tuple[str, ...]
    source: Source
    children: tuple[Node, ...]

    @property
    def display(self) -> str:
        """
        The section's name as error messages show it, C{<Name>}.
        """
        return f"<{self.name}>"


Node = Directive | Section
"""A statement of a configuration tree."""


def logicalLines(text: str, filename: str) -> Iterator[LogicalLine]:
    """
    Split a file's text into logical lines, skipping blank and comment lines.

    @param text: the whole file.
    @param filename: its name, for the sources.
    @return: the logical lines in order.
    """
    pending: list[str] = []
    start = 0
    physicals = text.split("\n")
    if physicals[-1] == "":
        physicals.pop()
    for number, physical in enumerate(physicals, start=1):
        physical = physical.removesuffix("\r")
        if not pending:
            start = number
        stripped = physical.rstrip(_BLANKS)
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(physical)
        yield from _emit(pending, start, filename)
        pending = []
    if pending:
        yield from _emit(pending, start, filename)


def _emit(parts: list[str], start: int, filename: str) -> Iterator[LogicalLine]:
    """
    Join the physical lines of one statement and yield it unless it is blank
    or a comment.

    @param parts: the physical lines, continuation backslashes removed.
    @param start: the number of the first one.
    @param filename: the file's name.
    @return: zero or one logical line.
    """
    joined = "".join(parts).strip(_BLANKS)
    if joined and not joined.startswith("#"):
        yield LogicalLine(Source(filename, start), joined)


class _QuoteError(ValueError):
    """
    An argument's quote is not closed.
    """


def _unescape(text: str, quote: str | None) -> str:
    """
    Resolve the backslash escapes of one argument as Apache's
    C{substring_conf} does.

    @param text: the argument without its quotes.
    @param quote: the quote character that delimited it, if any.
    @return: the argument's value.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in ("\\", quote):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def splitArguments(text: str) -> list[str]:
    """
    Split a statement's text into arguments as Apache's C{ap_getword_conf}
    does (see the module docstring).

    @param text: the text.
    @return: the arguments.
    @raise ValueError: if a quote is not closed; the message says which.
    """
    args: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _BLANKS:
            i += 1
        if i >= n:
            return args
        quote = text[i]
        if quote in "\"'":
            end = i + 1
            while end < n and text[end] != quote:
                if text[end] == "\\" and end + 1 < n and text[end + 1] in (quote, "\\"):
                    end += 2
                else:
                    end += 1
            if end >= n:
                raise _QuoteError(f"unterminated {quote} quote")
            args.append(_unescape(text[i + 1 : end], quote))
            i = end + 1
        else:
            end = i
            while end < n and text[end] not in _BLANKS:
                end += 1
            args.append(_unescape(text[i:end], None))
            i = end


def quoteArgument(value: str) -> str:
    """
    Write a value so that L{splitArguments} reads it back as one argument:
    as it is if it needs no quoting, else in double quotes with backslashes
    and double quotes escaped.

    @param value: the value; it cannot contain line breaks.
    @return: the text to write.
    @raise ValueError: if C{value} contains a line break or NUL.
    """
    if any(c in value for c in "\n\r\0"):
        raise ValueError(f"a configuration argument cannot contain {value!r}")
    if value and not any(c in value for c in _BLANKS + "\"'\\#"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split(line: LogicalLine, directive: str, text: str) -> tuple[str, ...]:
    """
    L{splitArguments}, turning its error into a L{ConfigError}.

    @param line: the statement, for the source.
    @param directive: the directive or section name, for the message.
    @param text: the text to split.
    @return: the arguments.
    @raise ConfigError: if a quote is not closed.
    """
    try:
        return tuple(splitArguments(text))
    except _QuoteError as e:
        raise ConfigError.at(line.source, directive, str(e), line.text) from None


def parseText(text: str, filename: str) -> list[Node]:
    """
    Parse one file into a tree of directives and sections.  Sections must be
    closed in the file that opens them.  Nothing is interpreted: C{Include}
    and C{<IfModule>} are ordinary statements here.

    @param text: the whole file.
    @param filename: its name, for sources and messages.
    @return: the top-level statements in order.
    @raise ConfigError: for an unterminated quote, a malformed section line,
        a closing line that does not match the open section, or a section
        left open at the end of the file.
    """
    # Each frame: (opening line's parsed name/args/source, children so far).
    stack: list[tuple[str, tuple[str, ...], Source, list[Node]]] = []
    top: list[Node] = []

    def children() -> list[Node]:
        return stack[-1][3] if stack else top

    for line in logicalLines(text, filename):
        body = line.text
        if "\0" in body:
            raise ConfigError.at(
                line.source, body.split()[0], "the line contains a NUL character", body
            )
        if body.startswith("</"):
            if not body.endswith(">"):
                raise ConfigError.at(
                    line.source, body.split()[0], "closing line must end with '>'", body
                )
            name = body[2:-1].strip(_BLANKS)
            if not stack:
                raise ConfigError.at(
                    line.source, f"</{name}>", "closes a section that was never opened"
                )
            openName, openArgs, openSource, kids = stack.pop()
            if name.lower() != openName.lower():
                raise ConfigError.at(
                    line.source,
                    f"</{name}>",
                    f"does not close <{openName}> opened at line {openSource.line}",
                )
            children().append(Section(openName, openArgs, openSource, tuple(kids)))
        elif body.startswith("<"):
            head = body.split(None, 1)[0].rstrip(">")
            display = f"{head}>"
            if not body.endswith(">"):
                raise ConfigError.at(
                    line.source, display, "section line must end with '>'", body
                )
            name = head[1:]
            if not name:
                raise ConfigError.at(line.source, "<>", "section without a name", body)
            args = _split(line, display, body[1 + len(name) : -1])
            if len(stack) >= MAX_SECTION_DEPTH:
                raise ConfigError.at(
                    line.source,
                    display,
                    f"sections nest deeper than {MAX_SECTION_DEPTH}",
                )
            stack.append((name, args, line.source, []))
        else:
            words = _split(line, body.split(None, 1)[0], body)
            children().append(Directive(words[0], words[1:], line.source))
    if stack:
        # The outermost one: the earliest line that is wrong.
        openName, openArgs, openSource, _ = stack[0]
        raise ConfigError.at(
            openSource,
            f"<{openName}>",
            f"section is not closed: </{openName}> missing before the end of the file",
            openArgs if openArgs else NO_VALUE,
        )
    return top
