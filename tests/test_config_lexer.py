"""
Tests for L{txfastcgi.config.lexer} and L{txfastcgi.config.errors}: logical
lines, Apache's argument splitting, sections, and the one-line error format.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txfastcgi.config.errors import NO_VALUE, ConfigError, Source, formatValue
from txfastcgi.config.lexer import (
    Directive,
    LogicalLine,
    Section,
    MAX_SECTION_DEPTH,
    logicalLines,
    parseText,
    quoteArgument,
    splitArguments,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Port 80\n", [(1, "Port 80")]),
        ("  Port 80  \n", [(1, "Port 80")]),
        ("\n\n# comment\n   # indented comment\nPort 80", [(5, "Port 80")]),
        ("Port \\\n80\n", [(1, "Port 80")]),
        ("Port \\   \n  80\nX y\n", [(1, "Port   80"), (3, "X y")]),
        ("A 1 \\\n2 \\\n3\nB", [(1, "A 1 2 3"), (4, "B")]),
        ("Port 80 # not a comment\n", [(1, "Port 80 # not a comment")]),
        ("# comment \\\nPort 80\nB\n", [(3, "B")]),
        ("A\\", [(1, "A")]),
        ("A\r\nB\r\n", [(1, "A"), (2, "B")]),
        ("A\fB\vC\x85D\u2028E\nF", [(1, "A\fB\vC\x85D\u2028E"), (2, "F")]),
        ("A\n\n", [(1, "A")]),
        ("", []),
    ],
)
def test_logicalLines(text: str, expected: list[tuple[int, str]]) -> None:
    """
    L{logicalLines} joins continuation lines (numbered by their first
    line), strips blanks, and skips blank lines and whole-line comments; a
    comment ending in a backslash swallows the next line, as in Apache.
    """
    assert list(logicalLines(text, "f.conf")) == [
        LogicalLine(Source("f.conf", n), t) for n, t in expected
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", []),
        ("   ", []),
        ("a b\tc", ["a", "b", "c"]),
        ('"a b" c', ["a b", "c"]),
        ("'a b' c", ["a b", "c"]),
        (r'"a \"b\" c"', ['a "b" c']),
        (r"'it\'s'", ["it's"]),
        (r'"a\\b"', ["a\\b"]),
        (r'"a\nb"', ["a\\nb"]),
        (r"'say \"x\"'", ['say \\"x\\"']),
        (r"a\\b", ["a\\b"]),
        (r"a\b", ["a\\b"]),
        (r"a\"b", ['a\\"b']),
        ('""', [""]),
        ("'' x", ["", "x"]),
        ('"a"b', ["a", "b"]),
        ('x"y z"', ['x"y', 'z"']),
        ('%h %l "%r" %>s', ["%h", "%l", "%r", "%>s"]),
        (r'"%h %l %u %t \"%r\" %>s %b"', ['%h %l %u %t "%r" %>s %b']),
    ],
)
def test_splitArguments(text: str, expected: list[str]) -> None:
    """
    L{splitArguments} splits like Apache's C{ap_getword_conf}: blanks
    separate, quotes group, C{\\\\} and an escaped quote of the same kind
    are unescaped, other backslashes stay.
    """
    assert splitArguments(text) == expected


@pytest.mark.parametrize("text", ['"abc', "a 'b c", r'"a\"'])
def test_splitArgumentsUnterminatedQuote(text: str) -> None:
    """
    An unterminated quote is an error rather than running to the end of
    the line.
    """
    with pytest.raises(ValueError, match="unterminated"):
        splitArguments(text)


def test_parseTextTree() -> None:
    """
    L{parseText} nests sections, keeps names as written and sources of
    every statement, and compares closing names case-insensitively.
    """
    text = (
        "Port 80\n"
        "<Directory /srv>\n"
        "  <Files *.fcg>\n"
        "    SetHandler fastcgi-script\n"
        "  </FILES>\n"
        "</directory>\n"
        "<Location>\n"
        "</Location>\n"
    )
    assert parseText(text, "h.conf") == [
        Directive("Port", ("80",), Source("h.conf", 1)),
        Section(
            "Directory",
            ("/srv",),
            Source("h.conf", 2),
            (
                Section(
                    "Files",
                    ("*.fcg",),
                    Source("h.conf", 3),
                    (
                        Directive(
                            "SetHandler", ("fastcgi-script",), Source("h.conf", 4)
                        ),
                    ),
                ),
            ),
        ),
        Section("Location", (), Source("h.conf", 7), ()),
    ]


def test_parseTextQuotedSectionArgument() -> None:
    """
    Section arguments are split like directive arguments.
    """
    [section] = parseText('<Location "/a b">\n</Location>\n', "h.conf")
    assert isinstance(section, Section)
    assert section.args == ("/a b",)
    assert section.display == "<Location>"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "Port 80\n<Location /x>\nSetHandler a\n",
            "h.conf:2: <Location>: section is not closed: </Location> missing "
            "before the end of the file (got '/x')",
        ),
        (
            "<Location>\n",
            "h.conf:1: <Location>: section is not closed: </Location> missing "
            "before the end of the file",
        ),
        (
            "<Location /x>\n</Directory>\n",
            "h.conf:2: </Directory>: does not close <Location> opened at line 1",
        ),
        (
            "\n</Location>\n",
            "h.conf:2: </Location>: closes a section that was never opened",
        ),
        (
            "<Location /x\n",
            "h.conf:1: <Location>: section line must end with '>' (got '<Location /x')",
        ),
        (
            "</Location\n",
            "h.conf:1: </Location: closing line must end with '>' (got '</Location')",
        ),
        ("< x>\n", "h.conf:1: <>: section without a name (got '< x>')"),
        (
            'SetEnv A "b\n',
            "h.conf:1: SetEnv: unterminated \" quote (got 'SetEnv A \"b')",
        ),
        (
            '<Location "/x>\n</Location>\n',
            "h.conf:1: <Location>: unterminated \" quote (got '<Location \"/x>')",
        ),
        (
            "<Directory /a>\n<Files x>\n</Directory>\n</Files>\n",
            "h.conf:3: </Directory>: does not close <Files> opened at line 2",
        ),
    ],
)
def test_parseTextErrors(text: str, message: str) -> None:
    """
    Every syntax error is one L{ConfigError} with the exact
    C{FILE:LINE: NAME: MESSAGE (got VALUE)} line.
    """
    with pytest.raises(ConfigError) as caught:
        parseText(text, "h.conf")
    assert str(caught.value) == message


def test_configErrorFormat() -> None:
    """
    L{ConfigError} renders the STYLE.md example exactly and keeps its fields.
    """
    error = ConfigError(
        "httpd.conf",
        14,
        "AppClass",
        "-processes must be an integer between 1 and 50",
        "many",
    )
    assert str(error) == (
        "httpd.conf:14: AppClass: -processes must be an integer between 1 and 50 "
        "(got 'many')"
    )
    assert (error.filename, error.line, error.directive) == (
        "httpd.conf",
        14,
        "AppClass",
    )
    assert error.source == Source("httpd.conf", 14)
    assert "ConfigError('httpd.conf', 14" in repr(error)


@pytest.mark.parametrize(
    "value, shown",
    [
        ("many", "'many'"),
        (51, "51"),
        (("80", "81"), "'80 81'"),
        ("a\nb", "'a\\nb'"),
    ],
)
def test_formatValue(value: object, shown: str) -> None:
    """
    Values are shown with C{repr}; argument lists as one quoted string.
    """
    assert formatValue(value) == shown


def test_configErrorWithoutValueIsOneLine() -> None:
    """
    Without a value the C{(got ...)} part is left out, and the message is
    always a single line.
    """
    assert str(ConfigError("a", 1, "X", "bad")) == "a:1: X: bad"
    assert str(ConfigError.at(Source("a", 2), "X", "bad\nthing", NO_VALUE)) == (
        "a:2: X: bad\\nthing"
    )
    assert str(Source("a.conf", 3)) == "a.conf:3"


def test_parseTextRefusesNul() -> None:
    """
    A NUL character anywhere in a statement is an error.
    """
    with pytest.raises(ConfigError) as caught:
        parseText("Port 80\nSetEnv A a\0b\n", "h.conf")
    assert str(caught.value) == (
        "h.conf:2: SetEnv: the line contains a NUL character (got 'SetEnv A a\\x00b')"
    )


def test_parseTextSectionDepthLimit() -> None:
    """
    Sections nest at most L{MAX_SECTION_DEPTH} deep in a file.
    """
    ok = "<IfModule x>\n" * MAX_SECTION_DEPTH + "</IfModule>\n" * MAX_SECTION_DEPTH
    assert len(parseText(ok, "h.conf")) == 1
    deep = "<IfModule x>\n" * (MAX_SECTION_DEPTH + 1)
    with pytest.raises(ConfigError) as caught:
        parseText(deep, "h.conf")
    assert str(caught.value) == (
        f"h.conf:{MAX_SECTION_DEPTH + 1}: <IfModule>: sections nest deeper than "
        f"{MAX_SECTION_DEPTH}"
    )


@pytest.mark.parametrize(
    "value, written",
    [
        ("plain", "plain"),
        ("/a/b.fcg", "/a/b.fcg"),
        ("", '""'),
        ("a b", '"a b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("it's", '"it\'s"'),
        ("back\\slash", '"back\\\\slash"'),
        ("#x", '"#x"'),
    ],
)
def test_quoteArgument(value: str, written: str) -> None:
    """
    L{quoteArgument} leaves plain words alone and double-quotes the rest.
    """
    assert quoteArgument(value) == written


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b"])
def test_quoteArgumentRefusesLineBreaks(value: str) -> None:
    """
    Values that cannot be written on one configuration line are refused.
    """
    with pytest.raises(ValueError):
        quoteArgument(value)


_ARGUMENT = st.text(
    st.characters(blacklist_characters="\n\r\0", blacklist_categories=("Cs",)),
    max_size=12,
)


@given(st.lists(_ARGUMENT, max_size=6))
def test_quoteSplitRoundTrip(values: list[str]) -> None:
    """
    Arguments written with L{quoteArgument} read back unchanged, alone or
    as a directive's arguments in a file.
    """
    text = " ".join(quoteArgument(v) for v in values)
    assert splitArguments(text) == values
    [directive] = parseText(f"Directive {text}\n", "f")
    assert directive == Directive("Directive", tuple(values), Source("f", 1))
