# -*- test-case-name: tests.test_supervisor -*-
"""
How the life of an application process is logged, the same for the
processes of an C{AppClass} (L{txfastcgi.supervisor}) and of a dynamic
application (L{txfastcgi.dynamic}): a line of its output, the SIGKILL after
its grace, and the words for how it ended.

The texts and fields are what operators and tests match on; both owners log
through these functions, with their own L{Logger}, so the events keep the
owner's namespace and source.
"""

from __future__ import annotations

from twisted.logger import Logger

__all__ = ["describeExit", "logKill", "logOutputLine"]


def logOutputLine(log: Logger, appClass: str, pid: int, stream: str, line: str) -> None:
    """
    Log one line a process wrote: stdout at info level, stderr at warn level.

    @param log: the owner's logger.
    @param appClass: the application's path (field C{appClass}).
    @param pid: the process (field C{pid}).
    @param stream: C{"stdout"} or C{"stderr"} (field C{stream}).
    @param line: the line, decoded, without its newline (field C{line}).
    """
    emit = log.warn if stream == "stderr" else log.info
    emit(
        "{appClass} (pid {pid}) {stream}: {line}",
        appClass=appClass,
        pid=pid,
        stream=stream,
        line=line,
    )


def logKill(log: Logger, kind: str, appClass: str, pid: int, stopGrace: float) -> None:
    """
    Log (at warn level) that a process outlived its grace after SIGTERM and
    was sent SIGKILL.

    @param log: the owner's logger.
    @param kind: what the process is, the first words of the message:
        C{"AppClass"} or C{"Dynamic application"}.  It becomes part of the
        format string, so it must not hold braces.
    @param appClass: the application's path (field C{appClass}).
    @param pid: the process (field C{pid}).
    @param stopGrace: the grace it had, in seconds (field C{stopGrace}).
    """
    log.warn(
        kind + " {appClass} pid {pid} did not exit {stopGrace} s after SIGTERM: "
        "sent SIGKILL",
        appClass=appClass,
        pid=pid,
        stopGrace=stopGrace,
    )


def describeExit(exitCode: int | None, signal: int | None) -> str:
    """
    @param exitCode: an exit status or C{None}.
    @param signal: a signal number or C{None}.
    @return: C{"exit status 0"} or C{"signal 15"} (the signal wins).
    """
    if signal is not None:
        return f"signal {signal}"
    return f"exit status {exitCode}"
