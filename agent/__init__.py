"""firegate agent: supervisor, confirmation engine, outbox, uplink and CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("firegate")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0+src"
