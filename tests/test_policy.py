"""
Tests for L{txfastcgi.policy}: pure restart timing and back-off.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError, dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txfastcgi.policy import (
    MIN_BACKOFF_STEP,
    BackoffChange,
    ClassHistory,
    DeathKind,
    Decision,
    RestartPolicy,
    RestartReason,
    currentDelay,
    nextStartTime,
    recordDeath,
    recordStart,
)

SEED = RestartPolicy()


def started(at: float) -> ClassHistory:
    """
    A history whose only event is a start at C{at}.
    """
    return recordStart(ClassHistory(), at)


def crashLoop(
    policy: RestartPolicy, count: int, lifetime: float = 1.0
) -> tuple[ClassHistory, list[Decision], float]:
    """
    Run one process that crashes (SIGSEGV) C{lifetime} seconds after each
    start, C{count} times, restarting it exactly when each decision says.

    @return: the final history, every decision, and the time of the last
        death.
    """
    now = 0.0
    history = started(now)
    startedAt = now
    decisions = []
    for _ in range(count):
        now = startedAt + lifetime
        history, decision = recordDeath(
            policy, history, startedAt=startedAt, now=now, signal=11
        )
        decisions.append(decision)
        startedAt = decision.startAt
        history = recordStart(history, startedAt)
    return history, decisions, now


# --- the seed rule ---------------------------------------------------------


@pytest.mark.parametrize(
    "delay, lastStart, startedAt, now, expected, reason",
    [
        # First death long after the last start: restarted at once.
        (5, 0.0, 0.0, 100.0, 100.0, RestartReason.IMMEDIATE),
        # Exactly at lastStart + delay: due now.
        (5, 0.0, 0.0, 5.0, 5.0, RestartReason.IMMEDIATE),
        # Death within the delay of the class's last start: wait for it.
        (5, 100.0, 0.0, 102.0, 105.0, RestartReason.RESTART_DELAY),
        (5, 100.0, 100.0, 100.5, 105.0, RestartReason.RESTART_DELAY),
        # The delay counts from the class's last start, not this process's.
        (5, 100.0, 0.0, 101.0, 105.0, RestartReason.RESTART_DELAY),
        # Delay 0: always at once.
        (0, 100.0, 100.0, 100.0, 100.0, RestartReason.IMMEDIATE),
        (0, 100.0, 0.0, 100.1, 100.1, RestartReason.IMMEDIATE),
        # Long delays are honoured too.
        (60, 100.0, 0.0, 110.0, 160.0, RestartReason.RESTART_DELAY),
    ],
)
def test_seedRule(
    delay: float,
    lastStart: float,
    startedAt: float,
    now: float,
    expected: float,
    reason: RestartReason,
) -> None:
    """
    A replacement is due at C{max(now, lastStart + restartDelay)}, where
    C{lastStart} is the class's most recent start of any process.
    """
    policy = RestartPolicy(restartDelay=delay, minServerLife=0.0)
    _, decision = recordDeath(
        policy, started(lastStart), startedAt=startedAt, now=now, exitCode=1
    )
    assert decision.startAt == expected
    assert decision.wait == expected - now
    assert decision.reason is reason


def test_firstDeathRestartsAtOnceSecondWaits() -> None:
    """
    The doc's example: the first process to die is restarted at once; a
    second dying within C{restartDelay} of that restart waits until the
    delay has passed since it.
    """
    history = started(0.0)
    history, first = recordDeath(SEED, history, startedAt=0.0, now=600.0, exitCode=1)
    assert (first.startAt, first.reason) == (600.0, RestartReason.IMMEDIATE)
    history = recordStart(history, 600.0)
    history, second = recordDeath(
        SEED, history, startedAt=0.0, now=602.0, signal=9
    )
    assert (second.startAt, second.reason) == (605.0, RestartReason.RESTART_DELAY)


def test_freshHistoryStartsNow() -> None:
    """
    Before any start, a start is due at once (initial start of a class).
    """
    assert nextStartTime(SEED, ClassHistory(), 42.0) == 42.0


def test_initialStartsAreNotSpaced() -> None:
    """
    Recording the N initial starts at the same time is allowed and leaves
    the class's last start at that time: the next start is due
    C{restartDelay} later, not N delays later.
    """
    history = ClassHistory()
    for _ in range(4):
        assert nextStartTime(SEED, ClassHistory(), 10.0) == 10.0
        history = recordStart(history, 10.0)
    assert history.lastStart == 10.0
    assert nextStartTime(SEED, history, 11.0) == 15.0


def simulateClass(
    policy: RestartPolicy, deathTimes: list[float], processes: int
) -> list[float]:
    """
    Drive a class the way the supervisor does (one timer per class, start
    one waiting slot whenever L{nextStartTime} is due, record the start),
    with all C{processes} started at 0 and killed (SIGKILL) at the given
    times, one process per time.

    @return: the times of the restarts, in order.
    """

    @dataclass
    class Slot:
        startedAt: float | None

    slots = [Slot(0.0) for _ in range(processes)]
    history = ClassHistory()
    for _ in slots:
        history = recordStart(history, 0.0)
    restarts: list[float] = []
    deaths = sorted(deathTimes)
    now = 0.0
    waiting: list[Slot] = []
    while deaths or waiting:
        due = nextStartTime(policy, history, now) if waiting else None
        if deaths and (due is None or deaths[0] <= due):
            now = deaths.pop(0)
            victim = next(s for s in slots if s.startedAt is not None)
            assert victim.startedAt is not None
            running = [s.startedAt for s in slots if s.startedAt is not None]
            running.remove(victim.startedAt)
            history, _ = recordDeath(
                policy,
                history,
                startedAt=victim.startedAt,
                now=now,
                signal=9,
                runningSince=running,
                queued=len(waiting),
            )
            victim.startedAt = None
            waiting.append(victim)
        else:
            assert due is not None
            now = due
            slot = waiting.pop(0)
            slot.startedAt = now
            history = recordStart(history, now)
            restarts.append(now)
    return restarts


@pytest.mark.parametrize(
    "delay, deaths, expected",
    [
        # Three die together long after the start: 0, +delay, +2 delays.
        (5, [100.0, 100.0, 100.0], [100.0, 105.0, 110.0]),
        (10, [100.0, 100.0, 100.0], [100.0, 110.0, 120.0]),
        # Delay 0: all at once.
        (0, [100.0, 100.0, 100.0], [100.0, 100.0, 100.0]),
        # Two together, the third after the spacing has run out.
        (5, [100.0, 100.0, 200.0], [100.0, 105.0, 200.0]),
        # Two together within the delay of the initial start.
        (5, [1.0, 2.0], [5.0, 10.0]),
    ],
)
def test_manyDeathsAreSpacedByRestartDelay(
    delay: float, deaths: list[float], expected: list[float]
) -> None:
    """
    When several processes of a class die together, every restart moves the
    class's last start, so the restarts are spaced C{restartDelay} apart:
    what mod_fastcgi 2.0's PM loop does with C{restartTime := now}.
    """
    policy = RestartPolicy(restartDelay=delay, minServerLife=0.0)
    assert simulateClass(policy, deaths, processes=3) == expected


def test_queuedDeathsPredictTheirTurn() -> None:
    """
    With C{queued}, the decision for a process dying while others already
    wait gives the time the supervisor's queue will actually start it.
    """
    policy = RestartPolicy(restartDelay=5, minServerLife=0.0)
    history = started(0.0)
    times = []
    for queued in range(3):
        history, decision = recordDeath(
            policy, history, startedAt=0.0, now=100.0, signal=9, queued=queued
        )
        times.append(decision.startAt)
    assert times == [100.0, 105.0, 110.0]
    assert times == simulateClass(policy, [100.0] * 3, processes=3)


# --- death kinds -------------------------------------------------------------


@pytest.mark.parametrize(
    "exitCode, signal, kind, counts",
    [
        (0, None, DeathKind.EXIT, False),
        (1, None, DeathKind.FAILED_EXIT, True),
        (255, None, DeathKind.FAILED_EXIT, True),
        (None, 11, DeathKind.CRASH, True),
        (None, 9, DeathKind.CRASH, True),
    ],
)
def test_deathKinds(
    exitCode: int | None, signal: int | None, kind: DeathKind, counts: bool
) -> None:
    """
    Exit status 0 is an exit and not a failure; a non-zero status is a
    failed exit and a signal a crash, both quick failures when early.
    """
    history, decision = recordDeath(
        SEED, started(0.0), startedAt=0.0, now=1.0, exitCode=exitCode, signal=signal
    )
    assert decision.death is kind
    assert (decision.exitCode, decision.signal) == (exitCode, signal)
    assert decision.quickFailure is counts
    assert history.quickFailures == int(counts)


@pytest.mark.parametrize("exitCode, signal", [(None, None), (1, 9), (0, 15)])
def test_exactlyOneOfExitCodeAndSignal(
    exitCode: int | None, signal: int | None
) -> None:
    """
    A death is described by an exit code or a signal, never both or none.
    """
    with pytest.raises(ValueError, match="exactly one of exitCode and signal"):
        recordDeath(
            SEED, started(0.0), startedAt=0.0, now=1.0, exitCode=exitCode, signal=signal
        )


def test_negativeQueuedRefused() -> None:
    """
    C{queued} counts processes; a negative count is a caller bug.
    """
    with pytest.raises(ValueError, match="queued"):
        recordDeath(SEED, started(0.0), startedAt=0.0, now=1.0, signal=9, queued=-1)


# --- back-off ----------------------------------------------------------------


def test_backoffDoublesAndIsCapped() -> None:
    """
    With the defaults (5 s, more than 3 failures, 600 s cap) a process that
    crashes one second after every start is restarted after 5, 5, 5 s of
    delay, then 10, 20, 40, 80, 160, 320 s and 600 s from then on.
    """
    _, decisions, _ = crashLoop(SEED, 12)
    # Each wait is measured from the death, one second after the start.
    delays = [d.wait + 1.0 for d in decisions]
    assert delays == [5, 5, 5, 10, 20, 40, 80, 160, 320, 600, 600, 600]
    assert [d.consecutiveFailures for d in decisions] == list(range(1, 13))
    assert [d.backoffChange for d in decisions] == (
        [BackoffChange.NONE] * 3
        + [BackoffChange.BEGAN]
        + [BackoffChange.GREW] * 6
        + [BackoffChange.HELD] * 2
    )
    assert [d.reason for d in decisions] == (
        [RestartReason.RESTART_DELAY] * 3 + [RestartReason.BACKOFF] * 9
    )


@pytest.mark.parametrize(
    "policy, expected",
    [
        # Threshold 0: the first quick failure backs off already.
        (
            RestartPolicy(restartDelay=5, backoffThreshold=0, maxBackoff=600),
            [10, 20, 40, 80],
        ),
        # Delay 0 doubles from MIN_BACKOFF_STEP.
        (
            RestartPolicy(restartDelay=0, backoffThreshold=1, maxBackoff=600),
            [0, 2, 4, 8],
        ),
        # A low cap.
        (
            RestartPolicy(restartDelay=5, backoffThreshold=1, maxBackoff=15),
            [5, 10, 15, 15],
        ),
        # A cap not above restartDelay means no back-off at all.
        (
            RestartPolicy(restartDelay=5, backoffThreshold=1, maxBackoff=5),
            [5, 5, 5, 5],
        ),
        (
            RestartPolicy(restartDelay=900, backoffThreshold=1, maxBackoff=600),
            [900, 900, 900, 900],
        ),
        # minServerLife 0: every death is a survivor, so no back-off.
        (
            RestartPolicy(restartDelay=5, minServerLife=0, backoffThreshold=0),
            [5, 5, 5, 5],
        ),
        # Fractional delays.
        (
            RestartPolicy(restartDelay=1.5, backoffThreshold=2, maxBackoff=600),
            [1.5, 1.5, 3, 6],
        ),
    ],
)
def test_backoffTable(policy: RestartPolicy, expected: list[float]) -> None:
    """
    The delay from a start to the next, for a process crashing at once
    after each start, follows the threshold, the doubling from
    C{max(restartDelay, MIN_BACKOFF_STEP)} and the cap.
    """
    _, decisions, _ = crashLoop(policy, len(expected), lifetime=0.0)
    assert [d.wait for d in decisions] == expected
    assert MIN_BACKOFF_STEP == 1.0


def test_backoffNeverOverflows() -> None:
    """
    Thousands of quick failures keep the delay at the cap (no float
    overflow).
    """
    history = ClassHistory(lastStart=0.0, quickFailures=5000, backoff=600.0)
    history, decision = recordDeath(SEED, history, startedAt=0.0, now=0.0, signal=9)
    assert decision.backoff == 600.0
    assert decision.backoffChange is BackoffChange.HELD
    assert history.quickFailures == 5001


def test_recoveryAfterASurvivor() -> None:
    """
    A process that lived C{minServerLife} ends the back-off: its death resets
    the count and it is restarted at once (long after the last start).
    """
    history, decisions, now = crashLoop(SEED, 6)
    assert history.backoff == 40.0
    startedAt = history.lastStart
    assert startedAt is not None
    history, decision = recordDeath(
        SEED, history, startedAt=startedAt, now=startedAt + 30.0, exitCode=3
    )
    assert decision.backoffChange is BackoffChange.ENDED
    assert decision.previousBackoff == 40.0
    assert (decision.backoff, decision.consecutiveFailures) == (0.0, 0)
    assert not decision.quickFailure
    assert decision.reason is RestartReason.IMMEDIATE
    assert history == ClassHistory(lastStart=startedAt, quickFailures=0, backoff=0.0)
    # And the next quick failure starts counting from one again.
    history = recordStart(history, startedAt + 30.0)
    history, decision = recordDeath(
        SEED, history, startedAt=startedAt + 30.0, now=startedAt + 31.0, signal=6
    )
    assert decision.consecutiveFailures == 1
    assert decision.wait == 4.0


def test_survivingSiblingEndsBackoff() -> None:
    """
    A quick failure while another process of the class has been running
    C{minServerLife} does not count and ends a back-off (HEAD: no back-off
    while an instance has lived min-server-life).
    """
    history = ClassHistory(lastStart=100.0, quickFailures=5, backoff=20.0)
    _, young = recordDeath(
        SEED, history, startedAt=100.0, now=101.0, signal=11, runningSince=[90.0]
    )
    assert young.backoffChange is BackoffChange.GREW
    assert young.consecutiveFailures == 6 and young.backoff == 40.0
    newHistory, old = recordDeath(
        SEED, history, startedAt=100.0, now=101.0, signal=11, runningSince=[71.0]
    )
    assert not old.quickFailure
    assert old.backoffChange is BackoffChange.ENDED
    assert (newHistory.quickFailures, newHistory.backoff) == (0, 0.0)
    assert old.startAt == 105.0


@pytest.mark.parametrize(
    "history, expectedChange, expectedFailures",
    [
        # Exit 0 within the back-off: it holds, the count is unchanged.
        (
            ClassHistory(lastStart=100.0, quickFailures=5, backoff=20.0),
            BackoffChange.HELD,
            5,
        ),
        # Exit 0 with no back-off in force: nothing changes.
        (ClassHistory(lastStart=100.0, quickFailures=2), BackoffChange.NONE, 2),
    ],
)
def test_quickCleanExitIsNeutral(
    history: ClassHistory, expectedChange: BackoffChange, expectedFailures: int
) -> None:
    """
    A quick exit with status 0 neither counts toward a back-off nor ends it.
    """
    newHistory, decision = recordDeath(
        SEED, history, startedAt=100.0, now=101.0, exitCode=0
    )
    assert decision.backoffChange is expectedChange
    assert newHistory.quickFailures == expectedFailures
    assert newHistory.backoff == history.backoff


def test_longCleanExitEndsBackoff() -> None:
    """
    An exit with status 0 after C{minServerLife} is a survivor like any other.
    """
    history = ClassHistory(lastStart=100.0, quickFailures=5, backoff=20.0)
    newHistory, decision = recordDeath(
        SEED, history, startedAt=100.0, now=130.0, exitCode=0
    )
    assert decision.backoffChange is BackoffChange.ENDED
    assert newHistory.quickFailures == 0
    assert decision.reason is RestartReason.IMMEDIATE


@pytest.mark.parametrize(
    "lifetime, quick",
    [(0.0, True), (29.5, True), (30.0, False), (3600.0, False)],
)
def test_minServerLifeBoundary(lifetime: float, quick: bool) -> None:
    """
    A process that lived exactly C{minServerLife} seconds survived.
    """
    _, decision = recordDeath(
        SEED, started(1000.0), startedAt=1000.0, now=1000.0 + lifetime, signal=11
    )
    assert decision.quickFailure is quick
    assert decision.lifetime == lifetime


def test_clockJumpBack() -> None:
    """
    A last start in the future (the wall clock stepped back) is treated as
    now, so the start is never postponed beyond the delay in force.
    """
    history = ClassHistory(lastStart=10_000.0, quickFailures=4, backoff=10.0)
    assert nextStartTime(SEED, history, 100.0) == 110.0
    _, decision = recordDeath(SEED, history, startedAt=10_000.0, now=100.0, signal=9)
    assert decision.lifetime == 0.0
    assert decision.startAt == 120.0


# --- describe() -------------------------------------------------------------


@pytest.mark.parametrize(
    "count, expected",
    [
        (1, "crashed (signal 11) after 1 s; next start in 4 s (restart-delay 5 s)"),
        (
            4,
            "crashed (signal 11) after 1 s; 4 quick failures in a row (each lived "
            "less than 30 s): backing off to 10 s between starts; next start in 9 s",
        ),
        (
            5,
            "crashed (signal 11) after 1 s; 5 quick failures in a row (each lived "
            "less than 30 s): back-off raised from 10 s to 20 s; next start in 19 s",
        ),
        (
            11,
            "crashed (signal 11) after 1 s; back-off of 600 s still in force; "
            "next start in 599 s",
        ),
    ],
)
def test_describeCrashLoop(count: int, expected: str) -> None:
    """
    L{Decision.describe} tells the operator what happened and what follows.
    """
    _, decisions, _ = crashLoop(SEED, count)
    assert decisions[-1].describe() == expected


def test_describeOther() -> None:
    """
    L{Decision.describe} covers exits, immediate restarts and an ended
    back-off, with fractional seconds.
    """
    _, d = recordDeath(SEED, started(0.0), startedAt=0.0, now=99.5, exitCode=0)
    assert d.describe() == "exited with status 0 after 99.5 s; restarting now"
    history = ClassHistory(lastStart=0.0, quickFailures=5, backoff=20.0)
    _, d = recordDeath(SEED, history, startedAt=0.0, now=45.0, exitCode=2)
    assert d.describe() == (
        "exited with status 2 after 45 s; a process lived 30 s or more: "
        "back-off of 20 s ended; restarting now"
    )


# --- values ----------------------------------------------------------------


def test_valuesAreFrozen() -> None:
    """
    Policy, history and decision are immutable values.
    """
    history, decision = recordDeath(
        SEED, started(0.0), startedAt=0.0, now=1.0, signal=9
    )
    with pytest.raises(FrozenInstanceError):
        SEED.restartDelay = 1  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        history.quickFailures = 0  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        decision.startAt = 0.0  # type: ignore[misc]


def test_defaults() -> None:
    """
    The defaults are the seed's delay and HEAD's back-off numbers.
    """
    assert SEED == RestartPolicy(5.0, 30.0, 3, 600.0)
    assert currentDelay(SEED, ClassHistory()) == 5.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"restartDelay": -1}, "restartDelay"),
        ({"restartDelay": float("nan")}, "restartDelay"),
        ({"minServerLife": float("inf")}, "minServerLife"),
        ({"maxBackoff": -0.5}, "maxBackoff"),
        ({"restartDelay": "5"}, "restartDelay"),
        ({"restartDelay": True}, "restartDelay"),
        ({"backoffThreshold": -1}, "backoffThreshold"),
        ({"backoffThreshold": 2.5}, "backoffThreshold"),
    ],
)
def test_policyValidation(kwargs: dict[str, object], match: str) -> None:
    """
    L{RestartPolicy} refuses negative, non-finite or non-numeric durations
    and a threshold that is not a non-negative integer.
    """
    with pytest.raises(ValueError, match=match):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


def test_noTwistedNoClock() -> None:
    """
    Importing L{txfastcgi.policy} in a fresh interpreter loads no Twisted
    module and no C{time} reading happens inside it (it does not import
    C{time}).
    """
    code = (
        "import sys, txfastcgi.policy\n"
        "bad = [m for m in sys.modules if m.startswith('twisted')]\n"
        "assert not bad, bad\n"
        "assert 'time' not in vars(txfastcgi.policy)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- properties --------------------------------------------------------------

policies = st.builds(
    RestartPolicy,
    restartDelay=st.sampled_from([0, 0.5, 1, 5, 30, 700]),
    minServerLife=st.sampled_from([0, 1, 30, 120]),
    backoffThreshold=st.integers(0, 5),
    maxBackoff=st.sampled_from([0, 1, 10, 600, 3600]),
)


@dataclass
class Event:
    """
    One step of a generated history: a start after C{gap} seconds, or the
    death of the process started C{age} seconds before.
    """

    gap: float
    kind: str
    age: float = 0.0
    exitCode: int | None = None
    signal: int | None = None
    siblings: list[float] = field(default_factory=list)


events = st.builds(
    Event,
    gap=st.floats(0, 2000, allow_nan=False),
    kind=st.sampled_from(["start", "death"]),
    age=st.floats(0, 200, allow_nan=False),
    exitCode=st.sampled_from([0, 1, None]),
    signal=st.sampled_from([9, 11]),
    siblings=st.lists(st.floats(0, 200, allow_nan=False), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(policies, st.lists(events, min_size=1, max_size=40))
def test_nextStartBounds(policy: RestartPolicy, steps: list[Event]) -> None:
    """
    Whatever happened before, the next start is never earlier than now or
    than C{lastStart + restartDelay}, and never later than
    C{max(now, lastStart + max(restartDelay, maxBackoff))}.
    """
    now = 0.0
    history = started(now)
    for event in steps:
        now += event.gap
        if event.kind == "start":
            history = recordStart(history, now)
            continue
        assert history.lastStart is not None
        startedAt = max(0.0, min(history.lastStart, now - event.age))
        history, decision = recordDeath(
            policy,
            history,
            startedAt=startedAt,
            now=now,
            exitCode=event.exitCode,
            signal=None if event.exitCode is not None else event.signal,
            runningSince=[now - s for s in event.siblings],
        )
        last = history.lastStart
        assert last is not None
        upper = max(now, last + max(policy.restartDelay, policy.maxBackoff))
        for due in (decision.startAt, nextStartTime(policy, history, now)):
            assert due >= now
            assert due >= last + policy.restartDelay
            assert due <= upper
        assert decision.startAt == nextStartTime(policy, history, now)
        assert decision.wait == decision.startAt - now
        assert (decision.reason is RestartReason.IMMEDIATE) == (decision.wait == 0)
        assert history.backoff == 0.0 or history.backoff > policy.restartDelay
        assert history.backoff <= max(policy.maxBackoff, 0.0)
        assert (history.backoff > 0) == (
            decision.backoffChange
            in (BackoffChange.BEGAN, BackoffChange.GREW, BackoffChange.HELD)
        )
