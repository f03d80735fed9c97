"""The errors gpusplit raises: each one is a line for a person, a hint, and an exit code.

A leaf module (it imports nothing of gpusplit), so every layer can raise these. The CLI maps them
to one stderr line; a script catches `GpusplitError`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1  # something failed while working: a worker died, llama.cpp refused, a disk filled
EXIT_USAGE = 2  # the input is wrong: an option, a file, a name
EXIT_DOES_NOT_FIT = 3  # a checked plan does not fit wholly on the GPUs


class GpusplitError(Exception):
    """A failure with a message for a person, an optional hint, and the CLI's exit code."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, hint: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(GpusplitError):
    """Wrong input: an option value, a model file, a device description (exit code 2)."""

    exit_code = EXIT_USAGE
