"""The errors gpusplit raises: a line for a person and a hint, in the library's own terms.

A leaf module (it imports nothing of gpusplit), so every layer can raise these. A message names a
parameter as `{p.name}` (the name a script passes: `n_ctx`, `tensor_split`): the library shows it
as that name, and the CLI as its flag (`--ctx`, `--split`), through one table in cli/errors.py
(`{p}` names the error's own parameter),
which also maps these classes to exit codes. Values that come from outside (a path, a number the
user gave) are passed as keywords and inserted after the parameters, never read as a template:

    raise InputError("{p.n_ctx} {n_ctx} is above the model's context length {limit}",
                     "lower {p.n_ctx} or set {p.allow_ctx_overflow}", parameter="n_ctx", n_ctx=8192, limit=4096)

A script catches `GpusplitError`; `InputError` is wrong input (what the CLI exits 2 for).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# a parameter named in a message: {p.n_ctx}; {p} alone is the error's own `parameter`
PARAMETER = re.compile(r"\{p(?:\.([a-z][a-z0-9_]*))?\}")


def library_name(parameter: str) -> str:
    """A parameter as the library names it: the keyword a script passes."""
    return parameter


def fill(template: str, name: Callable[[str], str], values: dict[str, object], parameter: str | None = None) -> str:
    """A message template with its parameters named by `name` and its values inserted (a value is
    never read as a template: it may hold braces). `{p}` names `parameter`."""
    text = PARAMETER.sub(lambda m: name(m[1] or parameter or "value"), template)
    if not values:
        return text
    try:
        return text.format_map(values)
    except (KeyError, ValueError, IndexError, AttributeError):
        return text  # a template with a stray brace of its own: shown as it is, never a traceback


class GpusplitError(Exception):
    """A failure with a message for a person and an optional hint (templates: see the module's
    docstring); `parameter` is the one at fault, where there is one."""

    def __init__(self, message: str, hint: str = "", *, parameter: str | None = None, **values: object) -> None:
        self.template = message
        self.hint_template = hint
        self.parameter = parameter
        self.values = values
        super().__init__(self.message)

    def render(self, name: Callable[[str], str] = library_name) -> tuple[str, str]:
        """(message, hint), each parameter named by `name` (the CLI passes its flags)."""
        return (
            fill(self.template, name, self.values, self.parameter),
            fill(self.hint_template, name, self.values, self.parameter),
        )

    @property
    def message(self) -> str:
        return self.render()[0]

    @property
    def hint(self) -> str:
        return self.render()[1]

    def __str__(self) -> str:
        message, hint = self.render()
        return f"{message} ({hint})" if hint else message


class InputError(GpusplitError):
    """Wrong input: a parameter's value, a model file, a document, a device description."""
