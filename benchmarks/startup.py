"""Start-up cost of the CLI against a bare `python -c "import typer, rich"` on the same machine.

    python benchmarks/startup.py [--runs 20]

Measures `gpusplit --help`, `gpusplit plan --help`, and bash tab completion of a command name
(`gpusplit <TAB>`) and of an option (`gpusplit plan --sp<TAB>`), each as a fresh process, median of
--runs; the cases take turns within each round, so that a machine that slows down or speeds up
mid-way weighs on all of them alike. Targets: `gpusplit --help` and the command-name completion
within 1.15x the bare import (issue 34: they import no command module); a command's own help and
its options' completion, which build that one command, under 2x (issue 12).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMPLETE_OPTION = {"_GPUSPLIT_COMPLETE": "complete_bash", "COMP_WORDS": "gpusplit plan --sp", "COMP_CWORD": "2"}
COMPLETE_COMMAND = {"_GPUSPLIT_COMPLETE": "complete_bash", "COMP_WORDS": "gpusplit ", "COMP_CWORD": "1"}
# name -> (argv, environment, target in multiples of the baseline)
CASES = {
    'python -c "import typer, rich" (baseline)': ([sys.executable, "-c", "import typer, rich"], {}, 1.0),
    "gpusplit --help": ([sys.executable, "-m", "gpusplit", "--help"], {}, 1.15),
    "tab completion: gpusplit <TAB>": ([sys.executable, "-m", "gpusplit"], COMPLETE_COMMAND, 1.15),
    "gpusplit plan --help": ([sys.executable, "-m", "gpusplit", "plan", "--help"], {}, 2.0),
    "tab completion: gpusplit plan --sp<TAB>": ([sys.executable, "-m", "gpusplit"], COMPLETE_OPTION, 2.0),
}


# An installed package has its bytecode written (pip compiles it; an editable one writes it on first
# import): a shell that sets PYTHONDONTWRITEBYTECODE would time compiling gpusplit's modules from
# source on every run instead (the standard library's, on the baseline's side, come precompiled).
ENVIRONMENT = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def seconds(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env={**ENVIRONMENT, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def medians(runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for argv, env, _ in CASES.values():
        seconds(argv, env)  # warm the file cache and the bytecode
    for _ in range(runs):
        for name, (argv, env, _) in CASES.items():
            times[name].append(seconds(argv, env))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--doc", help="also write the table, with where it came from, to this Markdown file")
    args = parser.parse_args()
    results = medians(args.runs)
    baseline = next(iter(results.values()))
    lines = [f"| command | median of {args.runs} | x baseline | target |", "| --- | ---: | ---: | ---: |"]
    missed = []
    for name, median in results.items():
        target = CASES[name][2]
        lines.append(f"| {name} | {median * 1000:.0f} ms | {median / baseline:.2f} | {target:.2f} |")
        if median / baseline > target and target > 1.0:
            missed.append(name)
    lines.append("\nall within target" if not missed else f"\nover target: {', '.join(missed)}")
    print("\n".join(lines))
    if args.doc:
        from gpusplit.documents.provenance import header

        command = f"python benchmarks/startup.py --runs {args.runs} --doc {args.doc}"
        intro = [
            "# Start-up time",
            "",
            header(command, extra=f", Python {sys.version.split()[0]}, bytecode written as an installed package has it")
            + " Each case is a fresh process; the cases take turns within each of the rounds. Runs minutes apart on"
            " this machine spread 5-30 %: the ratios, measured side by side, are the figures to read.",
            "",
        ]
        with open(args.doc, "w", encoding="utf-8") as out:
            out.write("\n".join(intro + lines) + "\n")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
