# -*- test-case-name: tests.test_policy -*-
"""
When to (re)start the processes of an AppClass: the restart delay of the seed
and the back-off of SPEC.md Decision 7, as pure functions of given times.

Nothing here reads a clock, sets a timer or imports Twisted.  The supervisor
owns the clock and the timers; it tells this module what happened (a start,
a death) and at what time, and asks when the next start is due.

Rules
=====

  - B{Seed rule} (SPEC.md section 1.4, mod_fastcgi 2.0 C{FastCgiProcMgr}).
    The class remembers its most recent start, of any of its processes.  No
    process of the class is (re)started sooner than C{restartDelay} seconds
    after that start.  So the first process to die long after the last start
    is restarted at once, and a process that dies within the delay waits
    until C{lastStart + restartDelay}.  Every start moves C{lastStart}, so
    when several processes of a class die together their restarts are
    spaced C{restartDelay} apart (2.0's PM loop does exactly that: the first
    waiting slot starts and sets C{restartTime := now}, the next slot is then
    due C{restartDelay} later).  The initial start of all C{-processes}
    copies is not spaced: the supervisor starts them together and records
    each start.

  - B{Quick failure.}  A death counts as a quick failure when the process
    lived less than C{minServerLife} seconds I{and} it crashed (killed by a
    signal) or exited with a non-zero status, I{and} no other process of the
    class that is still running has lived C{minServerLife} (the latter is
    mod_fastcgi HEAD's "no running instance has lived longer than
    min-server-life": a class that is serving is not a broken binary; a
    process killed by one poisonous request in an otherwise healthy class is
    restarted with the normal delay).

  - B{Exit status 0} is an exit, not a failure (HEAD does not count it
    either): PHP's C{PHP_FCGI_MAX_REQUESTS} and similar settings make
    healthy apps exit 0 after N requests, which under load may be seconds
    after they started.  It neither counts toward nor ends a back-off,
    unless the process lived C{minServerLife}, which ends it like any
    survivor.  A signal is a crash and a non-zero status a failed exit; both
    count.

  - B{Back-off} (Decision 7).  After more than C{backoffThreshold}
    consecutive quick failures (HEAD: more than 3, C{MAX_FAILED_STARTS}) the
    delay doubles with each further quick failure, starting from twice the
    normal delay (with a floor of L{MIN_BACKOFF_STEP} seconds, so that
    C{restartDelay 0} still backs off) and capped at C{maxBackoff} (HEAD's
    fixed C{FAILED_STARTS_DELAY} of 600 s).  With the defaults (5 s, 3
    failures, 600 s) the 4th quick failure in a row waits 10 s, then 20,
    40, 80, 160, 320, and 600 s from the 10th on.  Like the normal delay, the
    back-off is measured from the class's last start, and it is never
    shorter than C{restartDelay}.  A back-off that would not exceed
    C{restartDelay} (C{maxBackoff <= restartDelay}) is no back-off at all.

  - B{Recovery.}  The first death of a process that lived C{minServerLife},
    or the first death while another process of the class has been running
    that long, resets the count of quick failures and ends the back-off.

  - B{Clock jumps.}  A start recorded "in the future" (the wall clock went
    back) is treated as if it happened now, so a clock step can never
    postpone a start by more than the delay in force.

Defaults and why
================

C{restartDelay} 5 s is the seed's default.  C{minServerLife} 30 s is HEAD's
C{-min-server-life} default: a FastCGI app that has run for 30 s has finished
its start-up (imports, configuration, database connections), so a later death
is a runtime crash rather than a broken installation.  C{backoffThreshold} 3 and
C{maxBackoff} 600 s are HEAD's numbers; doubling instead of HEAD's jump
straight to 600 s gets a transient failure (a database restarting) back
within seconds while still bounding a broken binary to one start every ten
minutes.

Use by the supervisor
=====================

  1. Keep one L{ClassHistory} per AppClass, starting from C{ClassHistory()}.
  2. Start the initial processes together, calling L{recordStart} for each.
  3. When a process ends (and the supervisor did not ask it to), call
     L{recordDeath} with its start time, the time now, its exit code or
     signal, the start times of the class's processes still running and the
     number of processes already waiting for a start; log the returned
     L{Decision} (L{Decision.describe} and its fields) and queue the slot.
  4. Drive waiting slots with one timer per class: when it fires, if
     L{nextStartTime} is not later than now, start one process, call
     L{recordStart} and repeat; otherwise set the timer for
     L{nextStartTime}.  Deaths the supervisor caused (stopping, reloading)
     are not recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum

__all__ = [
    "MIN_BACKOFF_STEP",
    "BackoffChange",
    "ClassHistory",
    "DeathKind",
    "Decision",
    "RestartPolicy",
    "RestartReason",
    "currentDelay",
    "nextStartTime",
    "recordDeath",
    "recordStart",
]

MIN_BACKOFF_STEP = 1.0
"""
The smallest base, in seconds, from which a back-off doubles: with
C{restartDelay 0} the first back-off is 2 s, then 4 s, and so on.
"""


def _checkDuration(name: str, value: float) -> None:
    """
    Refuse a duration that is negative, infinite or not a number.

    @param name: the field name, for the message.
    @param value: the value to check.
    @raise ValueError: if C{value} is not a finite number C{>= 0}.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds (got {value!r})")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")


@dataclass(frozen=True)
class RestartPolicy:
    """
    The restart parameters of one AppClass.

    @ivar restartDelay: C{-restart-delay}: minimum seconds between the class's
        most recent start and the next (re)start.
    @ivar minServerLife: seconds a process must live for its death not to
        count as a quick failure (HEAD's C{-min-server-life}).
    @ivar backoffThreshold: how many consecutive quick failures are
        restarted with the normal delay; each one beyond doubles the delay.
    @ivar maxBackoff: the cap on the back-off delay, in seconds.

    C{minServerLife=0} (every death is a survivor) or C{maxBackoff <=
    restartDelay} turns the back-off off, leaving the seed rule alone.
    """

    restartDelay: float = 5.0
    minServerLife: float = 30.0
    backoffThreshold: int = 3
    maxBackoff: float = 600.0

    def __post_init__(self) -> None:
        """
        Validate the fields.

        @raise ValueError: if a duration is negative or not finite, or the
            threshold is not an integer C{>= 0}.
        """
        _checkDuration("restartDelay", self.restartDelay)
        _checkDuration("minServerLife", self.minServerLife)
        _checkDuration("maxBackoff", self.maxBackoff)
        if (
            isinstance(self.backoffThreshold, bool)
            or not isinstance(self.backoffThreshold, int)
            or self.backoffThreshold < 0
        ):
            raise ValueError(
                "backoffThreshold must be an integer >= 0 "
                f"(got {self.backoffThreshold!r})"
            )


@dataclass(frozen=True)
class ClassHistory:
    """
    What the policy remembers about one AppClass.  Immutable: every
    L{recordStart}/L{recordDeath} returns a new value.

    @ivar lastStart: the time of the class's most recent start of any of its
        processes, or C{None} before the first one.
    @ivar quickFailures: quick failures in a row, since the last survivor.
    @ivar backoff: the back-off delay in force, in seconds; C{0.0} when
        there is none (restarts use C{restartDelay}).  When not zero it is
        larger than C{restartDelay}.
    """

    lastStart: float | None = None
    quickFailures: int = 0
    backoff: float = 0.0


class DeathKind(Enum):
    """
    How a process ended.

    @cvar EXIT: it called exit with status 0.
    @cvar FAILED_EXIT: it called exit with a non-zero status.
    @cvar CRASH: it was terminated by a signal.
    """

    EXIT = "exit"
    FAILED_EXIT = "failed exit"
    CRASH = "crash"


class RestartReason(Enum):
    """
    Why the next start is due when it is.

    @cvar IMMEDIATE: nothing holds it back: the start is due now.
    @cvar RESTART_DELAY: it waits for C{restartDelay} seconds after the
        class's last start (the seed rule), or for processes queued before it.
    @cvar BACKOFF: a back-off is in force and the start waits for it.
    """

    IMMEDIATE = "immediate"
    RESTART_DELAY = "restart-delay"
    BACKOFF = "back-off"


class BackoffChange(Enum):
    """
    What a death did to the class's back-off, so the supervisor can log the
    change itself, once.

    @cvar NONE: there was no back-off and there is none.
    @cvar BEGAN: this death started a back-off.
    @cvar GREW: a back-off was in force and doubled (up to the cap).
    @cvar HELD: a back-off was in force and stays as it was (at the cap
        already, or the death did not count).
    @cvar ENDED: a back-off was in force and this death ended it (the
        process, or a sibling still running, lived C{minServerLife}).
    """

    NONE = "none"
    BEGAN = "began"
    GREW = "grew"
    HELD = "held"
    ENDED = "ended"


@dataclass(frozen=True)
class Decision:
    """
    The policy's answer to a death: when the replacement is due and
    everything an operator's log line needs to say why.

    @ivar startAt: absolute time at which the replacement may start (C{>=
        now}).
    @ivar wait: C{startAt - now}, in seconds.
    @ivar reason: why it waits that long.
    @ivar death: how the process ended.
    @ivar exitCode: its exit status, or C{None} if a signal ended it.
    @ivar signal: the signal that ended it, or C{None}.
    @ivar lifetime: how long it ran, in seconds.
    @ivar quickFailure: whether this death counted as a quick failure.
    @ivar consecutiveFailures: quick failures in a row after this death.
    @ivar backoff: the back-off in force after this death (C{0.0}: none).
    @ivar previousBackoff: the back-off in force before it.
    @ivar backoffChange: what this death did to the back-off.
    @ivar policy: the policy that decided (for the numbers in messages).
    """

    startAt: float
    wait: float
    reason: RestartReason
    death: DeathKind
    exitCode: int | None
    signal: int | None
    lifetime: float
    quickFailure: bool
    consecutiveFailures: int
    backoff: float
    previousBackoff: float
    backoffChange: BackoffChange
    policy: RestartPolicy

    def describe(self) -> str:
        """
        Say, in a phrase an operator understands, how the process ended and
        what happens next, e.g. C{"crashed (signal 11) after 0.4 s; 5 quick
        failures in a row (each lived less than 30 s): backing off, next
        start in 20 s"}.  The fields carry the same facts for structured
        logging.

        @return: the phrase (no trailing period).
        """
        if self.death is DeathKind.CRASH:
            how = f"crashed (signal {self.signal})"
        elif self.death is DeathKind.FAILED_EXIT:
            how = f"exited with status {self.exitCode}"
        else:
            how = "exited with status 0"
        parts = [f"{how} after {_seconds(self.lifetime)}"]
        change = self.backoffChange
        if change is BackoffChange.BEGAN:
            parts.append(
                f"{self._failuresPhrase()}: backing off to "
                f"{_seconds(self.backoff)} between starts"
            )
        elif change is BackoffChange.GREW:
            parts.append(
                f"{self._failuresPhrase()}: back-off raised from "
                f"{_seconds(self.previousBackoff)} to {_seconds(self.backoff)}"
            )
        elif change is BackoffChange.HELD:
            parts.append(f"back-off of {_seconds(self.backoff)} still in force")
        elif change is BackoffChange.ENDED:
            parts.append(
                f"a process lived {_seconds(self.policy.minServerLife)} or more: "
                f"back-off of {_seconds(self.previousBackoff)} ended"
            )
        if self.reason is RestartReason.IMMEDIATE:
            parts.append("restarting now")
        elif self.reason is RestartReason.BACKOFF:
            parts.append(f"next start in {_seconds(self.wait)}")
        else:
            parts.append(
                f"next start in {_seconds(self.wait)} "
                f"(restart-delay {_seconds(self.policy.restartDelay)})"
            )
        return "; ".join(parts)

    def _failuresPhrase(self) -> str:
        """
        @return: "N quick failures in a row (each lived less than M s)".
        """
        return (
            f"{self.consecutiveFailures} quick failures in a row (each lived "
            f"less than {_seconds(self.policy.minServerLife)})"
        )


def _seconds(value: float) -> str:
    """
    Format a duration for a message: whole seconds without decimals.

    @param value: seconds.
    @return: e.g. C{"5 s"} or C{"0.4 s"}.
    """
    if value == int(value):
        return f"{int(value)} s"
    return f"{value:.1f} s"


def _backoffFor(policy: RestartPolicy, quickFailures: int) -> float:
    """
    The back-off in force after C{quickFailures} quick failures in a row.

    @param policy: the class's policy.
    @param quickFailures: consecutive quick failures.
    @return: the back-off in seconds, or C{0.0} if none is in force (not
        beyond the threshold, or not longer than C{restartDelay}).
    """
    beyond = quickFailures - policy.backoffThreshold
    if beyond <= 0:
        return 0.0
    step = max(float(policy.restartDelay), MIN_BACKOFF_STEP)
    # The exponent is capped so the float cannot overflow to an error; the
    # cap on the delay is reached long before.
    delay = min(float(policy.maxBackoff), step * 2.0 ** min(beyond, 1000))
    if delay <= policy.restartDelay:
        return 0.0
    return delay


def currentDelay(policy: RestartPolicy, history: ClassHistory) -> float:
    """
    The spacing in force between the class's last start and its next one.

    @param policy: the class's policy.
    @param history: the class's history.
    @return: C{restartDelay}, or the back-off when one is in force.
    """
    return max(float(policy.restartDelay), history.backoff)


def recordStart(history: ClassHistory, now: float) -> ClassHistory:
    """
    Note that a process of the class started at C{now} (initial start,
    restart, or a start after a failed spawn attempt: every start counts).

    @param history: the class's history.
    @param now: the time of the start.
    @return: the new history.
    """
    return replace(history, lastStart=now)


def nextStartTime(policy: RestartPolicy, history: ClassHistory, now: float) -> float:
    """
    The earliest time at which the class may start a process.

    @param policy: the class's policy.
    @param history: the class's history.
    @param now: the time now.
    @return: an absolute time C{>= now}: C{now} before the first start or
        when the delay in force has passed since the last start, otherwise
        C{lastStart + delay}.
    """
    if history.lastStart is None:
        return now
    lastStart = min(history.lastStart, now)
    return max(now, lastStart + currentDelay(policy, history))


def _deathKind(exitCode: int | None, signal: int | None) -> DeathKind:
    """
    Classify how a process ended.

    @param exitCode: the exit status, or C{None}.
    @param signal: the terminating signal, or C{None}.
    @return: the kind of death.
    @raise ValueError: unless exactly one of the two is given.
    """
    if (exitCode is None) == (signal is None):
        raise ValueError(
            "give exactly one of exitCode and signal "
            f"(got exitCode={exitCode!r}, signal={signal!r})"
        )
    if signal is not None:
        return DeathKind.CRASH
    if exitCode == 0:
        return DeathKind.EXIT
    return DeathKind.FAILED_EXIT


def _backoffChange(before: float, after: float) -> BackoffChange:
    """
    Compare the back-off before and after a death.

    @param before: back-off before (C{0.0}: none).
    @param after: back-off after (C{0.0}: none).
    @return: the change.
    """
    if not before:
        return BackoffChange.BEGAN if after else BackoffChange.NONE
    if not after:
        return BackoffChange.ENDED
    if after > before:
        return BackoffChange.GREW
    return BackoffChange.HELD


def recordDeath(
    policy: RestartPolicy,
    history: ClassHistory,
    *,
    startedAt: float,
    now: float,
    exitCode: int | None = None,
    signal: int | None = None,
    runningSince: Iterable[float] = (),
    queued: int = 0,
) -> tuple[ClassHistory, Decision]:
    """
    Note that a process of the class ended on its own, and decide when its
    replacement is due.

    Twisted's C{ProcessDone}/C{ProcessTerminated} carry C{exitCode} and
    C{signal} attributes; pass them as they are.

    @param policy: the class's policy.
    @param history: the class's history.
    @param startedAt: when the process that died was started.
    @param now: the time of its death (now).
    @param exitCode: its exit status, if it called exit.
    @param signal: the signal that terminated it, if one did.
    @param runningSince: the start times of the class's processes that are
        still running (not the one that died).
    @param queued: how many processes of the class are already waiting for
        a start; the replacement queues behind them, each start moving
        C{lastStart}, so it is due C{queued} delays after the first.
    @return: the new history and the decision.
    @raise ValueError: unless exactly one of C{exitCode} and C{signal} is
        given, or if C{queued} is negative.
    """
    death = _deathKind(exitCode, signal)
    if queued < 0:
        raise ValueError(f"queued must be >= 0 (got {queued!r})")
    lifetime = max(0.0, now - startedAt)
    survivor = lifetime >= policy.minServerLife or any(
        now - started >= policy.minServerLife for started in runningSince
    )
    failures = history.quickFailures
    quickFailure = False
    if survivor:
        failures = 0
    elif death is not DeathKind.EXIT:
        failures += 1
        quickFailure = True
    backoff = _backoffFor(policy, failures)
    newHistory = replace(history, quickFailures=failures, backoff=backoff)
    first = nextStartTime(policy, newHistory, now)
    startAt = first + queued * currentDelay(policy, newHistory)
    if startAt <= now:
        reason = RestartReason.IMMEDIATE
    elif backoff:
        reason = RestartReason.BACKOFF
    else:
        reason = RestartReason.RESTART_DELAY
    decision = Decision(
        startAt=startAt,
        wait=startAt - now,
        reason=reason,
        death=death,
        exitCode=exitCode,
        signal=signal,
        lifetime=lifetime,
        quickFailure=quickFailure,
        consecutiveFailures=failures,
        backoff=backoff,
        previousBackoff=history.backoff,
        backoffChange=_backoffChange(history.backoff, backoff),
        policy=policy,
    )
    return newHistory, decision
