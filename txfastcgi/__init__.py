"""
txfastcgi: a FastCGI gateway web server built on Twisted, and a FastCGI
application server for Python programs.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
