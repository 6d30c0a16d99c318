"""
Tests for the mod_fastcgi directives of L{txfastcgi.config}: C{AppClass}
(C{FastCgiServer}), C{ExternalAppClass} (C{FastCgiExternalServer}),
C{FastCgiIpcDir} and C{FCGIConfig} (C{FastCgiConfig}): every option's
default, range boundaries and errors, exclusivity, duplicates, path and
socket checks (SPEC.md sections 1-4 and 6).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_config_directives import Conf, at
from txfastcgi.appclass import AppClassConfig, ExternalAppClassConfig, IpcDirConfig
from txfastcgi.config import ApplicationOptions, DynamicConfig, Note
from txfastcgi.config.directives import (
    APPCLASS_OPTIONS,
    DYNAMIC_OPTIONS,
    EXTERNAL_OPTIONS,
)
from txfastcgi.ipc import unixPathLimit


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Conf:
    """
    A L{Conf} in a fresh temporary directory, with an executable C{app}.
    """
    monkeypatch.chdir(tmp_path)
    c = Conf(tmp_path)
    c.executable("app")
    return c


# --- AppClass ----------------------------------------------------------------------


def test_appClassDefaults(conf: Conf) -> None:
    """
    An C{AppClass} without options has the seed's defaults (listen queue
    100, Decision 2) and mod_fastcgi 2.4's for later options.
    """
    config = conf.read("AppClass app\n")
    [app] = config.appClasses
    path = str(conf.base / "app")
    assert app == AppClassConfig(path)
    assert (app.processes, app.listenQueueDepth, app.restartDelay, app.priority) == (
        1,
        100,
        5,
        0,
    )
    assert (app.port, app.socket, app.initialEnv, app.minServerLife) == (
        None,
        None,
        (),
        30,
    )
    assert (app.initStartDelay, app.uid, app.gid) == (0, None, None)
    assert (app.directive, app.source) == ("AppClass", at(1))
    assert config.applicationOptions == (ApplicationOptions(path, source=at(1)),)
    options = config.optionsFor(path)
    assert (options.appConnTimeout, options.idleTimeout) == (0, 30)
    assert (options.flush, options.passHeaders) == (False, ())
    assert config.optionsFor("/dynamic/app") == ApplicationOptions("/dynamic/app")


def test_fastCgiServerIsAnAlias(conf: Conf) -> None:
    """
    C{FastCgiServer} is C{AppClass} under its later name, any case.
    """
    config = conf.read("fastcgiserver app -processes 3\n")
    [app] = config.appClasses
    assert app == AppClassConfig(str(conf.base / "app"), processes=3)
    assert app.directive == "fastcgiserver"


@pytest.mark.parametrize(
    "option, field, value, expected",
    [
        ("-processes", "processes", "1", 1),
        ("-processes", "processes", "50", 50),
        ("-listen-queue-depth", "listenQueueDepth", "1", 1),
        ("-listen-queue-depth", "listenQueueDepth", "2147483647", 2147483647),
        ("-restart-delay", "restartDelay", "0", 0),
        ("-restart-delay", "restartDelay", "3600", 3600),
        ("-priority", "priority", "0", 0),
        ("-priority", "priority", "20", 20),
        ("-port", "port", "1", 1),
        ("-port", "port", "65535", 65535),
        ("-socket", "socket", "echo.sock", "echo.sock"),
        ("-min-server-life", "minServerLife", "0", 0),
        ("-init-start-delay", "initStartDelay", "0", 0),
        ("-init-start-delay", "initStartDelay", "2", 2),
        ("-user", "uid", "root", 0),
        ("-user", "uid", "#0", 0),
        ("-group", "gid", "#0", 0),
        ("-Processes", "processes", "+7", 7),
        ("-LISTEN-QUEUE-DEPTH", "listenQueueDepth", "5", 5),
    ],
)
def test_appClassOptions(
    conf: Conf, option: str, field: str, value: str, expected: object
) -> None:
    """
    Each AppClass option accepts its boundary values; names are
    case-insensitive.
    """
    [app] = conf.read(f"AppClass app {option} {value}\n").appClasses
    assert getattr(app, field) == expected


@pytest.mark.parametrize(
    "option, field, value, expected",
    [
        ("-appConnTimeout", "appConnTimeout", "0", 0),
        ("-appconntimeout", "appConnTimeout", "15", 15),
        ("-idle-timeout", "idleTimeout", "1", 1),
        ("-pass-header", "passHeaders", "Authorization", ("Authorization",)),
    ],
)
def test_appClassConnectionOptions(
    conf: Conf, option: str, field: str, value: str, expected: object
) -> None:
    """
    The options L{AppClassConfig} does not hold land in the class's
    L{ApplicationOptions}.
    """
    config = conf.read(f"AppClass app {option} {value}\n")
    assert getattr(config.optionsFor(str(conf.base / "app")), field) == expected


def test_appClassFlagsAndRepeats(conf: Conf) -> None:
    """
    C{-flush} takes no value; C{-initial-env} and C{-pass-header} repeat
    and keep their order.
    """
    config = conf.read(
        "AppClass app -flush -initial-env A=1 -pass-header Authorization "
        "-initial-env B= -pass-header X-Forwarded-For -initial-env HOME\n",
        environ={"HOME": "/root"},
    )
    [app] = config.appClasses
    assert app.initialEnv == ("A=1", "B=", "HOME")
    assert app.environment({"HOME": "/root", "PATH": "/bin"}).env == {
        "A": "1",
        "B": "",
        "HOME": "/root",
    }
    options = config.optionsFor(app.path)
    assert options.flush is True
    assert options.passHeaders == ("Authorization", "X-Forwarded-For")
    assert config.notes == ()


def test_initialEnvCopyOfUnsetNameIsNoted(conf: Conf) -> None:
    """
    C{-initial-env NAME} for a name the server's environment lacks is kept
    (resolved at start-up) and noted now.
    """
    config = conf.read("AppClass app -initial-env NOPE\n", environ={})
    assert config.appClasses[0].initialEnv == ("NOPE",)
    assert config.notes == (
        Note(
            at(1),
            "AppClass",
            "-initial-env NOPE: NOPE is not set in the server's environment; the "
            "application will not get it",
        ),
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (
            "-processes many",
            "-processes must be an integer between 1 and 50 (got 'many')",
        ),
        ("-processes 0", "-processes must be an integer between 1 and 50 (got '0')"),
        ("-processes 51", "-processes must be an integer between 1 and 50 (got '51')"),
        (
            "-processes 1.5",
            "-processes must be an integer between 1 and 50 (got '1.5')",
        ),
        ("-processes ''", "-processes must be an integer between 1 and 50 (got '')"),
        ("-PROCESSES 0", "-PROCESSES must be an integer between 1 and 50 (got '0')"),
        (
            "-listen-queue-depth 0",
            "-listen-queue-depth must be an integer >= 1 (got '0')",
        ),
        (
            "-listen-queue-depth 2147483648",
            "-listen-queue-depth must be an integer between 1 and 2147483647 (got '2147483648')",
        ),
        ("-restart-delay -1", "-restart-delay must be an integer >= 0 (got '-1')"),
        ("-restart-delay 1.5", "-restart-delay must be an integer >= 0 (got '1.5')"),
        ("-priority -1", "-priority must be an integer between 0 and 20 (got '-1')"),
        ("-priority 21", "-priority must be an integer between 0 and 20 (got '21')"),
        ("-port 0", "-port must be an integer between 1 and 65535 (got '0')"),
        ("-port 65536", "-port must be an integer between 1 and 65535 (got '65536')"),
        ("-min-server-life -1", "-min-server-life must be an integer >= 0 (got '-1')"),
        (
            "-init-start-delay -1",
            "-init-start-delay must be an integer >= 0 (got '-1')",
        ),
        ("-appConnTimeout -1", "-appConnTimeout must be an integer >= 0 (got '-1')"),
        ("-idle-timeout 0", "-idle-timeout must be an integer >= 1 (got '0')"),
        ("-socket ''", "-socket needs a non-empty value (got '')"),
        ("-pass-header X:Y", "-pass-header needs a header name (got 'X:Y')"),
        ("-initial-env =x", "-initial-env needs NAME=VALUE or NAME (got '=x')"),
        ("-initial-env ''", "-initial-env needs NAME=VALUE or NAME (got '')"),
        ("-initial-env 'A B=1'", "-initial-env needs NAME=VALUE or NAME (got 'A B=1')"),
        ("-user no-such-user-here", "-user: no such user (got 'no-such-user-here')"),
        (
            "-group no-such-group-here",
            "-group: no such group (got 'no-such-group-here')",
        ),
        ("-user #x", "-user #ID must be an integer >= 0 (got 'x')"),
        ("-processes", "-processes needs a value"),
        ("-processes 2 -socket", "-socket needs a value"),
        ("-bogus 1", "unknown option (got '-bogus')"),
        ("stray", "expected an option starting with '-' (got 'stray')"),
        ("-processes 2 -processes 3", "-processes is given twice (got '-processes')"),
        ("-port 1 -PORT 2", "-PORT is given twice (got '-PORT')"),
        (
            "-port 8000 -socket s",
            "-port and -socket are mutually exclusive (got '-port 8000 -socket s')",
        ),
        (
            "-socket s -port 8000",
            "-port and -socket are mutually exclusive (got '-port 8000 -socket s')",
        ),
        ("-host a:1", "unknown option (got '-host')"),
        (
            "-nph",
            "-nph is not supported: responses are always parsed, and nph- scripts are "
            "refused (got '-nph')",
        ),
    ],
)
def test_appClassOptionErrors(conf: Conf, options: str, message: str) -> None:
    """
    Every bad AppClass option is one error at its line, in the STYLE.md
    form, naming the option as written.
    """
    assert (
        conf.error(f"Port 80\nAppClass app {options}\n")
        == f"httpd.conf:2: AppClass: {message}"
    )


def test_appClassRepeatedOptionsAllowed(conf: Conf) -> None:
    """
    The repeatable options may be given several times.
    """
    [app] = conf.read("AppClass app -initial-env A=1 -initial-env A=2\n").appClasses
    assert app.environment({}).env == {"A": "2"}


@pytest.mark.parametrize(
    "setup, line, message",
    [
        ("", "AppClass missing", "no such file (got 'missing')"),
        ("", "AppClass .", "not a regular file (got '.')"),
        ("plain", "AppClass plain", "not executable by the server (got 'plain')"),
        (
            "",
            "AppClass -processes 1",
            "the first argument must be the application's path (got '-processes')",
        ),
        (
            "",
            "AppClass ''",
            "the first argument must be the application's path (got '')",
        ),
    ],
)
def test_appClassPathErrors(conf: Conf, setup: str, line: str, message: str) -> None:
    """
    The executable must exist, be a regular file and be executable.
    """
    if setup:
        conf.executable(setup, mode=0o644)
    assert conf.error(f"{line}\n") == f"httpd.conf:1: AppClass: {message}"


@pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to check another user's access"
)
def test_appClassExecutableByUser(conf: Conf) -> None:
    """
    As root with a C{User} (or C{-user}), the file must be executable by that
    account, whichever order the lines are in.
    """
    conf.executable("private", mode=0o700)
    assert conf.error("AppClass private\nUser #4242\n") == (
        "httpd.conf:1: AppClass: not executable by user #4242 (got 'private')"
    )
    assert conf.error("AppClass private -user #4242\n") == (
        "httpd.conf:1: AppClass: not executable by user #4242 (got 'private')"
    )
    conf.read("AppClass private\nUser root\n")
    conf.executable("shared", mode=0o701)
    conf.read("AppClass shared -user #4242\n")


@pytest.mark.parametrize(
    "lines, message",
    [
        (
            "AppClass app\nAppClass app\n",
            "httpd.conf:2: AppClass: redefinition of the application defined by AppClass at "
            "httpd.conf:1 (got 'app')",
        ),
        (
            "AppClass {base}/app\nFastCgiServer {base}//sub/../app -port 1\n",
            "httpd.conf:2: FastCgiServer: redefinition of the application defined by AppClass "
            "at httpd.conf:1 (got '{base}//sub/../app')",
        ),
        (
            "ExternalAppClass {base}/app -host h:1\nAppClass app\n",
            "httpd.conf:2: AppClass: redefinition of the application defined by "
            "ExternalAppClass at httpd.conf:1 (got 'app')",
        ),
        (
            "AppClass app -port 9000\nAppClass app2 -port 9000\n",
            "httpd.conf:2: AppClass: -port is already used by the AppClass at httpd.conf:1 "
            "(got 9000)",
        ),
        (
            "AppClass app -socket s\nAppClass app2 -socket {base}/ipc/s\nFastCgiIpcDir ipc\n",
            "httpd.conf:2: AppClass: -socket {base}/ipc/s is already used by the AppClass at "
            "httpd.conf:1 (got '{base}/ipc/s')",
        ),
    ],
)
def test_appClassConflicts(conf: Conf, lines: str, message: str) -> None:
    """
    A path (after normalisation) defines one application; a port or socket
    serves one class.
    """
    conf.executable("app2")
    assert conf.error(lines.format(base=conf.base)) == message.format(base=conf.base)


@pytest.mark.parametrize(
    "lines, message",
    [
        (
            "Port 8000\nAppClass app -port 8000\n",
            "httpd.conf:2: AppClass: -port 8000 is the port the server itself listens "
            "on (Port at httpd.conf:1) (got 8000)",
        ),
        (
            "AppClass app -port 80\n",
            "httpd.conf:1: AppClass: -port 80 is the port the server itself listens "
            "on (the default Port) (got 80)",
        ),
        (
            "Listen 127.0.0.1:9000\nAppClass app -port 9000\n",
            "httpd.conf:2: AppClass: -port 9000 is the port the server itself listens "
            "on (Listen at httpd.conf:1) (got 9000)",
        ),
    ],
)
def test_appClassPortCollidesWithListener(conf: Conf, lines: str, message: str) -> None:
    """
    A managed application cannot take a port the server listens on (on all
    interfaces or the loopback one).
    """
    assert conf.error(lines) == message


@pytest.mark.parametrize(
    "lines",
    [
        "Listen 192.0.2.1:9000\nAppClass app -port 9000\n",
        "Port 9000\nBindAddress 192.0.2.1\nAppClass app -port 9000\n",
        "Listen ssl:9000\nAppClass app -port 9000\n",
    ],
)
def test_appClassPortOnOtherInterface(conf: Conf, lines: str) -> None:
    """
    A listener on another interface (or an endpoint description, which the
    reader does not interpret) does not collide.
    """
    assert conf.read(lines).appClasses[0].port == 9000


def test_appClassPathsAreServerRootRelativeAndNormalised(conf: Conf) -> None:
    """
    Relative application paths are ServerRoot-relative; all are normalised.
    """
    conf.executable("bin/app")
    config = conf.read(
        f"ServerRoot {conf.base}/bin\nAppClass ./app\nAppClass {conf.base}//./app\n"
    )
    assert [a.path for a in config.appClasses] == [
        str(conf.base / "bin/app"),
        str(conf.base / "app"),
    ]


def test_socketsAndIpcDir(conf: Conf) -> None:
    """
    C{FastCgiIpcDir} may come after the classes (it is given once); relative
    names stay as written for the supervisor to resolve in it, and are
    checked against it now.
    """
    config = conf.read(
        "AppClass app -socket echo.sock\nExternalAppClass /ext -socket echo.sock\n"
        "FastCgiIpcDir ipc/\n"
    )
    assert config.ipcDir == IpcDirConfig(str(conf.base / "ipc"))
    assert config.ipcDir.source == at(3)
    assert config.ipcDir.directive == "FastCgiIpcDir"
    assert config.appClasses[0].socket == "echo.sock"
    assert config.externalAppClasses[0].socket == "echo.sock"


@pytest.mark.parametrize(
    "line",
    [
        "AppClass app -socket ../out.sock",
        "ExternalAppClass /ext -socket ../out.sock",
    ],
)
def test_relativeSocketMustStayInIpcDir(conf: Conf, line: str) -> None:
    """
    A relative socket name may not climb out of the IPC directory.
    """
    message = conf.error(f"FastCgiIpcDir /srv/ipc\n{line}\n")
    assert message.startswith(
        f"httpd.conf:2: {line.split()[0]}: -socket ../out.sock: a relative name must stay inside FastCgiIpcDir /srv/ipc"
    )
    assert message.endswith("(got '../out.sock')")


def test_socketPathTooLong(conf: Conf) -> None:
    """
    A socket path longer than the system's C{sun_path} is an error at the
    class's line; so is an IPC directory too long for a generated name.
    """
    limit = unixPathLimit()
    longName = "s" * limit
    message = conf.error(f"AppClass app -socket /{longName}\n")
    assert message.startswith(
        f"httpd.conf:1: AppClass: socket path /{longName} is {limit + 1} bytes long"
    )
    deep = "/" + "d" * (limit - 10)
    message = conf.error(f"FastCgiIpcDir {deep}\n\nAppClass app\n")
    assert message.startswith(
        "httpd.conf:3: AppClass: the generated socket name would be too long: socket path "
        f"{deep}/OM_WS_0.9999999 is"
    )
    assert message.endswith(f"(got '{deep}')")
    conf.read(f"FastCgiIpcDir {deep}\nAppClass app -port 9000\n")


def test_ipcDirDefaultAndErrors(conf: Conf) -> None:
    """
    The IPC directory defaults to C{/tmp} (the server checks and creates it
    at start-up); it is given once and must not be empty.
    """
    assert conf.read("").ipcDir == IpcDirConfig("/tmp")
    assert conf.error("FastCgiIpcDir /a\nFastCgiIpcDir /b\n") == (
        "httpd.conf:2: FastCgiIpcDir: given twice (first at httpd.conf:1) (got '/b')"
    )
    assert (
        conf.error('FastCgiIpcDir ""\n')
        == "httpd.conf:1: FastCgiIpcDir: needs a directory (got '')"
    )
    assert conf.read("FastCgiIpcDir //var//run/\n").ipcDir.path == "/var/run"


# --- ExternalAppClass ----------------------------------------------------------------


@pytest.mark.parametrize(
    "options, host, socket",
    [
        ("-host localhost:8978", "localhost:8978", None),
        ("-host 10.0.0.1:1", "10.0.0.1:1", None),
        ("-host [::1]:65535", "[::1]:65535", None),
        ("-HOST remote.example.com:9000", "remote.example.com:9000", None),
        ("-socket echo.sock", None, "echo.sock"),
        ("-socket /run/app.sock", None, "/run/app.sock"),
    ],
)
def test_externalAppClass(
    conf: Conf, options: str, host: str | None, socket: str | None
) -> None:
    """
    C{ExternalAppClass} takes C{-host} or C{-socket}; its path is a key
    that need not exist.
    """
    config = conf.read(f"ExternalAppClass /nowhere/remote {options}\n")
    assert config.externalAppClasses == (
        ExternalAppClassConfig("/nowhere/remote", host=host, socket=socket),
    )
    assert config.appClasses == ()
    assert config.optionsFor("/nowhere/remote") == ApplicationOptions(
        "/nowhere/remote", source=at(1)
    )


def test_fastCgiExternalServerAndOptions(conf: Conf) -> None:
    """
    C{FastCgiExternalServer} is the later name; it takes the connection
    options.
    """
    config = conf.read(
        "FastCgiExternalServer ext -host h:1 -appConnTimeout 3 -idle-timeout 60 -flush "
        "-pass-header Authorization\n"
    )
    [ext] = config.externalAppClasses
    assert ext.path == str(conf.base / "ext")
    assert ext.directive == "FastCgiExternalServer"
    assert ext.hostAndPort == ("h", 1)
    assert config.optionsFor(ext.path) == ApplicationOptions(
        ext.path, 3, 60, True, ("Authorization",), at(1)
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ("", "needs exactly one of -host HOST:PORT and -socket NAME"),
        ("-flush", "needs exactly one of -host HOST:PORT and -socket NAME"),
        (
            "-host a:1 -socket s",
            "-host and -socket are mutually exclusive (got '-host a:1 -socket s')",
        ),
        (
            "-host a",
            "-host must be HOST:PORT with a port between 1 and 65535 (got 'a')",
        ),
        (
            "-host a:0",
            "-host must be HOST:PORT with a port between 1 and 65535 (got 'a:0')",
        ),
        (
            "-host a:65536",
            "-host must be HOST:PORT with a port between 1 and 65535 (got 'a:65536')",
        ),
        (
            "-host :80",
            "-host must be HOST:PORT with a port between 1 and 65535 (got ':80')",
        ),
        (
            "-host a_b:80",
            "-host must be HOST:PORT with a port between 1 and 65535 (got 'a_b:80')",
        ),
        ("-host a:1 -host b:2", "-host is given twice (got '-host')"),
        ("-port 80", "unknown option (got '-port')"),
        ("-processes 2", "unknown option (got '-processes')"),
        (
            "-user root",
            "-user only applies to applications the server starts (AppClass) (got '-user')",
        ),
        ("-host", "-host needs a value"),
    ],
)
def test_externalAppClassErrors(conf: Conf, options: str, message: str) -> None:
    """
    Exactly one well-formed C{-host} or C{-socket}; no process options.
    """
    assert conf.error(f"ExternalAppClass /x {options}\n") == (
        f"httpd.conf:1: ExternalAppClass: {message}"
    )


def test_externalAppClassNeedsPath(conf: Conf) -> None:
    """
    A line with no arguments reports the syntax.
    """
    assert conf.error("ExternalAppClass\n") == (
        "httpd.conf:1: ExternalAppClass: takes at least 1 argument: ExternalAppClass "
        "PATH -host HOST:PORT|-socket NAME [OPTIONS]"
    )


# --- FCGIConfig ------------------------------------------------------------------------


def test_dynamicDefaults(conf: Conf) -> None:
    """
    Without C{FCGIConfig} the seed's defaults apply (listen queue 100).
    """
    dynamic = conf.read("").dynamic
    assert dynamic == DynamicConfig()
    assert (
        dynamic.maxProcesses,
        dynamic.minProcesses,
        dynamic.maxClassProcesses,
        dynamic.killInterval,
        dynamic.updateInterval,
        dynamic.gainValue,
        dynamic.singleThreshold,
        dynamic.multiThreshold,
        dynamic.startDelay,
        dynamic.appConnTimeout,
        dynamic.processSlack,
    ) == (50, 5, 10, 300, 300, 0.5, 10, 50, 3, 15, 5)
    assert (
        dynamic.initialEnv,
        dynamic.initStartDelay,
        dynamic.restartDelay,
        dynamic.listenQueueDepth,
        dynamic.restart,
        dynamic.autoUpdate,
        dynamic.idleTimeout,
        dynamic.minServerLife,
        dynamic.flush,
        dynamic.passHeaders,
        dynamic.sources,
    ) == ((), 1, 5, 100, False, False, 30, 30, False, (), ())


@pytest.mark.parametrize(
    "option, field, value, expected",
    [
        ("-minProcesses 0 -processSlack 1 -maxProcesses", "maxProcesses", "1", 1),
        ("-maxProcesses", "maxProcesses", "250", 250),
        ("-minProcesses", "minProcesses", "0", 0),
        ("-maxClassProcesses", "maxClassProcesses", "1", 1),
        ("-killInterval", "killInterval", "1", 1),
        ("-updateInterval", "updateInterval", "1", 1),
        ("-gainValue", "gainValue", "0", 0.0),
        ("-gainValue", "gainValue", "1.0", 1.0),
        ("-gainValue", "gainValue", ".25", 0.25),
        ("-singleThreshhold", "singleThreshold", "0", 0),
        ("-singleThreshold", "singleThreshold", "100", 100),
        ("-multiThreshhold", "multiThreshold", "1", 1),
        ("-multiThreshold", "multiThreshold", "100", 100),
        ("-startDelay", "startDelay", "1", 1),
        ("-appConnTimeout", "appConnTimeout", "0", 0),
        ("-processSlack", "processSlack", "1", 1),
        ("-init-start-delay", "initStartDelay", "0", 0),
        ("-restart-delay", "restartDelay", "0", 0),
        ("-listen-queue-depth", "listenQueueDepth", "1", 1),
        ("-idle-timeout", "idleTimeout", "1", 1),
        ("-min-server-life", "minServerLife", "0", 0),
        ("-pass-header", "passHeaders", "Authorization", ("Authorization",)),
        ("-initial-env", "initialEnv", "A=1", ("A=1",)),
        ("-MAXPROCESSES", "maxProcesses", "7", 7),
    ],
)
def test_dynamicOptions(
    conf: Conf, option: str, field: str, value: str, expected: object
) -> None:
    """
    Each FCGIConfig option accepts its boundary values; names are
    case-insensitive and both threshold spellings work.
    """
    dynamic = conf.read(f"FCGIConfig {option} {value}\n").dynamic
    assert getattr(dynamic, field) == expected
    assert dynamic.sources == (at(1),)


@pytest.mark.parametrize(
    "flag, field",
    [("-restart", "restart"), ("-autoUpdate", "autoUpdate"), ("-flush", "flush")],
)
def test_dynamicFlags(conf: Conf, flag: str, field: str) -> None:
    """
    The flags take no value.
    """
    assert (
        getattr(conf.read(f"FastCgiConfig {flag} -maxProcesses 60\n").dynamic, field)
        is True
    )


def test_dynamicLastValueWins(conf: Conf) -> None:
    """
    The last value of an option wins, within a line, across lines, and
    across the two threshold spellings; repeatable options accumulate.
    """
    dynamic = conf.read(
        "FCGIConfig -maxProcesses 20 -maxProcesses 30 -singleThreshhold 5 -initial-env A=1\n"
        "FastCgiConfig -singleThreshold 7 -initial-env B=2 -killInterval 60\n"
    ).dynamic
    assert (dynamic.maxProcesses, dynamic.singleThreshold, dynamic.killInterval) == (
        30,
        7,
        60,
    )
    assert dynamic.initialEnv == ("A=1", "B=2")
    assert dynamic.minProcesses == 5
    assert dynamic.sources == (at(1), at(2))


@pytest.mark.parametrize(
    "options, message",
    [
        (
            "-maxProcesses 0",
            "-maxProcesses must be an integer between 1 and 250 (got '0')",
        ),
        (
            "-maxProcesses 251",
            "-maxProcesses must be an integer between 1 and 250 (got '251')",
        ),
        (
            "-minProcesses -1",
            "-minProcesses must be an integer between 0 and 250 (got '-1')",
        ),
        (
            "-minProcesses 251",
            "-minProcesses must be an integer between 0 and 250 (got '251')",
        ),
        (
            "-maxClassProcesses 0",
            "-maxClassProcesses must be an integer between 1 and 250 (got '0')",
        ),
        (
            "-maxClassProcesses 251",
            "-maxClassProcesses must be an integer between 1 and 250 (got '251')",
        ),
        ("-killInterval 0", "-killInterval must be an integer >= 1 (got '0')"),
        ("-updateInterval 0", "-updateInterval must be an integer >= 1 (got '0')"),
        (
            "-gainValue -0.1",
            "-gainValue must be a number between 0.0 and 1.0 (got '-0.1')",
        ),
        (
            "-gainValue 1.01",
            "-gainValue must be a number between 0.0 and 1.0 (got '1.01')",
        ),
        (
            "-gainValue nan",
            "-gainValue must be a number between 0.0 and 1.0 (got 'nan')",
        ),
        (
            "-gainValue 1e-1",
            "-gainValue must be a number between 0.0 and 1.0 (got '1e-1')",
        ),
        (
            "-singleThreshhold 101",
            "-singleThreshhold must be an integer between 0 and 100 (got '101')",
        ),
        (
            "-singleThreshold -1",
            "-singleThreshold must be an integer between 0 and 100 (got '-1')",
        ),
        (
            "-multiThreshhold 101",
            "-multiThreshhold must be an integer between 0 and 100 (got '101')",
        ),
        (
            "-multiThreshold x",
            "-multiThreshold must be an integer between 0 and 100 (got 'x')",
        ),
        ("-startDelay 0", "-startDelay must be an integer >= 1 (got '0')"),
        ("-appConnTimeout -1", "-appConnTimeout must be an integer >= 0 (got '-1')"),
        (
            "-processSlack 0",
            "-processSlack must be an integer between 1 and 250 (got '0')",
        ),
        (
            "-processSlack 251",
            "-processSlack must be an integer between 1 and 250 (got '251')",
        ),
        (
            "-init-start-delay -1",
            "-init-start-delay must be an integer >= 0 (got '-1')",
        ),
        ("-restart-delay -1", "-restart-delay must be an integer >= 0 (got '-1')"),
        (
            "-listen-queue-depth 0",
            "-listen-queue-depth must be an integer >= 1 (got '0')",
        ),
        ("-idle-timeout 0", "-idle-timeout must be an integer >= 1 (got '0')"),
        ("-min-server-life -1", "-min-server-life must be an integer >= 0 (got '-1')"),
        ("-initial-env =1", "-initial-env needs NAME=VALUE or NAME (got '=1')"),
        ("-pass-header ''", "-pass-header needs a header name (got '')"),
        ("-priority 1", "unknown option (got '-priority')"),
        ("-processes 1", "unknown option (got '-processes')"),
        ("maxProcesses 1", "expected an option starting with '-' (got 'maxProcesses')"),
        ("-maxProcesses", "-maxProcesses needs a value"),
    ],
)
def test_dynamicOptionErrors(conf: Conf, options: str, message: str) -> None:
    """
    Every bad FCGIConfig option is one error at its line.
    """
    assert (
        conf.error(f"\nFCGIConfig {options}\n")
        == f"httpd.conf:2: FCGIConfig: {message}"
    )


@pytest.mark.parametrize(
    "lines, message",
    [
        (
            "FCGIConfig -minProcesses 20\nFastCgiConfig -maxProcesses 10\n",
            "httpd.conf:2: FastCgiConfig: -minProcesses must not exceed -maxProcesses (got '20 > 10')",
        ),
        (
            "FCGIConfig -maxProcesses 4 -minProcesses 1\n",
            "httpd.conf:1: FCGIConfig: -processSlack (default) must not exceed -maxProcesses "
            "(got '5 > 4')",
        ),
        (
            "FCGIConfig -maxProcesses 4 -minProcesses 1 -processSlack 6\n",
            "httpd.conf:1: FCGIConfig: -processSlack must not exceed -maxProcesses (got '6 > 4')",
        ),
        (
            "FCGIConfig -maxProcesses 2\n",
            "httpd.conf:1: FCGIConfig: -minProcesses (default) must not exceed -maxProcesses "
            "(got '5 > 2')",
        ),
    ],
)
def test_dynamicCrossChecks(conf: Conf, lines: str, message: str) -> None:
    """
    Options that contradict each other are an error at the last FCGIConfig
    line.
    """
    assert conf.error(lines) == message


def test_dynamicCrossCheckNotes(conf: Conf) -> None:
    """
    Legal but doubtful combinations are noted.
    """
    config = conf.read(
        "FCGIConfig -maxProcesses 8 -maxClassProcesses 9 -processSlack 1 -minProcesses 1 "
        "-appConnTimeout 3\n"
    )
    assert [n.message for n in config.notes] == [
        "-maxClassProcesses 9 exceeds -maxProcesses 8; no class will get more than "
        "-maxProcesses",
        "-appConnTimeout 3 does not exceed -startDelay 3; a request gives up before a "
        "second process is started",
    ]
    assert conf.read("FCGIConfig -appConnTimeout 0\n").notes == ()


def test_optionTablesAreCaseInsensitiveKeys() -> None:
    """
    The option tables are keyed by lower-case names and list the seed's
    options (SPEC.md sections 1.1, 2, 4.1).
    """
    for table in (APPCLASS_OPTIONS, EXTERNAL_OPTIONS, DYNAMIC_OPTIONS):
        assert all(key == key.lower() for key in table)
    assert {
        "-processes",
        "-listen-queue-depth",
        "-restart-delay",
        "-priority",
        "-port",
        "-socket",
        "-initial-env",
    } <= set(APPCLASS_OPTIONS)
    assert {"-host", "-socket"} <= set(EXTERNAL_OPTIONS)
    assert {
        "-maxprocesses",
        "-minprocesses",
        "-maxclassprocesses",
        "-killinterval",
        "-updateinterval",
        "-gainvalue",
        "-singlethreshhold",
        "-singlethreshold",
        "-multithreshhold",
        "-multithreshold",
        "-startdelay",
        "-appconntimeout",
        "-processslack",
    } <= set(DYNAMIC_OPTIONS)
