"""
Tests for L{txfastcgi.config.directives} and L{txfastcgi.config.model}: the
server, logging, mapping, per-directory and mod_env directives, sections,
contexts, unknown and ignored directives, and the seed's example
configuration.  The mod_fastcgi directives are in C{test_config_fastcgi}.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from txfastcgi.config import (
    ActionRule,
    AliasConfig,
    AliasKind,
    AppClassConfig,
    ApplicationOptions,
    AuthorizerConfig,
    AuthRole,
    ConfigError,
    DirectoryConfig,
    EndpointCheck,
    EnvOp,
    EnvRule,
    ExtensionRule,
    ExternalAppClassConfig,
    ListenConfig,
    LogItem,
    Note,
    OptionsSetting,
    SectionKind,
    ServerConfig,
    Setting,
    Source,
    readConfig,
)
from txfastcgi.config.directives import PREDEFINED_LOG_FORMATS, parseLogFormat
from txfastcgi.config.model import DEFAULT_OPTIONS

SEED = Path("/work/shared/seed/mod_fastcgi.txt")
_IGNORED_MESSAGE = (
    "ignored: it tunes Apache's own process model or a feature txfastcgi does not have"
)


class Conf:
    """
    Writes C{httpd.conf} in a temporary directory (the current directory
    and default ServerRoot) and reads it, so messages start with
    C{httpd.conf:LINE:}.

    @ivar base: the directory.
    """

    def __init__(self, base: Path) -> None:
        """
        @param base: the directory.
        """
        self.base = base

    def read(
        self,
        text: str,
        environ: Mapping[str, str] | None = None,
        checkEndpoint: EndpointCheck | None = None,
    ) -> ServerConfig:
        """
        Read C{text} as the whole configuration.
        """
        (self.base / "httpd.conf").write_text(text)
        return readConfig(
            "httpd.conf", environ=environ or {}, checkEndpoint=checkEndpoint
        )

    def error(self, text: str, environ: Mapping[str, str] | None = None) -> str:
        """
        The one-line message reading C{text} fails with.
        """
        with pytest.raises(ConfigError) as caught:
            self.read(text, environ)
        return str(caught.value)

    def executable(self, name: str, mode: int = 0o755) -> str:
        """
        Create an executable file and return its absolute path.
        """
        path = self.base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(mode)
        return str(path)


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Conf:
    """
    A L{Conf} in a fresh temporary directory.
    """
    monkeypatch.chdir(tmp_path)
    return Conf(tmp_path)


def at(line: int) -> Source:
    """
    The source of line C{line} of the test's C{httpd.conf}.
    """
    return Source("httpd.conf", line)


# --- generic rules ---------------------------------------------------------------


def test_emptyConfiguration(conf: Conf) -> None:
    """
    An empty file gives the defaults: port 80 on all interfaces, ServerRoot
    the file's directory, DocumentRoot its C{htdocs}, IPC dir C{/tmp}.
    """
    config = conf.read("")
    assert config.serverRoot == str(conf.base)
    assert config.listeners == (ListenConfig(None, 80, None, None),)
    assert config.serverPort == 80
    assert config.documentRootPath == str(conf.base / "htdocs")
    assert config.ipcDir.path == "/tmp"
    assert config.server == DirectoryConfig()
    assert config.notes == ()
    assert config.files == ("httpd.conf",)


@pytest.mark.parametrize("name", ["Port", "port", "PORT", "pOrT"])
def test_directiveNamesAreCaseInsensitive(conf: Conf, name: str) -> None:
    """
    Directive names are matched case-insensitively.
    """
    assert conf.read(f"{name} 8080\n").port == Setting(8080, at(1))


def test_sectionNamesAreCaseInsensitive(conf: Conf) -> None:
    """
    Section names are matched case-insensitively.
    """
    config = conf.read("<location /a>\nsethandler X\n</LOCATION>\n")
    assert config.sections[0].kind is SectionKind.LOCATION
    assert config.sections[0].config.setHandler == Setting("x", at(2))


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "Portt 80\n",
            "httpd.conf:1: Portt: unknown directive; did you mean Port? (got 'Portt')",
        ),
        (
            "Frobnicate\n",
            "httpd.conf:1: Frobnicate: unknown directive (got 'Frobnicate')",
        ),
        (
            "AppClas /x\n",
            "httpd.conf:1: AppClas: unknown directive; did you mean AppClass? (got 'AppClas')",
        ),
        (
            "Order allow,deny\n",
            "httpd.conf:1: Order: is an Apache directive txfastcgi does not implement "
            "(got 'allow,deny')",
        ),
        (
            "<Location />\nDeny from all\n</Location>\n",
            "httpd.conf:2: Deny: is an Apache directive txfastcgi does not implement "
            "(got 'from all')",
        ),
        (
            "FastCgiWrapper On\n",
            "httpd.conf:1: FastCgiWrapper: is an Apache directive txfastcgi does not "
            "implement (got 'On')",
        ),
        ("<Foo x>\n</Foo>\n", "httpd.conf:1: <Foo>: unknown section (got 'Foo')"),
        (
            "<IfDefine X>\n</IfDefine>\n",
            "httpd.conf:1: <IfDefine>: is an Apache section txfastcgi does not implement "
            "(got 'X')",
        ),
    ],
)
def test_unknownAndUnsupportedDirectives(conf: Conf, text: str, message: str) -> None:
    """
    Unknown directives and sections are errors (with a suggestion when one
    is close); Apache directives whose effect would silently be lost are
    refused.
    """
    assert conf.error(text) == message


def test_ignoredDirectivesNotedOnce(conf: Conf) -> None:
    """
    Process-model directives are accepted with any arguments, anywhere, and
    noted once per name at their first occurrence.
    """
    config = conf.read(
        "StartServers 5\nTimeout 300\nstartservers 1\nKeepAlive On\n"
        "<Location />\nTimeout 1 2 3\n</Location>\nServerAdmin a@b\nPidFile\n"
    )
    assert config.notes == (
        Note(at(1), "StartServers", _IGNORED_MESSAGE),
        Note(at(2), "Timeout", _IGNORED_MESSAGE),
        Note(at(4), "KeepAlive", _IGNORED_MESSAGE),
        Note(at(8), "ServerAdmin", _IGNORED_MESSAGE),
        Note(at(9), "PidFile", _IGNORED_MESSAGE),
    )
    assert str(config.notes[0]) == f"httpd.conf:1: StartServers: {_IGNORED_MESSAGE}"


@pytest.mark.parametrize(
    "name",
    [
        "StartServers",
        "MinSpareServers",
        "MaxSpareServers",
        "MaxClients",
        "MaxRequestsPerChild",
        "ScoreBoardFile",
        "Timeout",
        "KeepAlive",
        "KeepAliveTimeout",
        "HostnameLookups",
        "ServerAdmin",
        "PidFile",
        "LockFile",
        "MaxKeepAliveRequests",
        "ServerType",
        "LoadModule",
    ],
)
def test_everyIgnoredDirective(conf: Conf, name: str) -> None:
    """
    Each directive of the issue's list is ignored with a note.
    """
    assert conf.read(f"{name} x\n").notes == (Note(at(1), name, _IGNORED_MESSAGE),)


@pytest.mark.parametrize(
    "text, message",
    [
        ("Port\n", "httpd.conf:1: Port: takes 1 argument: Port NUMBER"),
        (
            "Port 80 81\n",
            "httpd.conf:1: Port: takes 1 argument: Port NUMBER (got '80 81')",
        ),
        (
            "Port 80 # web\n",
            "httpd.conf:1: Port: takes 1 argument: Port NUMBER ('#' starts a comment "
            "only at the beginning of a line) (got '80 # web')",
        ),
        (
            "CustomLog x\n",
            "httpd.conf:1: CustomLog: takes 2 or 3 arguments: CustomLog FILE "
            "FORMAT|NICKNAME [env=[!]VAR] (got 'x')",
        ),
        (
            "AddType text/x\n",
            "httpd.conf:1: AddType: takes at least 2 arguments: AddType MEDIA-TYPE EXTENSION... (got 'text/x')",
        ),
        (
            "Alias /a\n",
            "httpd.conf:1: Alias: takes 2 arguments: Alias URL-PATH PATH (got '/a')",
        ),
        (
            "AppClass\n",
            "httpd.conf:1: AppClass: takes at least 1 argument: AppClass PATH [OPTIONS]",
        ),
        (
            "FCGIConfig\n",
            "httpd.conf:1: FCGIConfig: takes at least 1 argument: FCGIConfig OPTION...",
        ),
    ],
)
def test_argumentCounts(conf: Conf, text: str, message: str) -> None:
    """
    A wrong number of arguments names the directive's syntax.
    """
    assert conf.error(text) == message


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "<Location /a>\nAppClass /bin/sh\n</Location>\n",
            "httpd.conf:2: AppClass: not allowed inside <Location> sections",
        ),
        (
            "<Directory /a>\nPort 80\n</Directory>\n",
            "httpd.conf:2: Port: not allowed inside <Directory> sections",
        ),
        (
            "<Files a>\nAlias /a /b\n</Files>\n",
            "httpd.conf:2: Alias: not allowed inside <Files> sections",
        ),
        (
            "FastCgiAuthorizer /x\n",
            "httpd.conf:1: FastCgiAuthorizer: not allowed outside sections",
        ),
        (
            "<Location /a>\n<Location /b>\n</Location>\n</Location>\n",
            "httpd.conf:2: <Location>: not allowed inside <Location> sections",
        ),
        (
            "<Directory /a>\n<Location /b>\n</Location>\n</Directory>\n",
            "httpd.conf:2: <Location>: not allowed inside <Directory> sections",
        ),
        (
            "<Location /a>\n<Files b>\n</Files>\n</Location>\n",
            "httpd.conf:2: <Files>: not allowed inside <Location> sections",
        ),
        (
            "<Files a>\n<Files b>\n</Files>\n</Files>\n",
            "httpd.conf:2: <Files>: not allowed inside <Files> sections",
        ),
    ],
)
def test_contexts(conf: Conf, text: str, message: str) -> None:
    """
    Directives and sections are refused where Apache refuses them.
    """
    assert conf.error(text) == message


@pytest.mark.parametrize(
    "text",
    [
        "Port 80\nPort 81\n",
        "ServerName a\nServerName b\n",
        "DocumentRoot .\nDocumentRoot .\n",
        "ErrorLog e\nErrorLog e\n",
        "BindAddress *\nBindAddress *\n",
        "User #0\nUser #0\n",
        "Group #0\nGroup #0\n",
        "FastCgiIpcDir /tmp\nFastCgiIpcDir /tmp\n",
    ],
)
def test_serverSettingsGivenTwice(conf: Conf, text: str) -> None:
    """
    A server-wide setting given twice is an error naming the first line.
    """
    assert "httpd.conf:2: " in conf.error(text)
    assert ": given twice (first at httpd.conf:1) (got " in conf.error(text)


# --- listening -----------------------------------------------------------------


def test_bindAddressIgnoredWithListen(conf: Conf) -> None:
    """
    With C{Listen}, C{BindAddress} is noted as ignored, as Apache 1.x did.
    """
    config = conf.read("BindAddress 127.0.0.1\nListen 8080\n")
    assert config.listeners == (ListenConfig(None, 8080, None, at(2)),)
    assert config.notes == (
        Note(at(1), "BindAddress", "ignored: Listen directives say where to listen"),
    )


def test_portAndBindAddress(conf: Conf) -> None:
    """
    C{Port} with C{BindAddress} gives one listener; C{*} means all
    interfaces.
    """
    config = conf.read("Port 8080\nBindAddress 127.0.0.1\n")
    assert config.listeners == (ListenConfig("127.0.0.1", 8080, None, at(1)),)
    assert config.listeners[0].endpointDescription() == "tcp:8080:interface=127.0.0.1"
    assert conf.read("BindAddress *\n").listeners == (
        ListenConfig(None, 80, None, None),
    )


@pytest.mark.parametrize(
    "argument, host, port, endpoint",
    [
        ("8080", None, 8080, None),
        ("127.0.0.1:8080", "127.0.0.1", 8080, None),
        ("*:81", None, 81, None),
        ("0.0.0.0:82", None, 82, None),
        ("localhost:83", "localhost", 83, None),
        ("[::1]:84", "::1", 84, None),
        ("tcp:8080:interface=127.0.0.1", None, None, "tcp:8080:interface=127.0.0.1"),
        ("SSL:443:privateKey=k.pem", None, None, "SSL:443:privateKey=k.pem"),
        ("unix:/tmp/s", None, None, "unix:/tmp/s"),
        ("le:/certs:tcp:443", None, None, "le:/certs:tcp:443"),
    ],
)
def test_listen(
    conf: Conf, argument: str, host: str | None, port: int | None, endpoint: str | None
) -> None:
    """
    C{Listen} takes a port, an address and port, or a Twisted endpoint
    description (stored as written).
    """
    config = conf.read(f"Port 9999\nListen {argument}\n")
    assert config.listeners == (ListenConfig(host, port, endpoint, at(2)),)
    assert config.serverPort == 9999


def test_listenEndpointDescriptions(conf: Conf) -> None:
    """
    L{ListenConfig.endpointDescription} gives Twisted's syntax for TCP
    addresses, escaping IPv6 colons.
    """
    config = conf.read("Listen 80\nListen [::1]:81\nListen ssl:443\n")
    assert [listen.endpointDescription() for listen in config.listeners] == [
        "tcp:80",
        "tcp:81:interface=\\:\\:1",
        "ssl:443",
    ]
    assert config.serverPort == 80


def test_listenCheckEndpoint(conf: Conf) -> None:
    """
    An endpoint description is passed to C{checkEndpoint}; what it raises
    becomes an error at the C{Listen} line.
    """
    seen: list[str] = []

    def check(description: str) -> None:
        seen.append(description)
        if "bad" in description:
            raise ValueError("unknown endpoint type 'bad'")

    conf.read("Listen ssl:443\nListen 80\n", checkEndpoint=check)
    assert seen == ["ssl:443"]
    (conf.base / "httpd.conf").write_text("\nListen bad:1:2\n")
    with pytest.raises(ConfigError) as caught:
        readConfig("httpd.conf", environ={}, checkEndpoint=check)
    assert str(caught.value) == (
        "httpd.conf:2: Listen: not a valid endpoint description: unknown endpoint "
        "type 'bad' (got 'bad:1:2')"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "Listen 0\n",
            "httpd.conf:1: Listen: the port must be an integer between 1 and 65535 (got '0')",
        ),
        (
            "Listen 65536\n",
            "httpd.conf:1: Listen: the port must be an integer between 1 and 65535 (got '65536')",
        ),
        (
            "Listen host:\n",
            "httpd.conf:1: Listen: the port must be an integer between 1 and 65535 (got '')",
        ),
        (
            "Listen web\n",
            "httpd.conf:1: Listen: must be PORT, ADDRESS:PORT, [IPv6-ADDRESS]:PORT or a "
            "Twisted endpoint description such as ssl:443:privateKey=key.pem (got 'web')",
        ),
        (
            "Listen 80\nListen 80\n",
            "httpd.conf:2: Listen: the same address was given at httpd.conf:1 (got '80')",
        ),
        (
            "Port 0\n",
            "httpd.conf:1: Port: the port must be an integer between 1 and 65535 (got '0')",
        ),
        (
            "Port 65536\n",
            "httpd.conf:1: Port: the port must be an integer between 1 and 65535 (got '65536')",
        ),
        (
            "Port eighty\n",
            "httpd.conf:1: Port: the port must be an integer between 1 and 65535 (got 'eighty')",
        ),
        (
            "BindAddress a/b\n",
            "httpd.conf:1: BindAddress: must be an address, a host name or * (got 'a/b')",
        ),
        (
            "ServerName a_b\n",
            "httpd.conf:1: ServerName: must be HOST or HOST:PORT (got 'a_b')",
        ),
        (
            "ServerName a:0\n",
            "httpd.conf:1: ServerName: the port must be an integer between 1 and 65535 (got '0')",
        ),
    ],
)
def test_listeningErrors(conf: Conf, text: str, message: str) -> None:
    """
    Bad ports, addresses and duplicate listeners are errors.
    """
    assert conf.error(text) == message


@pytest.mark.parametrize("port", ["1", "65535"])
def test_portBoundaries(conf: Conf, port: str) -> None:
    """
    Ports 1 and 65535 are accepted.
    """
    assert conf.read(f"Port {port}\n").serverPort == int(port)


@pytest.mark.parametrize(
    "name", ["www.example.com", "www.example.com:8080", "[::1]:80", "localhost"]
)
def test_serverName(conf: Conf, name: str) -> None:
    """
    C{ServerName} is stored as written.
    """
    assert conf.read(f"ServerName {name}\n").serverName == Setting(name, at(1))


# --- files -------------------------------------------------------------------------


def test_documentRoot(conf: Conf) -> None:
    """
    C{DocumentRoot} is ServerRoot-relative and must be an existing directory.
    """
    (conf.base / "docs").mkdir()
    assert conf.read("DocumentRoot docs/\n").documentRoot == Setting(
        str(conf.base / "docs"), at(1)
    )
    assert conf.error("DocumentRoot nothing\n") == (
        "httpd.conf:1: DocumentRoot: must be an existing directory (got 'nothing')"
    )
    assert conf.error("DocumentRoot httpd.conf\n") == (
        "httpd.conf:1: DocumentRoot: must be an existing directory (got 'httpd.conf')"
    )


def test_serverRootRelativePaths(conf: Conf) -> None:
    """
    Relative paths use the ServerRoot, wherever the C{ServerRoot} line is.
    """
    (conf.base / "root" / "logs").mkdir(parents=True)
    config = conf.read(
        "ErrorLog logs/error_log\nServerRoot root\nTransferLog logs/access_log\n"
    )
    assert config.serverRoot == str(conf.base / "root")
    assert config.errorLog == Setting(str(conf.base / "root/logs/error_log"), at(1))
    assert config.logs[0].path == str(conf.base / "root/logs/access_log")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "ErrorLog |/usr/bin/logger\n",
            "httpd.conf:1: ErrorLog: piped logs are not supported; give a file (got '|/usr/bin/logger')",
        ),
        (
            "ErrorLog syslog:local7\n",
            "httpd.conf:1: ErrorLog: syslog is not supported; give a file (got 'syslog:local7')",
        ),
        (
            "ErrorLog nodir/error_log\n",
            "httpd.conf:1: ErrorLog: the directory {base}/nodir does not exist (got 'nodir/error_log')",
        ),
        (
            "ErrorLog .\n",
            "httpd.conf:1: ErrorLog: is a directory, not a file (got '.')",
        ),
        (
            "TransferLog nodir/x\n",
            "httpd.conf:1: TransferLog: the directory {base}/nodir does not exist (got 'nodir/x')",
        ),
        (
            "CustomLog |x common\n",
            "httpd.conf:1: CustomLog: piped logs are not supported; give a file (got '|x')",
        ),
    ],
)
def test_logPathErrors(conf: Conf, text: str, message: str) -> None:
    """
    Log files must be files in existing directories; pipes and syslog are
    refused.
    """
    assert conf.error(text) == message.format(base=conf.base)


def test_transferLogDefaultFormat(conf: Conf) -> None:
    """
    C{TransferLog} writes the common format unless a C{LogFormat} without a
    nickname sets another; the last one wins wherever it is.
    """
    config = conf.read("TransferLog a\n")
    assert config.logs[0].format.format == PREDEFINED_LOG_FORMATS["common"]
    assert config.logs[0].nickname is None
    config = conf.read('TransferLog a\nLogFormat "%h %s"\nLogFormat "%h %b"\n')
    assert config.logs[0].format.format == "%h %b"
    config = conf.read("LogFormat combined\nTransferLog a\n")
    assert config.logs[0].format.format == PREDEFINED_LOG_FORMATS["combined"]


def test_customLog(conf: Conf) -> None:
    """
    C{CustomLog} takes a format or a nickname (defined before or after, or
    predefined) and an optional C{env=} condition.
    """
    config = conf.read(
        'CustomLog a combined\nCustomLog b short env=!nolog\nLogFormat "%h %>s" short\n'
        'CustomLog c "%{Referer}i -> %U"\nLogFormat "%h" common\nCustomLog d common\n'
    )
    a, b, c, d = config.logs
    assert (a.nickname, a.format.format, a.condition) == (
        "combined",
        PREDEFINED_LOG_FORMATS["combined"],
        None,
    )
    assert (b.nickname, b.format.format, b.condition) == (
        "short",
        "%h %>s",
        "env=!nolog",
    )
    assert (c.nickname, c.format.format) == (None, "%{Referer}i -> %U")
    assert (d.nickname, d.format.format) == ("common", "%h")
    assert a.source == at(1)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "CustomLog a nosuch\n",
            "httpd.conf:1: CustomLog: unknown log format nickname (define it with LogFormat) (got 'nosuch')",
        ),
        (
            'CustomLog a "%h %Z"\n',
            "httpd.conf:1: CustomLog: bad log format: unknown directive %Z (got '%h %Z')",
        ),
        (
            "CustomLog a common foo\n",
            "httpd.conf:1: CustomLog: the condition must be env=VAR or env=!VAR (got 'foo')",
        ),
        (
            'LogFormat "%{Referer"\n',
            "httpd.conf:1: LogFormat: bad log format: unclosed '{' in '%{Referer' (got '%{Referer')",
        ),
        (
            'LogFormat "100%"\n',
            "httpd.conf:1: LogFormat: bad log format: incomplete directive at the end: '%' (got '100%')",
        ),
        (
            'LogFormat "%h" "%x"\n',
            "httpd.conf:1: LogFormat: the nickname must be a word without '%' (got '%x')",
        ),
    ],
)
def test_logFormatErrors(conf: Conf, text: str, message: str) -> None:
    """
    Bad formats, nicknames and conditions are errors at their line.
    """
    assert conf.error(text) == message


@pytest.mark.parametrize(
    "fmt, parts",
    [
        ("%h", (LogItem("h"),)),
        ("%%", ("%",)),
        ("a%%b %h", ("a%b ", LogItem("h"))),
        (
            "%>s %<s %s",
            (
                LogItem("s", final=True),
                " ",
                LogItem("s", final=False),
                " ",
                LogItem("s"),
            ),
        ),
        ("%{User-agent}i", (LogItem("i", "User-agent"),)),
        ("%400,501{Referer}i", (LogItem("i", "Referer", statuses=(400, 501)),)),
        ("%!200,304r", (LogItem("r", statuses=(200, 304), negated=True),)),
        ("%{%d/%b}t", (LogItem("t", "%d/%b"),)),
        ("a\\tb\\nc\\\\d\\x", ("a\tb\nc\\d\\x",)),
        (
            '%h %l %u %t "%r" %>s %b',
            (
                LogItem("h"),
                " ",
                LogItem("l"),
                " ",
                LogItem("u"),
                " ",
                LogItem("t"),
                ' "',
                LogItem("r"),
                '" ',
                LogItem("s", final=True),
                " ",
                LogItem("b"),
            ),
        ),
    ],
)
def test_parseLogFormat(fmt: str, parts: tuple[object, ...]) -> None:
    """
    L{parseLogFormat} splits a format into literal text and items with
    their arguments, C{<}/C{>} and status conditions.
    """
    parsed = parseLogFormat(fmt)
    assert parsed.format == fmt
    assert parsed.parts == parts


@pytest.mark.parametrize("name", sorted(PREDEFINED_LOG_FORMATS))
def test_predefinedFormatsParse(name: str) -> None:
    """
    The predefined formats are valid.
    """
    parseLogFormat(PREDEFINED_LOG_FORMATS[name])


def test_typesConfig(conf: Conf) -> None:
    """
    C{TypesConfig} reads a mime.types file into (extension, type) pairs.
    """
    (conf.base / "mime.types").write_text(
        "# comment\ntext/html html htm\n\nimage/PNG .png # trailing\napplication/x-empty\n"
    )
    config = conf.read("TypesConfig mime.types\n")
    assert config.typesConfig == Setting(str(conf.base / "mime.types"), at(1))
    assert config.mimeTypes == (
        ("html", "text/html"),
        ("htm", "text/html"),
        ("png", "image/png"),
    )


def test_typesConfigErrors(conf: Conf) -> None:
    """
    A missing types file, or a line in it that is not a media type, is an
    error (at the types file's line for the latter).
    """
    assert conf.error("TypesConfig nope\n") == (
        "httpd.conf:1: TypesConfig: cannot read the file: No such file or directory (got 'nope')"
    )
    (conf.base / "mime.types").write_text("text/html html\nhtml text/html\n")
    assert conf.error("TypesConfig mime.types\n") == (
        f"{conf.base / 'mime.types'}:2: TypesConfig: not a media type (got 'html')"
    )


# --- mapping -----------------------------------------------------------------------


def test_aliases(conf: Conf) -> None:
    """
    C{Alias} and C{ScriptAlias} keep their order, trailing slashes, and
    resolve relative targets against the ServerRoot.
    """
    config = conf.read(
        "Alias /icons/ /usr/share/icons/\nScriptAlias /cgi-bin/ cgi-bin/\n"
    )
    assert config.aliases == (
        AliasConfig(AliasKind.ALIAS, "/icons/", "/usr/share/icons/", at(1)),
        AliasConfig(
            AliasKind.SCRIPT_ALIAS, "/cgi-bin/", str(conf.base) + "/cgi-bin/", at(2)
        ),
    )
    assert config.notes == ()


@pytest.mark.parametrize(
    "text, note",
    [
        (
            "Alias /a /x\nAlias /a/b /y\n",
            "/a/b will never match: the Alias /a at httpd.conf:1 comes first and covers it",
        ),
        (
            "Alias /a/ /x\nScriptAlias /a/b /y\n",
            "/a/b will never match: the Alias /a/ at httpd.conf:1 comes first and covers it",
        ),
        (
            "Alias /a /x\nAlias /a /y\n",
            "/a will never match: the Alias /a at httpd.conf:1 comes first and covers it",
        ),
    ],
)
def test_shadowedAliasIsNoted(conf: Conf, text: str, note: str) -> None:
    """
    An alias an earlier one always wins over is noted.
    """
    assert [n.message for n in conf.read(text).notes] == [note]


def test_aliasNotShadowedAcrossSegments(conf: Conf) -> None:
    """
    C{/a} does not cover C{/ab}: alias prefixes match on C{/} boundaries.
    """
    assert conf.read("Alias /a /x\nAlias /ab /y\n").notes == ()


def test_aliasErrors(conf: Conf) -> None:
    """
    An alias URL must start with C{/}; the target must not be empty.
    """
    assert conf.error("Alias icons /x\n") == (
        "httpd.conf:1: Alias: the URL path must start with '/' (got 'icons')"
    )
    assert conf.error('ScriptAlias /x ""\n') == (
        "httpd.conf:1: ScriptAlias: needs a file-system path (got '')"
    )


# --- per-directory ---------------------------------------------------------------


def test_perDirectoryDirectives(conf: Conf) -> None:
    """
    Handler, type, action, index and limit directives are stored per level,
    handler names and types lower-cased, extensions without dots, the last
    single-valued one winning.
    """
    config = conf.read(
        "AddHandler fastcgi-script .FCG fcgi\n"
        "AddType application/x-httpd-fcgi .fcg\n"
        "SetHandler cgi-script\n"
        "SetHandler None\n"
        "ForceType Text/Plain\n"
        "DefaultType text/html\n"
        "Action fastcgi-script /cgi-bin/wrap\n"
        "Action image/gif /images.cgi virtual\n"
        "DirectoryIndex index.html index.fcg\n"
        "LimitRequestBody 1024\n"
    )
    assert config.server == DirectoryConfig(
        setHandler=Setting(None, at(4)),
        forceType=Setting("text/plain", at(5)),
        defaultType=Setting("text/html", at(6)),
        addHandlers=(ExtensionRule("fastcgi-script", ("fcg", "fcgi"), at(1)),),
        addTypes=(ExtensionRule("application/x-httpd-fcgi", ("fcg",), at(2)),),
        actions=(
            ActionRule("fastcgi-script", "/cgi-bin/wrap", False, at(7)),
            ActionRule("image/gif", "/images.cgi", True, at(8)),
        ),
        directoryIndex=Setting(("index.html", "index.fcg"), at(9)),
        limitRequestBody=Setting(1024, at(10)),
    )
    assert conf.read("ForceType None\n").server.forceType == Setting(None, at(1))


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "AddType textplain txt\n",
            "httpd.conf:1: AddType: must be a media type, TYPE/SUBTYPE (got 'textplain')",
        ),
        (
            "AddType text/plain .\n",
            "httpd.conf:1: AddType: not a file-name extension (got '.')",
        ),
        (
            "AddHandler None fcg\n",
            "httpd.conf:1: AddHandler: needs a handler name (got 'None')",
        ),
        (
            "AddHandler x a/b\n",
            "httpd.conf:1: AddHandler: not a file-name extension (got 'a/b')",
        ),
        ('SetHandler ""\n', "httpd.conf:1: SetHandler: needs a handler name (got '')"),
        (
            "ForceType text\n",
            "httpd.conf:1: ForceType: must be a media type, TYPE/SUBTYPE (got 'text')",
        ),
        (
            "DefaultType none\n",
            "httpd.conf:1: DefaultType: must be a media type, TYPE/SUBTYPE (got 'none')",
        ),
        (
            "Action x cgi-bin/y\n",
            "httpd.conf:1: Action: the script must be a URL path starting with '/' (got 'cgi-bin/y')",
        ),
        (
            "Action x /y real\n",
            "httpd.conf:1: Action: the third argument can only be 'virtual' (got 'real')",
        ),
        (
            'Action "" /y\n',
            "httpd.conf:1: Action: needs a handler name or media type (got '')",
        ),
        (
            "LimitRequestBody -1\n",
            "httpd.conf:1: LimitRequestBody: the limit must be an integer between 0 and 2147483647 (got '-1')",
        ),
        (
            "LimitRequestBody 2147483648\n",
            "httpd.conf:1: LimitRequestBody: the limit must be an integer between 0 and 2147483647 (got '2147483648')",
        ),
        (
            "LimitRequestBody 1k\n",
            "httpd.conf:1: LimitRequestBody: the limit must be an integer between 0 and 2147483647 (got '1k')",
        ),
        (
            'DirectoryIndex a ""\n',
            "httpd.conf:1: DirectoryIndex: needs file names (got '')",
        ),
    ],
)
def test_perDirectoryErrors(conf: Conf, text: str, message: str) -> None:
    """
    Bad handler names, media types, extensions, actions and limits are
    errors.
    """
    assert conf.error(text) == message


@pytest.mark.parametrize("limit", [0, 2147483647])
def test_limitRequestBodyBoundaries(conf: Conf, limit: int) -> None:
    """
    C{LimitRequestBody} accepts 0 (no limit) to 2147483647.
    """
    assert conf.read(f"LimitRequestBody {limit}\n").server.limitRequestBody == Setting(
        limit, at(1)
    )


def test_environmentRules(conf: Conf) -> None:
    """
    C{SetEnv}, C{PassEnv} and C{UnsetEnv} keep their order; C{PassEnv}
    takes the value from the given environment and notes unset names.
    """
    config = conf.read(
        "SetEnv A 1\nPassEnv HOME MISSING\nUnsetEnv A B\nSetEnv EMPTY\n",
        environ={"HOME": "/root"},
    )
    assert config.server.env == (
        EnvRule(EnvOp.SET, "A", "1", at(1)),
        EnvRule(EnvOp.PASS, "HOME", "/root", at(2)),
        EnvRule(EnvOp.PASS, "MISSING", None, at(2)),
        EnvRule(EnvOp.UNSET, "A", None, at(3)),
        EnvRule(EnvOp.UNSET, "B", None, at(3)),
        EnvRule(EnvOp.SET, "EMPTY", "", at(4)),
    )
    assert config.notes == (
        Note(
            at(2),
            "PassEnv",
            "MISSING is not set in the server's environment; it is not passed",
        ),
    )
    assert conf.error("SetEnv A=B c\n") == (
        "httpd.conf:1: SetEnv: not an environment variable name (got 'A=B')"
    )


# --- sections ------------------------------------------------------------------------


def test_sections(conf: Conf) -> None:
    """
    Every section kind is stored in file order with its pattern; C{~}
    selects the regular-expression kind; C{<Files>} inside C{<Directory>}
    records it.
    """
    config = conf.read(
        "<Location /a>\nSetHandler fastcgi-script\n</Location>\n"
        '<Location ~ "\\.fcg$">\n</Location>\n'
        "<LocationMatch ^/b>\n</LocationMatch>\n"
        "<Directory /srv/*/x>\n<Files *.fcg>\nSetHandler fastcgi-script\n</Files>\n"
        "<FilesMatch \\.php$>\n</FilesMatch>\n</Directory>\n"
        "<Directory ~ ^/srv>\n</Directory>\n"
        "<DirectoryMatch ^/opt>\n</DirectoryMatch>\n"
        "<Files ~ x>\n</Files>\n"
    )
    kinds = [(s.kind, s.pattern, s.source.line) for s in config.sections]
    assert kinds == [
        (SectionKind.LOCATION, "/a", 1),
        (SectionKind.LOCATION_MATCH, "\\.fcg$", 4),
        (SectionKind.LOCATION_MATCH, "^/b", 6),
        (SectionKind.DIRECTORY, "/srv/*/x", 8),
        (SectionKind.FILES, "*.fcg", 9),
        (SectionKind.FILES_MATCH, "\\.php$", 12),
        (SectionKind.DIRECTORY_MATCH, "^/srv", 15),
        (SectionKind.DIRECTORY_MATCH, "^/opt", 17),
        (SectionKind.FILES_MATCH, "x", 19),
    ]
    directory = config.sections[3]
    assert config.sections[4].within == directory
    assert config.sections[5].within == directory
    assert config.sections[4].config.setHandler == Setting("fastcgi-script", at(10))
    assert config.sections[0].within is None
    assert config.sections[8].within is None
    assert config.server == DirectoryConfig()
    assert SectionKind.FILES_MATCH.isRegex and not SectionKind.FILES.isRegex


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "<Location>\n</Location>\n",
            "httpd.conf:1: <Location>: takes one argument: <Location /url-path> or <Location ~ regex>",
        ),
        (
            "<Location /a /b>\n</Location>\n",
            "httpd.conf:1: <Location>: takes one argument: <Location /url-path> or <Location ~ regex> (got '/a /b')",
        ),
        (
            "<Directory srv>\n</Directory>\n",
            "httpd.conf:1: <Directory>: the directory must be an absolute path (got 'srv')",
        ),
        (
            "<Files a/b>\n</Files>\n",
            "httpd.conf:1: <Files>: a file name pattern cannot contain '/' (got 'a/b')",
        ),
        (
            "<LocationMatch (>\n</LocationMatch>\n",
            "httpd.conf:1: <LocationMatch>: bad regular expression: missing ), unterminated subpattern at position 0 (got '(')",
        ),
        (
            "<Directory ~ [>\n</Directory>\n",
            "httpd.conf:1: <Directory>: bad regular expression: unterminated character set at position 0 (got '[')",
        ),
    ],
)
def test_sectionErrors(conf: Conf, text: str, message: str) -> None:
    """
    Section arguments are checked: one argument, absolute directories,
    valid regular expressions, plain file names.
    """
    assert conf.error(text) == message


def test_authorizers(conf: Conf) -> None:
    """
    The 2.x Authorizer-role directives are per section, ServerRoot-relative,
    with C{-compat} and C{...Authoritative}.
    """
    config = conf.read(
        "<Location /private>\n"
        "FastCgiAuthenticator auth/authn -compat\n"
        "FastCgiAuthorizer /apps/authz\n"
        "FastCgiAccessChecker /apps/access\n"
        "FastCgiAuthorizerAuthoritative off\n"
        "FastCgiAccessCheckerAuthoritative On\n"
        "</Location>\n"
    )
    section = config.sections[0].config
    assert section.authenticator == AuthorizerConfig(
        AuthRole.AUTHENTICATOR, str(conf.base / "auth/authn"), True, at(2)
    )
    assert section.authorizer == AuthorizerConfig(
        AuthRole.AUTHORIZER, "/apps/authz", False, at(3)
    )
    assert section.accessChecker == AuthorizerConfig(
        AuthRole.ACCESS_CHECKER, "/apps/access", False, at(4)
    )
    assert section.authorizerAuthoritative == Setting(False, at(5))
    assert section.accessCheckerAuthoritative == Setting(True, at(6))
    assert section.authenticatorAuthoritative is None


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "FastCgiAuthorizer /a -strict",
            "FastCgiAuthorizer: unknown option (got '-strict')",
        ),
        (
            'FastCgiAuthorizer ""',
            "FastCgiAuthorizer: needs the application's path (got '')",
        ),
        (
            "FastCgiAuthorizerAuthoritative maybe",
            "FastCgiAuthorizerAuthoritative: the value must be On or Off (got 'maybe')",
        ),
    ],
)
def test_authorizerErrors(conf: Conf, line: str, message: str) -> None:
    """
    Authorizer directives take a path, C{-compat} only, and On/Off.
    """
    assert (
        conf.error(f"<Directory />\n{line}\n</Directory>\n")
        == f"httpd.conf:2: {message}"
    )


def test_userAndGroup(conf: Conf) -> None:
    """
    C{User} and C{Group} take names or C{#id}s, resolved now.
    """
    config = conf.read("User root\nGroup #0\n")
    assert config.user is not None and config.group is not None
    assert (config.user.name, config.user.uid, config.user.gid) == ("root", 0, 0)
    assert (config.group.name, config.group.gid) == ("#0", 0)
    config = conf.read("User #4242424\n")
    assert config.user is not None
    assert (config.user.uid, config.user.gid) == (4242424, None)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "User no-such-user-here\n",
            "httpd.conf:1: User: no such user (got 'no-such-user-here')",
        ),
        (
            "Group no-such-group-here\n",
            "httpd.conf:1: Group: no such group (got 'no-such-group-here')",
        ),
        (
            "User #x\n",
            "httpd.conf:1: User: the user id after '#' must be an integer >= 0 (got 'x')",
        ),
        (
            "Group #-1\n",
            "httpd.conf:1: Group: the group id after '#' must be an integer >= 0 (got '-1')",
        ),
    ],
)
def test_userAndGroupErrors(conf: Conf, text: str, message: str) -> None:
    """
    Unknown accounts and bad ids are errors.
    """
    assert conf.error(text) == message


# --- the seed ----------------------------------------------------------------------


def seedConfig(apache: str, fastcgi: str) -> str:
    """
    The seed's example httpd.conf with C{$APACHE} and C{$FASTCGI} replaced
    (the seed's own C{$FastCGI} typo too) and its lost C{</Location>} lines
    restored after each C{SetHandler} (SPEC.md Appendix A).
    """
    text = SEED.read_text()
    start = text.index("# httpd.conf -- minimal")
    end = text.index("# End of httpd.conf")
    lines = []
    for line in text[start:end].splitlines():
        line = line.strip()
        for variable in ("$APACHE", "$FASTCGI", "$FastCGI"):
            line = line.replace(variable, apache if variable == "$APACHE" else fastcgi)
        lines.append(line)
        if line == "SetHandler fastcgi-script":
            lines.append("</Location>")
    lines.append("# End of httpd.conf")
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(not SEED.exists(), reason="the shared seed is not available")
def test_seedConfiguration(conf: Conf) -> None:
    """
    The seed's example configuration reads into the values it describes.
    """
    apache = conf.base / "apache"
    (apache / "logs").mkdir(parents=True)
    (apache / "conf").mkdir()
    fastcgi = conf.base / "fcgi"
    echo = conf.executable("fcgi/examples/echo")
    echoFcg = conf.executable("fcgi/examples/echo.fcg")
    main = apache / "conf" / "httpd.conf"
    main.write_text(seedConfig(str(apache), str(fastcgi)))
    config = readConfig(str(main), environ={})
    src = str(main)

    def line(text: str) -> Source:
        return Source(src, main.read_text().splitlines().index(text) + 1)

    assert config.files == (src,)
    assert config.serverRoot == str(apache)
    assert config.listeners == (ListenConfig(None, 5556, None, line("Port 5556")),)
    assert config.documentRoot == Setting(str(fastcgi), line(f"DocumentRoot {fastcgi}"))
    assert config.errorLog == Setting(
        str(apache / "logs/error.log"), line("ErrorLog       logs/error.log")
    )
    [access] = config.logs
    assert access.path == str(apache / "logs/access.log")
    assert access.format.format == '%h %l %u %t "%r" %>s %b'
    assert config.user is None and config.group is None
    assert config.ipcDir.path == "/tmp" and config.ipcDir.source is None
    assert config.appClasses == (
        AppClassConfig(
            path=echo,
            source=line(f"AppClass {echo} -initial-env STATE=TEXAS"),
            initialEnv=("STATE=TEXAS",),
        ),
        AppClassConfig(
            path=echoFcg, source=line(f"AppClass {echoFcg} -port 8978"), port=8978
        ),
    )
    remote = str(fastcgi / "examples/remote-echo")
    assert config.externalAppClasses == (
        ExternalAppClassConfig(
            path=remote,
            source=line(f"ExternalAppClass {remote} -host localhost:8978"),
            host="localhost:8978",
        ),
    )
    assert config.externalAppClasses[0].hostAndPort == ("localhost", 8978)
    assert config.externalAppClasses[0].source == line(
        f"ExternalAppClass {remote} -host localhost:8978"
    )
    assert config.optionsFor(echo) == ApplicationOptions(
        echo, source=line(f"AppClass {echo} -initial-env STATE=TEXAS")
    )
    assert [
        (s.kind, s.pattern, s.config.setHandler and s.config.setHandler.value)
        for s in config.sections
    ] == [
        (SectionKind.LOCATION, "/examples/echo", "fastcgi-script"),
        (SectionKind.LOCATION, "/examples/echo.fcg", "fastcgi-script"),
        (SectionKind.LOCATION, "/examples/remote-echo", "fastcgi-script"),
    ]
    assert [n.directive for n in config.notes] == [
        "StartServers",
        "MinSpareServers",
        "MaxSpareServers",
        "ScoreBoardFile",
    ]
    assert config.dynamic.sources == ()


@pytest.mark.skipif(not SEED.exists(), reason="the shared seed is not available")
def test_seedWithoutRestoredLocationLines(conf: Conf) -> None:
    """
    The seed as stripped, without its C{</Location>} lines, fails at the
    first unclosed section.
    """
    text = seedConfig("/a", "/f").replace("</Location>\n", "")
    number = text.splitlines().index("<Location /examples/echo>") + 1
    assert conf.error(text) == (
        f"httpd.conf:{number}: <Location>: section is not closed: </Location> "
        "missing before the end of the file (got '/examples/echo')"
    )


def test_seedCommentedDirectivesWork(conf: Conf) -> None:
    """
    The directives the seed leaves commented out (User, Group,
    FastCgiIpcDir, AddHandler) are valid once uncommented.
    """
    (conf.base / "logs").mkdir()
    config = conf.read(
        f"User root\nGroup root\nFastCgiIpcDir {conf.base}/logs\nAddHandler fastcgi-script fcg\n"
    )
    assert config.ipcDir.path == f"{conf.base}/logs"
    assert config.server.addHandlers == (
        ExtensionRule("fastcgi-script", ("fcg",), at(4)),
    )
    assert os.path.isabs(config.ipcDir.path)


def test_directiveErrorInsideIncludedFile(conf: Conf) -> None:
    """
    A directive's error in an included file names that file and line.
    """
    (conf.base / "conf.d").mkdir()
    (conf.base / "conf.d" / "apps.conf").write_text("\n\nAppClass app -processes 51\n")
    conf.executable("app")
    assert conf.error("Port 80\nInclude conf.d/*.conf\n") == (
        f"{conf.base / 'conf.d/apps.conf'}:3: AppClass: -processes must be an integer "
        "between 1 and 50 (got '51')"
    )


def test_falseIfModuleIsNotChecked(conf: Conf) -> None:
    """
    What a false C{<IfModule>} holds is skipped unchecked, as in Apache.
    """
    config = conf.read("<IfModule mod_ssl.c>\nSSLEngine on\nNoSuchThing\n</IfModule>\n")
    assert config.notes == ()


@pytest.mark.parametrize(
    "arguments, absolute, add, remove",
    [
        ("None", True, set(), set()),
        ("ExecCGI", True, {"ExecCGI"}, set()),
        ("execcgi indexes", True, {"ExecCGI", "Indexes"}, set()),
        (
            "All",
            True,
            {
                "ExecCGI",
                "FollowSymLinks",
                "Includes",
                "Indexes",
                "SymLinksIfOwnerMatch",
            },
            set(),
        ),
        ("+ExecCGI -Indexes", False, {"ExecCGI"}, {"Indexes"}),
        (
            "-All",
            False,
            set(),
            {
                "ExecCGI",
                "FollowSymLinks",
                "Includes",
                "Indexes",
                "SymLinksIfOwnerMatch",
            },
        ),
    ],
)
def test_options(
    conf: Conf, arguments: str, absolute: bool, add: set[str], remove: set[str]
) -> None:
    """
    C{Options} is stored, absolute or relative, with canonical names and
    C{All} expanded (without MultiViews, as in Apache).
    """
    config = conf.read(f"<Directory />\nOptions {arguments}\n</Directory>\n")
    assert config.sections[0].config.options == OptionsSetting(
        absolute, frozenset(add), frozenset(remove), at(2)
    )


def test_optionsApplyTo() -> None:
    """
    L{OptionsSetting.applyTo} replaces for absolute settings and adjusts for
    relative ones.
    """
    inherited = DEFAULT_OPTIONS | {"Indexes"}
    absolute = OptionsSetting(True, frozenset({"ExecCGI"}), frozenset(), at(1))
    relative = OptionsSetting(
        False, frozenset({"ExecCGI"}), frozenset({"Indexes"}), at(1)
    )
    assert absolute.applyTo(inherited) == {"ExecCGI"}
    assert relative.applyTo(inherited) == {"ExecCGI", "FollowSymLinks"}


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "Options Bogus\n",
            "httpd.conf:1: Options: unknown option; known: All, None, ExecCGI, FollowSymLinks, Includes, IncludesNOEXEC, Indexes, MultiViews, SymLinksIfOwnerMatch (got 'Bogus')",
        ),
        (
            "Options +ExecCGI Indexes\n",
            "httpd.conf:1: Options: either all options have + or - before them, or none has (got '+ExecCGI Indexes')",
        ),
        (
            "Options None Indexes\n",
            "httpd.conf:1: Options: None cannot be combined with other options (got 'None Indexes')",
        ),
        (
            "AllowOverride All\n",
            "httpd.conf:1: AllowOverride: txfastcgi reads no .htaccess files; only AllowOverride None is accepted (got 'All')",
        ),
        (
            "<Location />\nAllowOverride None\n</Location>\n",
            "httpd.conf:2: AllowOverride: not allowed inside <Location> sections",
        ),
        (
            "<Limit GET>\n</Limit>\n",
            "httpd.conf:1: <Limit>: is an Apache section txfastcgi does not implement (got 'GET')",
        ),
    ],
)
def test_optionsErrors(conf: Conf, text: str, message: str) -> None:
    """
    Unknown options, mixed absolute and relative ones, AllowOverride other
    than None, and unimplemented sections are errors.
    """
    assert conf.error(text) == message


def test_allowOverrideNone(conf: Conf) -> None:
    """
    C{AllowOverride None} is accepted at the server level and in
    C{<Directory>}.
    """
    config = conf.read(
        "AllowOverride none\n<Directory />\nAllowOverride None\n</Directory>\n"
    )
    assert config.notes == ()
