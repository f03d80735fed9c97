"""The typer root: registers one module per command and owns the exit-code contract."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from ..base.version import __version__
from . import errors, output

app = typer.Typer(
    name="gpusplit",
    help="Plan and run split inference of GGUF models across GPUs and machines (llama.cpp).",
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


def _register() -> None:
    from . import bench as bench_cmd
    from . import devices as devices_cmd
    from . import inspect as inspect_cmd
    from . import plan as plan_cmd
    from . import report as report_cmd
    from . import run as run_cmd
    from . import tune as tune_cmd
    from . import worker as worker_cmd

    app.command("devices")(devices_cmd.devices)
    app.command("inspect")(inspect_cmd.inspect)
    app.command("plan")(plan_cmd.plan)
    app.command("run")(run_cmd.run)
    app.command("bench")(bench_cmd.bench)
    app.command("tune")(tune_cmd.tune)
    app.command("worker")(worker_cmd.worker)
    app.command("report")(report_cmd.report)


_register()


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
