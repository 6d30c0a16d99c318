# -*- test-case-name: tests.test_config_reader -*-
"""
Reading Apache httpd.conf-style configuration files into frozen values.

No Twisted here: L{readConfig} turns a file (and what it includes) into a
L{ServerConfig} or raises one L{ConfigError} whose C{str()} is the single
line to print::

    httpd.conf:14: AppClass: -processes must be an integer between 1 and 50 (got 'many')

C{python -m txfastcgi.config FILE} checks a file that way.

Layout: L{txfastcgi.config.lexer} (lines, arguments, sections),
L{txfastcgi.config.reader} (files, C{Include}, C{ServerRoot},
C{<IfModule>}), L{txfastcgi.config.directives} (the directive table),
L{txfastcgi.config.model} (the values), L{txfastcgi.config.errors}.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from txfastcgi.config.directives import EndpointCheck, buildConfig
from txfastcgi.config.errors import ConfigError, Source
from txfastcgi.config.model import (
    ActionRule,
    AliasConfig,
    AliasKind,
    AppClassConfig,
    ApplicationOptions,
    AuthorizerConfig,
    AuthRole,
    CustomLog,
    DirectoryConfig,
    DynamicConfig,
    EnvOp,
    EnvRule,
    ExtensionRule,
    ExternalAppClassConfig,
    GroupConfig,
    IpcDirConfig,
    ListenConfig,
    LogFormat,
    LogItem,
    Note,
    OptionsSetting,
    SectionConfig,
    SectionKind,
    ServerConfig,
    Setting,
    UserConfig,
)
from txfastcgi.config.reader import readTree

__all__ = [
    "ActionRule",
    "AliasConfig",
    "AliasKind",
    "AppClassConfig",
    "ApplicationOptions",
    "AuthRole",
    "AuthorizerConfig",
    "ConfigError",
    "CustomLog",
    "DirectoryConfig",
    "DynamicConfig",
    "EndpointCheck",
    "EnvOp",
    "EnvRule",
    "ExtensionRule",
    "ExternalAppClassConfig",
    "GroupConfig",
    "IpcDirConfig",
    "ListenConfig",
    "LogFormat",
    "LogItem",
    "Note",
    "OptionsSetting",
    "SectionConfig",
    "SectionKind",
    "ServerConfig",
    "Setting",
    "Source",
    "UserConfig",
    "readConfig",
]


def readConfig(
    path: str,
    *,
    environ: Mapping[str, str] | None = None,
    checkEndpoint: EndpointCheck | None = None,
) -> ServerConfig:
    """
    Read a configuration file and everything it includes.

    @param path: the main configuration file; messages name it as given.
    @param environ: the server's environment, for C{PassEnv} and
        C{-initial-env NAME}; C{os.environ} by default.
    @param checkEndpoint: called with each C{Listen} argument that is a
        Twisted endpoint description (the server passes a function built on
        C{twisted.internet.endpoints.serverFromString}); whatever it raises
        becomes a L{ConfigError} at that line.  Without it such descriptions
        are stored unchecked.
    @return: the configuration.
    @raise ConfigError: for the first problem found.
    """
    return buildConfig(
        readTree(path),
        environ=os.environ if environ is None else environ,
        checkEndpoint=checkEndpoint,
    )
