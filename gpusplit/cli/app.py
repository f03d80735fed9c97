"""The typer root: registers one module per command and owns the exit-code contract."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any

import typer
from typer import _click as click
from typer._click.shell_completion import CompletionItem
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup

from ..base.version import __version__
from . import errors, output

# The commands, one module each, in the order `gpusplit --help` lists them: name -> (module, its
# one-line help). A module is imported when its command runs (or its own --help is asked for), so
# `gpusplit --help` and tab completion import none of them; a test holds each line to its docstring.
COMMANDS: dict[str, tuple[str, str]] = {
    "devices": ("devices", "List the devices llama.cpp would use (RPC workers, GPUs, then the CPU host row)."),
    "inspect": ("inspect", "Describe a model from its GGUF header: hyperparameters and bytes per layer."),
    "plan": ("plan", "Plan how to split a model over the devices: memory per device, strategy, context, flags."),
    "run": ("run", "Load the model with the planned split, generate, then show timings and planned vs actual memory."),
    "bench": ("bench", "Benchmark prompt processing and generation over a matrix of splits and settings."),
    "tune": ("tune", "Search splits, offload, batch, flash attention and threads for the fastest configuration that fits."),
    "worker": ("worker", "Serve this machine's devices to other gpusplit / llama.cpp clients over RPC (until Ctrl-C)."),
    "report": ("report", "Draw results as one HTML page that opens offline: charts with their numbers in tables."),
}


def command_function(name: str) -> Callable[..., Any]:
    """The function behind a command (importing its module)."""
    module = importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")
    function: Callable[..., Any] = getattr(module, name)
    return function


class _LazyCommands(MutableMapping[str, click.Command]):
    """The root group's commands by name, each built from its module on first use."""

    def __init__(self) -> None:
        self.built: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in COMMANDS:
            raise KeyError(name)
        if name not in self.built:
            one = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False)
            one.command(name)(command_function(name))
            self.built[name] = typer.main.get_command(one)
        return self.built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)

    def __setitem__(self, name: str, command: click.Command) -> None:
        raise TypeError("gpusplit's commands are the COMMANDS table's")

    def __delitem__(self, name: str) -> None:
        raise TypeError("gpusplit's commands are the COMMANDS table's")


class _LazyGroup(TyperGroup):
    """The root command: lists and completes commands from the table, builds one when it runs."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, make_default_short_help(text, limit)) for name, (_, text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        names = [CompletionItem(name, help=text) for name, (_, text) in COMMANDS.items() if name.startswith(incomplete)]
        return names + click.Command.shell_complete(self, ctx, incomplete)


app = typer.Typer(
    name="gpusplit",
    help="Plan and run split inference of GGUF models across GPUs and machines (llama.cpp).",
    cls=_LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: it wraps to the terminal's width (rich's option panels squeeze the help text
    # into a narrow column at 80 columns) and prints without importing rich.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        output.line(f"gpusplit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Plan and run split inference of GGUF models across GPUs and machines (llama.cpp)."""


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on argv and return the exit code (never raises for known failures)."""
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)

    def invoke() -> int:
        try:
            result = command.main(args=args, prog_name="gpusplit", standalone_mode=False)
        except typer.Exit as exc:
            return exc.exit_code
        except typer.Abort:
            output.error("interrupted")
            return 130
        except typer.TyperException as exc:
            # Usage errors (bad option, missing argument, bad value) carry exit code 2.
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "gpusplit"
            code = exc.exit_code if exc.exit_code in (errors.EXIT_USAGE, errors.EXIT_RUNTIME) else errors.EXIT_USAGE
            raise errors.CLIError(exc.format_message(), f"see '{where} --help'", code) from None
        return result if isinstance(result, int) else 0

    return errors.run_guarded(invoke)


def main() -> None:
    if os.environ.get("NO_COLOR"):
        # NO_COLOR means plain text: no colour and no bold either. rich (ours and typer's help)
        # drops every escape code on a dumb terminal.
        os.environ["TERM"] = "dumb"
    sys.exit(run())
