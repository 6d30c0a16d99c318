#!/usr/bin/env python3
# -*- test-case-name: tests.test_supervisor_processes -*-
"""
linger.py: a "FastCGI application" that is slow to stop, for the
supervisor's shutdown tests (tests/test_supervisor_processes.py).

It never accepts a connection; it waits for signals.  On SIGTERM it waits
C{LINGER_SECONDS} (environment, default 1) and then exits with status 0;
with C{LINGER_SECONDS=never} it ignores SIGTERM, so only SIGKILL ends it.
Standard library only, so any C{python3} runs it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType


def main() -> int:
    """
    Wait for signals until SIGTERM (or forever).

    @return: the exit status.
    """
    linger = os.environ.get("LINGER_SECONDS", "1")
    if linger == "never":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:

        def terminate(signum: int, frame: FrameType | None) -> None:
            sys.stderr.write(f"linger.py pid {os.getpid()} stopping in {linger} s\n")
            sys.stderr.flush()
            time.sleep(float(linger))
            sys.exit(0)

        signal.signal(signal.SIGTERM, terminate)
    sys.stdout.write(f"linger.py pid {os.getpid()} waiting\n")
    sys.stdout.flush()
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
