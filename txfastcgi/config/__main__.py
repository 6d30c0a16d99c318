# -*- test-case-name: tests.test_config_reader -*-
"""
C{python -m txfastcgi.config FILE...}: check configuration files.

For each file, print nothing but its notes (ignored directives, warnings) on
stdout when it is valid; print the one-line error on stderr and exit with
status 1 when it is not.  Exit status 2 for a usage error.
"""

from __future__ import annotations

import sys

from txfastcgi.config import ConfigError, readConfig

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """
    Check the files named in C{argv}.

    @param argv: the arguments after the program name; C{sys.argv[1:]} by
        default.
    @return: the exit status: 0 if every file is valid, 1 if one is not,
        2 for a usage error.
    """
    args = sys.argv[1:] if argv is None else argv
    if not args or any(a in ("-h", "--help") for a in args):
        print("usage: python -m txfastcgi.config FILE...", file=sys.stderr)
        return 2
    status = 0
    for path in args:
        try:
            config = readConfig(path)
        except ConfigError as e:
            print(e, file=sys.stderr)
            status = 1
            continue
        for note in config.notes:
            print(note)
    return status


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess
    sys.exit(main())
