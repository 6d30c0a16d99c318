#!/usr/bin/env python3
# -*- test-case-name: tests.test_supervisor_processes -*-
"""
crash.py: a "FastCGI application" that exits at once, for the supervisor's
tests (tests/test_supervisor_processes.py).

It writes one line to stdout and one to stderr, both naming its pid, then
exits with the status in the environment variable C{CRASH_STATUS} (default
1), or kills itself with the signal number in C{CRASH_SIGNAL} if that is
set.  Standard library only, so any C{python3} runs it.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    """
    Say who we are and go.

    @return: the exit status.
    """
    pid = os.getpid()
    status = int(os.environ.get("CRASH_STATUS", "1"))
    sys.stdout.write(f"crash.py pid {pid} started\n")
    sys.stdout.flush()
    sys.stderr.write(f"crash.py pid {pid} exiting with status {status}\n")
    sys.stderr.flush()
    signalNumber = os.environ.get("CRASH_SIGNAL")
    if signalNumber:
        os.kill(pid, int(signalNumber))
    return status


if __name__ == "__main__":
    sys.exit(main())
