# -*- test-case-name: tests.test_client -*-
"""
Structural types for the parts of a reactor's time API that txfastcgi uses.

They are L{typing.Protocol}s rather than the zope interfaces
(L{twisted.internet.interfaces.IReactorTime}, L{IDelayedCall}) so that mypy
checks them without the mypy-zope plugin; a reactor and a
L{twisted.internet.task.Clock} both satisfy them.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol


class DelayedCall(Protocol):
    """
    What we use of L{twisted.internet.interfaces.IDelayedCall}.
    """

    def active(self) -> bool:
        """
        Whether the call is still to happen.
        """

    def cancel(self) -> None:
        """
        Prevent the call.
        """


class TimeSource(Protocol):
    """
    What we use of L{twisted.internet.interfaces.IReactorTime}: a reactor or a
    L{twisted.internet.task.Clock}.
    """

    def seconds(self) -> float:
        """
        The current time in seconds.
        """

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> DelayedCall:
        """
        Call C{callable} after C{delay} seconds.
        """
