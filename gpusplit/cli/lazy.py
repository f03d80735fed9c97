"""The library, loaded when a command first reaches into it.

`gpusplit plan --help` and tab completion build one command's options and print; importing the
planner, the documents and the readers behind them costs five times a bare `import typer, rich`
on a small machine (benchmarks/startup.py). So each command module names the library modules it
uses at its top, as it would import them, and gets them through `lazy_module`: the module is
found at once (a typo fails on the first run, not mid-command) and executed on its first
attribute access, by the standard library's `importlib.util.LazyLoader` (what PEP 810's
`lazy import` makes a statement). Under a type checker and import-linter the same names are plain
imports, in an `if TYPE_CHECKING:` block, so the contracts see every edge.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """`name` as a module object that runs its code on first attribute access (once, then it is the
    plain module)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
