# -*- test-case-name: tests.test_apptap -*-
"""
twistd plugin: C{twistd fastcgi-app}, the FastCGI application server.

Only a L{ServiceMaker}: the tap module is imported lazily, and nothing here
imports the reactor (STYLE.md P1).
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker

fastcgiApp = ServiceMaker(  # type: ignore[no-untyped-call]
    "txfastcgi application server",
    "txfastcgi.apptap",
    "Serve a WSGI application or txfastcgi handler as a FastCGI application.",
    "fastcgi-app",
)
