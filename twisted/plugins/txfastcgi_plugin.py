# -*- test-case-name: tests.test_tap -*-
"""
twistd plugin: C{twistd fastcgi}, the FastCGI gateway web server.

Only a L{ServiceMaker}: the tap module is imported lazily, and nothing here
imports the reactor (STYLE.md P1).
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker

fastcgi = ServiceMaker(  # type: ignore[no-untyped-call]
    "txfastcgi",
    "txfastcgi.tap",
    "A FastCGI gateway web server configured by an Apache httpd.conf.",
    "fastcgi",
)
