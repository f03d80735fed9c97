"""gpusplit's version (one place: the package, the CLI's --version and every result record read it)."""

__version__ = "0.1.0"
