# -*- test-case-name: tests.test_exports -*-
"""
The public names of C{txfastcgi}.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import txfastcgi


@pytest.mark.parametrize("name", [n for n in txfastcgi.__all__ if n != "__version__"])
def test_exportedNameResolves(name: str) -> None:
    """
    Every name in C{txfastcgi.__all__} is importable from the package and is
    the object its module defines.
    """
    value = getattr(txfastcgi, name)
    assert value.__name__ == name


def test_unknownNameRaisesAttributeError() -> None:
    """
    A name that is not exported raises L{AttributeError}.
    """
    with pytest.raises(AttributeError):
        getattr(txfastcgi, "NoSuchThing")


def test_importingThePackageLoadsNoTwisted() -> None:
    """
    C{import txfastcgi} alone does not import Twisted (the exports are lazy),
    so the pure modules stay pure.
    """
    code = "import sys, txfastcgi; print(any(m == 'twisted' or m.startswith('twisted.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
