"""Start-up cost of the CLI against a bare `python -c "import typer, rich"` on the same machine.

    python benchmarks/startup.py [--runs 20]

Measures `gpusplit --help`, `gpusplit plan --help` and one bash tab completion
(`gpusplit plan --sp<TAB>`), each as a fresh process, median of --runs. Target (issue 12): each
under 2x the bare import.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMPLETE = {"_GPUSPLIT_COMPLETE": "complete_bash", "COMP_WORDS": "gpusplit plan --sp", "COMP_CWORD": "2"}
CASES = {
    'python -c "import typer, rich" (baseline)': ([sys.executable, "-c", "import typer, rich"], {}),
    "gpusplit --help": ([sys.executable, "-m", "gpusplit", "--help"], {}),
    "gpusplit plan --help": ([sys.executable, "-m", "gpusplit", "plan", "--help"], {}),
    "tab completion: gpusplit plan --sp": ([sys.executable, "-m", "gpusplit"], COMPLETE),
}


def median_seconds(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    results = {name: median_seconds(argv, env, args.runs) for name, (argv, env) in CASES.items()}
    baseline = next(iter(results.values()))
    print(f"| command | median of {args.runs} | x baseline |")
    print("| --- | ---: | ---: |")
    for name, seconds in results.items():
        print(f"| {name} | {seconds * 1000:.0f} ms | {seconds / baseline:.2f} |")
    worst = max(seconds / baseline for seconds in list(results.values())[1:])
    print(f"\nworst: {worst:.2f}x the bare import (target < 2x)")
    return 0 if worst < 2 else 1


if __name__ == "__main__":
    sys.exit(main())
