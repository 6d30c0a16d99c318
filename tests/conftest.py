"""
Shared pytest fixtures.

Do not import C{twisted.internet.reactor} here at module level:
pytest-twisted installs the reactor in C{pytest_configure}.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from tests import peers


@pytest.hookimpl(trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """
    Skip (or fail, with TXFASTCGI_REQUIRE_PEERS=1) a test marked
    C{@pytest.mark.peer("nginx")} when that program is missing.
    """
    for marker in item.iter_markers("peer"):
        for name in marker.args:
            peers.requireNamedPeer(name)


@pytest.fixture(scope="session", autouse=True)
def stopPeersAtSessionEnd() -> Iterator[None]:
    """
    Stop every peer still running when the session ends.
    """
    yield
    peers.stopAll()


@pytest.fixture(autouse=True)
def stopPeersStartedByTest() -> Iterator[None]:
    """
    Stop the peers a test started (itself or through function-scoped
    fixtures) and did not stop.  Peers started by module- or session-scoped
    fixtures are set up before this fixture and are left alone.
    """
    before = {id(process) for process in peers.liveProcesses()}
    yield
    for process in reversed(peers.liveProcesses()):
        if id(process) not in before:
            process.stop()


@pytest.fixture(scope="session")
def responderBinary() -> str:
    """
    The path of the compiled libfcgi responder (tests/apps/responder.c).
    Skips (or fails, with TXFASTCGI_REQUIRE_PEERS=1) without gcc and
    libfcgi-dev.
    """
    return peers.buildResponder()


@pytest.fixture
def peerDir() -> Iterator[str]:
    """
    A fresh, short directory (unix socket paths must fit in 107 bytes) for
    a test's peers: sockets, configs, logs.  Removed afterwards, after the
    peers in it are stopped.
    """
    directory = peers.makeDirectory()
    yield directory
    for process in reversed(peers.liveProcesses()):
        if process.logPath.startswith(directory + os.sep):
            process.stop()
    shutil.rmtree(directory, ignore_errors=True)
