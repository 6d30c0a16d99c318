"""
Tests for L{txfastcgi.tap} and the C{twistd fastcgi} plugin: options,
configuration errors as one-line usage errors, C{--check}, the packaged
default configuration, and the wiring of L{txfastcgi.tap.makeService}.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage

from txfastcgi.service import GatewayService
from txfastcgi.tap import Options, defaultConfigPath, defaultEnvironment, makeService

REPO = Path(__file__).resolve().parent.parent
ECHO = REPO / "examples" / "echo"


@pytest.fixture
def directory() -> Path:
    """
    A temporary directory with an C{htdocs} in it (removed afterwards).
    """
    path = Path(tempfile.mkdtemp(prefix="txfastcgi-tap-"))
    (path / "htdocs").mkdir()
    yield path  # type: ignore[misc]
    shutil.rmtree(path, ignore_errors=True)


def goodConfig(directory: Path) -> str:
    """
    Write a valid configuration.
    """
    path = directory / "httpd.conf"
    path.write_text(
        "Listen 127.0.0.1:18090\nDocumentRoot htdocs\nStartServers 2\n"
        f"AppClass {ECHO} -processes 2 -initial-env STATE=TEXAS\n"
    )
    return str(path)


def badConfig(directory: Path) -> str:
    """
    Write a configuration with an error on line 2.
    """
    path = directory / "bad.conf"
    path.write_text(f"Listen 127.0.0.1:18090\nAppClass {ECHO} -processes many\n")
    return str(path)


def test_config(directory: Path) -> None:
    """
    C{--config} reads and checks the file while options are parsed.
    """
    options = Options()
    options.parseOptions(["--config", goodConfig(directory)])
    config = options["serverConfig"]
    assert [a.path for a in config.appClasses] == [str(ECHO)]
    assert options["drain-timeout"] == 10.0


def test_badConfigIsUsageError(directory: Path) -> None:
    """
    A configuration error becomes a L{usage.UsageError} whose message is
    the configuration's one line.
    """
    path = badConfig(directory)
    with pytest.raises(usage.UsageError) as raised:
        Options().parseOptions(["--config", path])
    assert str(raised.value) == (
        f"{path}:2: AppClass: -processes must be an integer between 1 and 50 "
        "(got 'many')"
    )


def test_missingConfig(directory: Path) -> None:
    """
    A missing file is a one-line usage error too.
    """
    with pytest.raises(usage.UsageError) as raised:
        Options().parseOptions(["--config", str(directory / "nope.conf")])
    assert "nope.conf" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_badEndpoint(directory: Path) -> None:
    """
    A C{Listen} endpoint description is checked with C{serverFromString}.
    """
    path = directory / "httpd.conf"
    path.write_text("Listen bogus:1:2\nDocumentRoot htdocs\n")
    with pytest.raises(usage.UsageError) as raised:
        Options().parseOptions(["--config", str(path)])
    assert str(raised.value).startswith(f"{path}:1: Listen: ")


def test_checkGood(directory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """
    C{--check} on a good file prints its notes and C{Syntax OK} and exits
    with status 0.
    """
    path = goodConfig(directory)
    with pytest.raises(SystemExit) as raised:
        Options().parseOptions(["--check", "--config", path])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    assert out.endswith("Syntax OK\n")
    assert f"{path}:3: StartServers" in out


def test_checkBad(directory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """
    C{--check} on a bad file prints the error line on stderr and exits with
    status 1.
    """
    path = badConfig(directory)
    with pytest.raises(SystemExit) as raised:
        Options().parseOptions(["-t", "-c", path])
    assert raised.value.code == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"{path}:2: AppClass: -processes must be an integer between 1 and 50 "
        "(got 'many')\n"
    )
    assert captured.out == ""


def test_negativeDrainTimeout(directory: Path) -> None:
    """
    A negative C{--drain-timeout} is refused.
    """
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["-c", goodConfig(directory), "--drain-timeout", "-1"])


def test_defaultConfig() -> None:
    """
    Without C{--config} the packaged default configuration is served: the
    packaged echo at C{/examples/echo}, its PATH led by this Python's
    directory.
    """
    options = Options()
    options.parseOptions([])
    assert options["configPath"] == defaultConfigPath()
    config = options["serverConfig"]
    [echo] = config.appClasses
    assert echo.path == os.path.join(
        os.path.dirname(defaultConfigPath()), "htdocs", "examples", "echo"
    )
    assert echo.initialEnv == ("STATE=TEXAS", "PATH")
    assert config.documentRootPath + "/examples/echo" == echo.path
    assert options["environ"]["PATH"].split(":")[0] == os.path.dirname(sys.executable)
    assert [listen.endpointDescription() for listen in config.listeners] == [
        "tcp:5556:interface=127.0.0.1"
    ]


def test_defaultEnvironment() -> None:
    """
    L{defaultEnvironment} puts the running Python's directory first in PATH
    and leaves the rest alone.
    """
    env = defaultEnvironment({"PATH": "/bin", "HOME": "/root"})
    assert env == {"PATH": os.path.dirname(sys.executable) + ":/bin", "HOME": "/root"}


def test_packagedEchoIsExamplesEcho() -> None:
    """
    The echo shipped in the package is the same file as C{examples/echo},
    and executable.
    """
    packaged = Path(defaultConfigPath()).parent / "htdocs" / "examples" / "echo"
    assert packaged.read_bytes() == ECHO.read_bytes()
    assert os.access(packaged, os.X_OK)


def test_pluginDiscoverable() -> None:
    """
    twistd finds the C{fastcgi} plugin, and its options parse.
    """
    [maker] = [p for p in getPlugins(IServiceMaker) if p.tapname == "fastcgi"]
    options = maker.options()
    options.parseOptions([])
    assert maker.description


def test_noReactorImported() -> None:
    """
    Importing the plugin and the tap module, and parsing options, installs
    no reactor (STYLE.md P1).
    """
    code = (
        "import sys\n"
        "import twisted.plugins.txfastcgi_plugin, txfastcgi.tap\n"
        "txfastcgi.tap.Options().parseOptions([])\n"
        "print('twisted.internet.reactor' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "False", result.stderr


def test_makeService(directory: Path) -> None:
    """
    L{makeService} builds a L{GatewayService} from the parsed configuration,
    with the supervisor as a named child; nothing is opened.
    """
    options = Options()
    options.parseOptions(["--config", goodConfig(directory), "--drain-timeout", "3"])
    service = makeService(options, MemoryReactorClock())
    assert isinstance(service, GatewayService)
    assert service.drainTimeout == 3.0
    assert service.supervisor.paths == [str(ECHO)]
    assert service.getServiceNamed("supervisor") is service.supervisor
    assert service.state == "new"
    assert service.runAs is None or os.geteuid() == 0


def test_twistdUidWins(directory: Path) -> None:
    """
    twistd's C{--uid}/C{--gid} take precedence over C{User}/C{Group}: the
    sockets and logs are given to that account and twistd, not the
    service, switches to it.
    """
    from twisted.scripts.twistd import ServerOptions

    path = directory / "httpd.conf"
    path.write_text(Path(goodConfig(directory)).read_text() + "User #4000001\n")
    options = ServerOptions()
    options.parseOptions(["--uid", "4000003", "--gid", "4000004", "fastcgi", "--config", str(path)])
    service = makeService(options.subOptions, MemoryReactorClock())
    assert service.runAs is not None
    assert (service.runAs.uid, service.runAs.gid, service.runAs.switch) == (
        4000003,
        4000004,
        False,
    )
