"""Regenerate the files derived from the CLI: shell completions and docs/cli.md.

    python scripts/generate.py          # write them
    python scripts/generate.py --check  # exit 1 when a committed file is stale (tests run this)

Completions come from typer itself (`_GPUSPLIT_COMPLETE=source_<shell> gpusplit`), which calls back
into `gpusplit` on each tab; docs/cli.md from typer's `utils docs` over the same app, so the help
text and the docs cannot drift apart.
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
        return out.read_text()


def expected() -> dict[Path, str]:
    files = {ROOT / "completions" / name: completion(shell) for shell, name in SHELLS.items()}
    files[ROOT / "docs" / "cli.md"] = cli_docs()
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
