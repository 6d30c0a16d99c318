# -*- test-case-name: tests.test_loadpolicy -*-
"""
The decisions of the dynamic-application process manager (SPEC.md section
4): when a start is allowed, how the load of a class is smoothed and
measured, when the kill policy runs and which classes lose a process.

Pure: nothing here reads a clock, sets a timer or imports Twisted.  The
manager (L{txfastcgi.dynamic}) feeds in what happened and at what time and
acts on the answers; times are seconds (floats), loads are seconds of
service time (2.0 used microseconds for both sides of the ratio, which
cancels out).

Rules (SPEC.md sections 4.4 to 4.6)
===================================

  - B{Starting} (L{mayStart}): a start is refused when the class already
    has C{maxClassProcesses} processes ("Exceeded maxClassProcs") or the
    dynamic processes of all classes number C{maxProcesses} ("Exceeded
    maxProcs").  Processes being drained after a kill decision still count:
    they are still there.

  - B{Spacing} (L{startDue}, mod_fastcgi HEAD's C{-init-start-delay} and
    C{-restart-delay} for dynamic applications, SPEC.md section 4.6): a
    start asked for by a request that waited C{startDelay}
    (L{StartKind.GROWTH}) happens no sooner than C{initStartDelay} seconds
    after the class's last start when it fills a slot the class never used,
    or C{restartDelay} seconds when the slot held a process before (HEAD's
    "restart-delay (slot used before) or init-start-delay (fresh slot)"); a
    restart of a process that died on its own (C{-restart},
    L{StartKind.RESTART}) waits C{restartDelay} after the class's last start
    (the seed rule of SPEC.md section 1.4).  A start for a request when the
    class has no running process (L{StartKind.ON_DEMAND}) is not spaced: a
    request waits for it, and the crash back-off of L{txfastcgi.policy}
    (which the manager applies to every start) already bounds a binary that
    keeps dying.

  - B{Smoothing} (L{analysisDue}, L{smoothLoad}): every C{updateInterval}
    seconds, for every class, C{smooth := (1 - gain) * smooth + gain *
    connTime} and C{connTime := 0}.  C{connTime} is the service time of the
    requests completed since the last analysis.  The time of the last
    analysis advances by whole multiples of C{updateInterval}, once for all
    classes (2.0 advanced it inside the per-class loop, so only the first
    class was ever smoothed on a pass: not copied).

  - B{Load factor} (L{loadFactor}): C{100 * connTime' / (n * (now - epoch) +
    1e-6)} where C{connTime'} is C{smooth}, or C{connTime} while C{smooth}
    is still 0, C{n} the class's running processes (not those being
    drained: HEAD counts RUNNING only) and C{epoch} the last run of the kill
    policy.  The C{1e-6} is HEAD's C{+1} microsecond, so that a policy run
    at the same instant as the previous one cannot divide by zero.

  - B{Trigger} (L{killTrigger}): the policy runs when C{killInterval}
    seconds have passed since C{epoch}, or at once when the running dynamic
    processes plus C{processSlack} reach C{maxProcesses} (the code's C{>=};
    the documentation said "exceeds").  C{epoch} starts at the first
    evaluation (2.0: C{if epoch == 0: epoch := now}) and becomes C{now}
    after each run.

  - B{Victims} (L{chooseVictims}): the dynamic classes with at least one
    running process are visited in order; before each, if the running total
    minus the victims chosen so far is C{<= minProcesses}, the pass stops.
    A class with one process loses it when its load factor is below
    C{singleThreshold}; a class with C{n > 1} processes loses one when
    C{(n // (n - 1)) * loadFactor} is below C{multiThreshold} -- integer
    division, so the factor is 2 for C{n = 2} and 1 for C{n >= 3}, as in
    both 2.0 and HEAD.  At most one victim per class per pass.
    C{singleThreshold = 0} never kills the last process of a class.

The 2.0 bugs of SPEC.md section 4 and 9.12 are not copied: only dynamic
classes are ever passed here (2.0.6 also visited AppClass classes); the
smoothing step covers every class; the manager counts a death of a dynamic
process at once (2.0 did not decrement); finished requests of an unknown
application never create a class (the manager only creates classes for
requests that want a process).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

from txfastcgi.config.model import DynamicConfig

__all__ = [
    "ClassLoad",
    "KillTrigger",
    "LoadParameters",
    "StartKind",
    "StartRefusal",
    "Victim",
    "analysisDue",
    "chooseVictims",
    "killTrigger",
    "loadFactor",
    "mayStart",
    "scaledLoad",
    "smoothLoad",
    "startDue",
    "startSpacing",
]

_EPSILON = 1e-6
"""HEAD's C{+1} microsecond in the load factor's denominator, in seconds."""


@dataclass(frozen=True)
class LoadParameters:
    """
    The C{FCGIConfig} values the decisions use (L{DynamicConfig} has the
    others).

    @ivar maxProcesses: C{-maxProcesses}.
    @ivar minProcesses: C{-minProcesses}.
    @ivar maxClassProcesses: C{-maxClassProcesses}.
    @ivar killInterval: C{-killInterval} seconds.
    @ivar updateInterval: C{-updateInterval} seconds.
    @ivar gainValue: C{-gainValue}.
    @ivar singleThreshold: C{-singleThreshhold}.
    @ivar multiThreshold: C{-multiThreshhold}.
    @ivar processSlack: C{-processSlack}.
    @ivar initStartDelay: C{-init-start-delay} seconds.
    @ivar restartDelay: C{-restart-delay} seconds.
    """

    maxProcesses: int = 50
    minProcesses: int = 5
    maxClassProcesses: int = 10
    killInterval: float = 300.0
    updateInterval: float = 300.0
    gainValue: float = 0.5
    singleThreshold: float = 10.0
    multiThreshold: float = 50.0
    processSlack: int = 5
    initStartDelay: float = 1.0
    restartDelay: float = 5.0

    @classmethod
    def fromConfig(cls, config: DynamicConfig) -> LoadParameters:
        """
        @param config: the combined C{FCGIConfig} lines.
        @return: the parameters they give.
        """
        return cls(
            maxProcesses=config.maxProcesses,
            minProcesses=config.minProcesses,
            maxClassProcesses=config.maxClassProcesses,
            killInterval=float(config.killInterval),
            updateInterval=float(config.updateInterval),
            gainValue=float(config.gainValue),
            singleThreshold=float(config.singleThreshold),
            multiThreshold=float(config.multiThreshold),
            processSlack=config.processSlack,
            initStartDelay=float(config.initStartDelay),
            restartDelay=float(config.restartDelay),
        )


class StartRefusal(Enum):
    """
    Why a start was refused.

    @cvar CLASS_LIMIT: the class has C{maxClassProcesses} processes.
    @cvar TOTAL_LIMIT: all classes together have C{maxProcesses}.
    """

    CLASS_LIMIT = "maxClassProcesses"
    TOTAL_LIMIT = "maxProcesses"


def mayStart(
    params: LoadParameters, *, classProcesses: int, totalProcesses: int
) -> StartRefusal | None:
    """
    Whether one more process of a class may start (SPEC.md section 4.4).

    @param params: the parameters.
    @param classProcesses: the class's live processes (draining included).
    @param totalProcesses: the live dynamic processes of every class.
    @return: C{None} if it may, else why not (the class limit is checked
        first, as in 2.0).
    """
    if classProcesses + 1 > params.maxClassProcesses:
        return StartRefusal.CLASS_LIMIT
    if totalProcesses + 1 > params.maxProcesses:
        return StartRefusal.TOTAL_LIMIT
    return None


class StartKind(Enum):
    """
    Why a process of a class is started.

    @cvar ON_DEMAND: a request waits and no process of the class runs.
    @cvar GROWTH: a request waited C{startDelay} for a busy class.
    @cvar RESTART: a process died on its own and C{-restart} replaces it.
    """

    ON_DEMAND = "on demand"
    GROWTH = "growth"
    RESTART = "restart"


def startSpacing(params: LoadParameters, kind: StartKind, *, freshSlot: bool) -> float:
    """
    The least time between the class's last start and a start of this kind.

    @param params: the parameters.
    @param kind: why the process starts.
    @param freshSlot: whether the start fills a slot the class never used.
    @return: seconds: 0 on demand; C{restartDelay} for a restart or for
        growth into a used slot; C{initStartDelay} for growth into a fresh
        slot.
    """
    if kind is StartKind.ON_DEMAND:
        return 0.0
    if kind is StartKind.GROWTH and freshSlot:
        return params.initStartDelay
    return params.restartDelay


def startDue(
    params: LoadParameters,
    kind: StartKind,
    *,
    lastStart: float | None,
    freshSlot: bool,
    now: float,
) -> float:
    """
    When a start of this kind may happen (see the module docstring).

    @param params: the parameters.
    @param kind: why the process starts.
    @param lastStart: the class's most recent start, or C{None}.
    @param freshSlot: whether the start fills a slot the class never used.
    @param now: the time now.
    @return: an absolute time C{>= now}.  A last start "in the future" (the
        clock went back) counts as now.
    """
    if lastStart is None:
        return now
    spacing = startSpacing(params, kind, freshSlot=freshSlot)
    return max(now, min(lastStart, now) + spacing)


@dataclass(frozen=True)
class ClassLoad:
    """
    The load statistics of one dynamic class.

    @ivar path: the application's file name.
    @ivar processes: its running processes (not those being drained).
    @ivar connTime: service seconds of requests completed since the last
        analysis.
    @ivar smooth: the smoothed service seconds per analysis period.
    """

    path: str
    processes: int = 0
    connTime: float = 0.0
    smooth: float = 0.0


def analysisDue(
    params: LoadParameters, lastAnalysis: float, now: float
) -> tuple[int, float]:
    """
    How many analysis periods ended since C{lastAnalysis}.

    @param params: the parameters.
    @param lastAnalysis: when the periods were last folded in.
    @param now: the time now.
    @return: C{(periods, newLastAnalysis)}: the number of whole
        C{updateInterval}s elapsed and the analysis time advanced by that
        many intervals (unchanged when none).  The caller smooths once
        when C{periods > 0} (2.0 folds once per wake-up however many
        periods passed).
    """
    interval = params.updateInterval
    if now < lastAnalysis:
        # The clock went back: restart the period now.
        return 0, now
    periods = int((now - lastAnalysis) // interval)
    return periods, lastAnalysis + periods * interval


def smoothLoad(params: LoadParameters, load: ClassLoad) -> ClassLoad:
    """
    Fold the period's service time into the smoothed value.

    @param params: the parameters.
    @param load: the class's statistics.
    @return: C{smooth = (1 - g) * smooth + g * connTime}, C{connTime = 0}.
    """
    gain = params.gainValue
    return replace(
        load, smooth=(1.0 - gain) * load.smooth + gain * load.connTime, connTime=0.0
    )


def loadFactor(load: ClassLoad, *, now: float, epoch: float) -> float:
    """
    The percentage of the class's available process time used (SPEC.md
    section 4.5).

    @param load: the class's statistics.
    @param now: the time now.
    @param epoch: the last run of the kill policy.
    @return: the load factor (0 with no running process).
    """
    if load.processes <= 0:
        return 0.0
    connTime = load.smooth if load.smooth != 0 else load.connTime
    totalTime = load.processes * max(0.0, now - epoch) + _EPSILON
    return 100.0 * connTime / totalTime


def scaledLoad(processes: int, factor: float) -> float:
    """
    The load compared with C{multiThreshold}: C{(n // (n - 1)) * factor},
    integer division (2 for two processes, 1 for three or more).

    @param processes: C{n}, at least 2.
    @param factor: the load factor.
    @return: the scaled load.
    """
    return (processes // (processes - 1)) * factor


class KillTrigger(Enum):
    """
    Why the kill policy runs.

    @cvar INTERVAL: C{killInterval} seconds passed since the last run.
    @cvar SLACK: running processes plus C{processSlack} reached
        C{maxProcesses}.
    """

    INTERVAL = "killInterval"
    SLACK = "processSlack"


def killTrigger(
    params: LoadParameters, *, epoch: float, now: float, totalProcesses: int
) -> KillTrigger | None:
    """
    Whether the kill policy runs now (SPEC.md section 4.6).

    @param params: the parameters.
    @param epoch: the last run (or the first evaluation).
    @param now: the time now.
    @param totalProcesses: the running dynamic processes of every class.
    @return: the trigger, or C{None}.  The interval is checked first.
    """
    if now - epoch >= params.killInterval:
        return KillTrigger.INTERVAL
    if totalProcesses + params.processSlack >= params.maxProcesses:
        return KillTrigger.SLACK
    return None


@dataclass(frozen=True)
class Victim:
    """
    A class that loses one process, and the figures behind the decision.

    @ivar path: the class.
    @ivar processes: its running processes before the kill.
    @ivar loadFactor: its load factor.
    @ivar compared: the value compared with the threshold (the load factor,
        or the scaled load for several processes).
    @ivar threshold: C{singleThreshold} or C{multiThreshold}.
    @ivar single: whether the single-process rule applied.
    """

    path: str
    processes: int
    loadFactor: float
    compared: float
    threshold: float
    single: bool

    def describe(self) -> str:
        """
        @return: e.g. C{"load 3.2 < singleThreshold 10 with 1 process"}.
        """
        if self.single:
            return (
                f"load {self.loadFactor:.2f} < singleThreshold "
                f"{self.threshold:g} with 1 process"
            )
        return (
            f"load {self.loadFactor:.2f} (scaled {self.compared:.2f}) < "
            f"multiThreshold {self.threshold:g} with {self.processes} processes"
        )


def chooseVictims(
    params: LoadParameters,
    classes: Sequence[ClassLoad],
    *,
    now: float,
    epoch: float,
) -> list[Victim]:
    """
    One pass of the kill policy (SPEC.md section 4.6).

    @param params: the parameters.
    @param classes: every dynamic class, in creation order.
    @param now: the time now.
    @param epoch: the previous run of the policy.
    @return: the classes that lose one process each, in visiting order.
    """
    total = sum(load.processes for load in classes)
    victims: list[Victim] = []
    for load in classes:
        n = load.processes
        if n <= 0:
            continue
        if total - len(victims) <= params.minProcesses:
            break
        factor = loadFactor(load, now=now, epoch=epoch)
        if n == 1:
            if factor < params.singleThreshold:
                victims.append(
                    Victim(load.path, n, factor, factor, params.singleThreshold, True)
                )
        else:
            scaled = scaledLoad(n, factor)
            if scaled < params.multiThreshold:
                victims.append(
                    Victim(load.path, n, factor, scaled, params.multiThreshold, False)
                )
    return victims
