"""Regenerate the files derived from the code: shell completions, docs/cli.md and docs/api.md.

    python scripts/generate.py          # write them
    python scripts/generate.py --check  # exit 1 when a committed file is stale (tests run this)

Completions come from typer itself (`_GPUSPLIT_COMPLETE=source_<shell> gpusplit`), which calls back
into `gpusplit` on each tab; docs/cli.md from typer's `utils docs` over the same app, so the help
text and the docs cannot drift apart; docs/api.md from the library's docstrings and signatures,
with examples/api.py (which a test runs) as its example.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELLS = {"bash": "gpusplit.bash", "zsh": "_gpusplit.zsh", "fish": "gpusplit.fish"}


def completion(shell: str) -> str:
    env = {**os.environ, "_GPUSPLIT_COMPLETE": f"source_{shell}"}
    return subprocess.run([sys.executable, "-m", "gpusplit"], env=env, capture_output=True, text=True, check=True).stdout


def cli_docs() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cli.md"
        subprocess.run(
            [sys.executable, "-m", "typer", "gpusplit.cli.app", "utils", "docs", "--name", "gpusplit", "--output", str(out)],
            check=True,
            capture_output=True,
            env={**os.environ, "COLUMNS": "100", "NO_COLOR": "1"},
        )
        text = out.read_text()
    from gpusplit.documents.provenance import code_header

    title, _, rest = text.partition("\n")
    return f"{title}\n\n{code_header('python scripts/generate.py')}\n{rest}"


API_FUNCTIONS = (
    "read_model",
    "read_adapter",
    "detect_devices",
    "probe_devices",
    "plan",
    "run",
    "bench",
    "tune",
    "report",
    "demo_model_path",
    "download_model",
    "load_plan_document",
    "document",
)
API_CLASSES = ("Request", "Matrix", "Tests", "Plan", "RunResult", "Inventory", "Reason", "GpusplitError", "InputError")


def api_docs() -> str:
    """docs/api.md: the public names of `import gpusplit`, each with its signature and docstring."""
    import dataclasses
    import inspect

    sys.path.insert(0, str(ROOT))
    import gpusplit
    import gpusplit.api
    from gpusplit.documents.provenance import code_header

    def clean(doc: str | None) -> str:
        return inspect.cleandoc(doc or "")

    out = [
        "# The Python API",
        "",
        code_header("python scripts/generate.py"),
        "",
        clean(gpusplit.api.__doc__),
        "",
        "## A script that plans, runs and benchmarks (`examples/api.py`)",
        "",
        "```python",
        (ROOT / "examples" / "api.py").read_text().rstrip(),
        "```",
        "",
        "## Functions",
        "",
    ]
    for name in API_FUNCTIONS:
        func = getattr(gpusplit, name)
        signature = str(inspect.signature(func)).replace("'", "")
        out += [f"### `gpusplit.{name}{signature}`", "", clean(func.__doc__), ""]
    out += ["## Classes", ""]
    for name in API_CLASSES:
        cls = getattr(gpusplit, name)
        out += [f"### `gpusplit.{name}`", "", clean(cls.__doc__), ""]
        if dataclasses.is_dataclass(cls):
            out += ["| field | type |", "| --- | --- |"]
            out += [f"| `{f.name}` | `{f.type}` |" for f in dataclasses.fields(cls)]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def expected() -> dict[Path, str]:
    files = {ROOT / "completions" / name: completion(shell) for shell, name in SHELLS.items()}
    files[ROOT / "docs" / "cli.md"] = cli_docs()
    files[ROOT / "docs" / "api.md"] = api_docs()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for path, text in expected().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale, run python scripts/generate.py: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
