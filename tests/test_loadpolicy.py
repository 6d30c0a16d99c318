"""
Tests for L{txfastcgi.loadpolicy}: the dynamic process manager's pure
decisions (SPEC.md sections 4.4 to 4.6).
"""

from __future__ import annotations

import pytest

from txfastcgi.config.model import DynamicConfig
from txfastcgi.loadpolicy import (
    ClassLoad,
    KillTrigger,
    LoadParameters,
    StartKind,
    StartRefusal,
    Victim,
    analysisDue,
    chooseVictims,
    killTrigger,
    loadFactor,
    mayStart,
    scaledLoad,
    smoothLoad,
    startDue,
    startSpacing,
)

SEED = LoadParameters()


def test_defaultsAreTheSeeds() -> None:
    """
    L{LoadParameters.fromConfig} of the default L{DynamicConfig} gives the
    seed's defaults (SPEC.md section 4.1).
    """
    params = LoadParameters.fromConfig(DynamicConfig())
    assert params == LoadParameters(
        maxProcesses=50,
        minProcesses=5,
        maxClassProcesses=10,
        killInterval=300.0,
        updateInterval=300.0,
        gainValue=0.5,
        singleThreshold=10.0,
        multiThreshold=50.0,
        processSlack=5,
        initStartDelay=1.0,
        restartDelay=5.0,
    )
    assert params == SEED


@pytest.mark.parametrize(
    "classProcesses, totalProcesses, expected",
    [
        (0, 0, None),
        (9, 40, None),
        (10, 10, StartRefusal.CLASS_LIMIT),
        (10, 50, StartRefusal.CLASS_LIMIT),  # class limit checked first
        (3, 49, None),
        (3, 50, StartRefusal.TOTAL_LIMIT),
    ],
)
def test_mayStart(
    classProcesses: int, totalProcesses: int, expected: StartRefusal | None
) -> None:
    """
    A start is refused at C{maxClassProcesses} for the class, then at
    C{maxProcesses} in total.
    """
    assert (
        mayStart(SEED, classProcesses=classProcesses, totalProcesses=totalProcesses)
        is expected
    )


@pytest.mark.parametrize(
    "last, now, expected",
    [
        (0.0, 299.0, (0, 0.0)),
        (0.0, 300.0, (1, 300.0)),
        (0.0, 899.0, (2, 600.0)),  # whole multiples, not "now"
        (100.0, 50.0, (0, 50.0)),  # the clock went back
    ],
)
def test_analysisDue(last: float, now: float, expected: tuple[int, float]) -> None:
    """
    The analysis time advances by whole multiples of C{updateInterval}.
    """
    assert analysisDue(SEED, last, now) == expected


@pytest.mark.parametrize(
    "gain, smooth, connTime, expected",
    [
        (0.5, 0.0, 10.0, 5.0),
        (0.5, 10.0, 0.0, 5.0),
        (0.0, 10.0, 99.0, 10.0),  # trusts history only
        (1.0, 10.0, 3.0, 3.0),  # the newest period only
        (0.25, 8.0, 4.0, 7.0),
    ],
)
def test_smoothLoad(gain: float, smooth: float, connTime: float, expected: float) -> None:
    """
    C{smooth = (1 - g) * smooth + g * connTime}, and the period's time is
    reset.
    """
    params = LoadParameters(gainValue=gain)
    result = smoothLoad(params, ClassLoad("/a", 1, connTime=connTime, smooth=smooth))
    assert result.smooth == pytest.approx(expected)
    assert result.connTime == 0.0
    assert result.processes == 1


@pytest.mark.parametrize(
    "processes, connTime, smooth, elapsed, expected",
    [
        (1, 30.0, 0.0, 300.0, 10.0),  # no smooth yet: the period's time
        (1, 30.0, 60.0, 300.0, 20.0),  # smooth wins over connTime
        (2, 30.0, 0.0, 300.0, 5.0),  # n processes share the time
        (0, 30.0, 0.0, 300.0, 0.0),
        (1, 0.0, 0.0, 300.0, 0.0),
    ],
)
def test_loadFactor(
    processes: int, connTime: float, smooth: float, elapsed: float, expected: float
) -> None:
    """
    The load factor is 100 * service time / (n * elapsed), with the smoothed
    service time when there is one.
    """
    load = ClassLoad("/a", processes, connTime=connTime, smooth=smooth)
    assert loadFactor(load, now=1000.0 + elapsed, epoch=1000.0) == pytest.approx(
        expected, rel=1e-6
    )


def test_loadFactorSameInstant() -> None:
    """
    A policy run at the instant of the previous one does not divide by zero
    (HEAD's +1 microsecond): any service time is a huge load.
    """
    load = ClassLoad("/a", 1, connTime=0.001)
    assert loadFactor(load, now=5.0, epoch=5.0) > 1000
    assert loadFactor(ClassLoad("/a", 1), now=5.0, epoch=5.0) == 0.0


@pytest.mark.parametrize(
    "processes, expected",
    [(2, 2 * 7.0), (3, 7.0), (4, 7.0), (10, 7.0)],
)
def test_scaledLoadIntegerDivision(processes: int, expected: float) -> None:
    """
    C{n // (n - 1)} is 2 for two processes and 1 for three or more.
    """
    assert scaledLoad(processes, 7.0) == expected


@pytest.mark.parametrize(
    "epoch, now, total, expected",
    [
        (0.0, 299.0, 10, None),
        (0.0, 300.0, 10, KillTrigger.INTERVAL),
        (0.0, 10.0, 44, None),
        (0.0, 10.0, 45, KillTrigger.SLACK),  # 45 + 5 >= 50: ">=", not ">"
        (0.0, 10.0, 50, KillTrigger.SLACK),
        (0.0, 300.0, 50, KillTrigger.INTERVAL),
    ],
)
def test_killTrigger(
    epoch: float, now: float, total: int, expected: KillTrigger | None
) -> None:
    """
    The policy runs every C{killInterval}, or at once when running +
    C{processSlack} reaches C{maxProcesses}.
    """
    assert killTrigger(SEED, epoch=epoch, now=now, totalProcesses=total) is expected


def _paths(victims: list[Victim]) -> list[str]:
    return [v.path for v in victims]


def test_singleThreshold() -> None:
    """
    A class with one process loses it when its load is below
    C{singleThreshold}, not when it is at or above.
    """
    params = LoadParameters(minProcesses=0, singleThreshold=10)
    # 300 s elapsed, one process: load = connTime / 3.
    below = ClassLoad("/below", 1, connTime=29.9)
    at = ClassLoad("/at", 1, connTime=30.0 - 1e-9 + 1e-6)
    above = ClassLoad("/above", 1, connTime=31.0)
    victims = chooseVictims(params, [below, at, above], now=300.0, epoch=0.0)
    assert _paths(victims) == ["/below"]
    assert victims[0].single
    assert victims[0].threshold == 10
    assert "singleThreshold" in victims[0].describe()


def test_singleThresholdZeroKeepsTheLastProcess() -> None:
    """
    C{singleThreshold 0} never kills the last process of a class.
    """
    params = LoadParameters(minProcesses=0, singleThreshold=0)
    assert chooseVictims(params, [ClassLoad("/a", 1)], now=300.0, epoch=0.0) == []


@pytest.mark.parametrize(
    "processes, connTime, killed",
    [
        # Two processes: factor = 100 * c / 600; scaled = 2 * factor.
        (2, 149.0, True),  # factor 24.8, scaled 49.7 < 50
        (2, 151.0, False),  # factor 25.2, scaled 50.3
        # Three processes: factor = 100 * c / 900; scaled = 1 * factor.
        (3, 449.0, True),  # 49.9
        (3, 451.0, False),  # 50.1
        # Four: scaling is still 1.
        (4, 599.0, True),
        (4, 601.0, False),
    ],
)
def test_multiThresholdScaling(processes: int, connTime: float, killed: bool) -> None:
    """
    With several processes the load scaled by C{n // (n - 1)} is compared
    with C{multiThreshold}.
    """
    params = LoadParameters(minProcesses=0)
    load = ClassLoad("/a", processes, connTime=connTime)
    victims = chooseVictims(params, [load], now=300.0, epoch=0.0)
    assert bool(victims) is killed
    if victims:
        assert not victims[0].single
        assert victims[0].processes == processes
        assert "multiThreshold" in victims[0].describe()


def test_oneVictimPerClassPerPass() -> None:
    """
    An idle class with many processes loses only one per pass.
    """
    params = LoadParameters(minProcesses=0)
    victims = chooseVictims(params, [ClassLoad("/a", 5)], now=300.0, epoch=0.0)
    assert _paths(victims) == ["/a"]


@pytest.mark.parametrize(
    "minProcesses, expected",
    [
        (0, ["/a", "/b", "/c"]),
        (3, ["/a", "/b", "/c"]),  # 6 > 3, 5 > 3, 4 > 3
        (4, ["/a", "/b"]),  # stops when 6 - 2 <= 4
        (5, ["/a"]),
        (6, []),
        (10, []),
    ],
)
def test_minProcessesFloor(minProcesses: int, expected: list[str]) -> None:
    """
    The pass stops before a class once the running total minus the victims
    is C{<= minProcesses}.
    """
    params = LoadParameters(minProcesses=minProcesses)
    classes = [ClassLoad("/a", 2), ClassLoad("/b", 2), ClassLoad("/c", 2)]
    assert _paths(chooseVictims(params, classes, now=300.0, epoch=0.0)) == expected


def test_classesWithoutProcessesSkipped() -> None:
    """
    Classes with no running process are not visited (and cost nothing
    toward the floor).
    """
    params = LoadParameters(minProcesses=0)
    classes = [ClassLoad("/empty", 0), ClassLoad("/a", 1)]
    assert _paths(chooseVictims(params, classes, now=300.0, epoch=0.0)) == ["/a"]


def test_busyClassSpared() -> None:
    """
    A busy class is spared while an idle one beside it loses a process.
    """
    params = LoadParameters(minProcesses=0)
    busy = ClassLoad("/busy", 2, smooth=300.0)  # factor 50, scaled 100
    idle = ClassLoad("/idle", 2, smooth=1.0)
    assert _paths(chooseVictims(params, [busy, idle], now=300.0, epoch=0.0)) == [
        "/idle"
    ]


def test_loadPatternOverTime() -> None:
    """
    Fed a load pattern period by period, the smoothed load keeps a class
    that was busy alive for a while after the load stops, then lets it go:
    with gain 0.5 the smoothed time halves each period.
    """
    params = LoadParameters(
        minProcesses=0, updateInterval=10, killInterval=10, singleThreshold=10
    )
    load = ClassLoad("/a", 1)
    lastAnalysis = epoch = 0.0
    killedAt = None
    # 10 s periods: fully busy for 3 periods (10 s of service per period),
    # then idle.
    for period in range(1, 12):
        now = period * 10.0
        if period <= 3:
            load = withService(load, 10.0)
        periods, lastAnalysis = analysisDue(params, lastAnalysis, now)
        if periods:
            load = smoothLoad(params, load)
        if killTrigger(params, epoch=epoch, now=now, totalProcesses=1):
            victims = chooseVictims(params, [load], now=now, epoch=epoch)
            epoch = now
            if victims:
                killedAt = now
                break
    # smooth: 5, 7.5, 8.75 (busy), then 4.375, 2.19, 1.09, 0.55 (idle);
    # load factor = 100 * smooth / 10: 10.9 at period 6, 5.5 at period 7.
    assert killedAt == 70.0


def withService(load: ClassLoad, seconds: float) -> ClassLoad:
    """
    @return: C{load} with C{seconds} more service time this period.
    """
    return ClassLoad(load.path, load.processes, load.connTime + seconds, load.smooth)


@pytest.mark.parametrize(
    "kind, freshSlot, expected",
    [
        (StartKind.ON_DEMAND, True, 0.0),
        (StartKind.ON_DEMAND, False, 0.0),
        (StartKind.GROWTH, True, 1.0),
        (StartKind.GROWTH, False, 5.0),
        (StartKind.RESTART, True, 5.0),
        (StartKind.RESTART, False, 5.0),
    ],
)
def test_startSpacing(kind: StartKind, freshSlot: bool, expected: float) -> None:
    """
    Growth into a fresh slot waits C{initStartDelay}, into a used slot and
    a restart C{restartDelay}; a start on demand is not spaced.
    """
    assert startSpacing(SEED, kind, freshSlot=freshSlot) == expected


@pytest.mark.parametrize(
    "kind, lastStart, freshSlot, now, expected",
    [
        (StartKind.GROWTH, None, True, 10.0, 10.0),  # the class's first start
        (StartKind.GROWTH, 9.5, True, 10.0, 10.5),
        (StartKind.GROWTH, 9.0, True, 10.0, 10.0),
        (StartKind.GROWTH, 9.0, False, 10.0, 14.0),
        (StartKind.RESTART, 2.0, True, 10.0, 10.0),
        (StartKind.RESTART, 8.0, True, 10.0, 13.0),
        (StartKind.ON_DEMAND, 9.9, False, 10.0, 10.0),
        (StartKind.GROWTH, 50.0, True, 10.0, 11.0),  # the clock went back
    ],
)
def test_startDue(
    kind: StartKind,
    lastStart: float | None,
    freshSlot: bool,
    now: float,
    expected: float,
) -> None:
    """
    A start is due its spacing after the class's last start, and never
    before now.
    """
    assert startDue(SEED, kind, lastStart=lastStart, freshSlot=freshSlot, now=now) == expected


def test_startSpacingFromConfig() -> None:
    """
    C{-init-start-delay} and C{-restart-delay} reach the parameters.
    """
    params = LoadParameters.fromConfig(DynamicConfig(initStartDelay=0, restartDelay=2))
    assert (params.initStartDelay, params.restartDelay) == (0.0, 2.0)
