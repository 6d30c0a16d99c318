"""
txfastcgi: a FastCGI gateway web server built on Twisted, and a FastCGI
application server for Python programs.

The public names below are importable from C{txfastcgi} directly; they are
loaded on first use (PEP 562), so that importing a pure module such as
L{txfastcgi.cgienv} or L{txfastcgi.fcgi} never imports Twisted.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "FastCGIResource": "txfastcgi.resource",
    "FastCGIAuthorizer": "txfastcgi.authorizer",
    "FastCGIFilter": "txfastcgi.filter",
    "GatewaySite": "txfastcgi.site",
    "ConnectionPool": "txfastcgi.pool",
    "ApplicationAddress": "txfastcgi.pool",
    "FastCGIRequest": "txfastcgi.client",
    "FastCGIClientProtocol": "txfastcgi.client",
    "FastCGIApplicationFactory": "txfastcgi.application",
    "WSGIHandler": "txfastcgi.wsgi",
    "ApplicationSupervisor": "txfastcgi.supervisor",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    """
    Import a public name from its module on first use.
    """
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'txfastcgi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
