"""firegate agent: supervisor, confirmation engine, outbox, uplink and CLI."""


def __getattr__(name: str) -> str:
    # read on first use: importlib.metadata alone costs more than the whole of
    # `firegate --help` (bench/cli_startup.py)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("firegate")
        except PackageNotFoundError:  # running from a source tree that is not installed
            found = "0.1.0+src"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
