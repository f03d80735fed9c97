"""Generated files stay current, and tab completion really works in bash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_completions_and_cli_docs_are_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_cli_docs_cover_every_command():
    text = (ROOT / "docs" / "cli.md").read_text()
    for command in ("devices", "inspect", "plan", "run", "bench", "worker"):
        assert f"## `gpusplit {command}`" in text


def test_bash_tab_completion_in_a_terminal(tmp_path):
    pexpect = pytest.importorskip("pexpect", reason="pexpect (test extra) is not installed")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PS1": "$ ", "TERM": "dumb"}
    shell = pexpect.spawn("bash", ["--norc", "--noprofile"], env=env, encoding="utf-8", timeout=20)
    try:
        shell.sendline(f"source {ROOT / 'completions' / 'gpusplit.bash'}")
        shell.sendline("bind 'set show-all-if-ambiguous on'")
        shell.send("gpusplit pl\t")
        shell.expect("gpusplit plan ")
        shell.send("--spl\t")
        shell.expect("--split ")
        shell.sendcontrol("c")
        shell.send("gpusplit \t")
        shell.expect("bench")
        shell.expect("worker")
    finally:
        shell.close(force=True)
