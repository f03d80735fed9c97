"""Whether llama-server would take a flag line, checked against its option table (recorded from
llama.cpp's common/arg.cpp by scripts/llama_server_options.py): every word is an option it parses,
or one of the values that option takes."""

from __future__ import annotations

import json
from pathlib import Path

OPTIONS: dict[str, int] = json.loads((Path(__file__).parent / "data" / "llama-server-options.json").read_text())["options"]


def rejected(args: list[str]) -> list[str]:
    """The words llama-server would refuse (empty: it parses the line)."""
    bad, i = [], 0
    while i < len(args):
        word = args[i]
        if word not in OPTIONS:
            bad.append(word)
            i += 1
            continue
        i += 1 + OPTIONS[word]
        if i > len(args):
            bad.append(f"{word} (its value is missing)")
    return bad


def model_source(args: list[str]) -> tuple[str, str]:
    """How the line names the model: (-m | -mu | -hf | -hfr, value)."""
    for flag in ("-m", "-mu", "-hf", "-hfr"):
        if flag in args:
            return flag, args[args.index(flag) + 1]
    raise AssertionError(f"no model in {args}")


def run_python_lines(stdout: str, where: Path) -> dict[str, object]:
    """Runs the Python lines `plan` printed, in `where`, with llama_cpp.Llama standing in as a
    recorder (the load itself is the engine's tests' business): the keyword arguments it got."""
    import os
    import types

    lines = stdout.split("or from Python (llama-cpp-python)", 1)[1].splitlines()[1:]
    code = "\n".join(line.strip() for line in lines[: next(i for i, line in enumerate(lines) if "llama_cpp.Llama" in line) + 1])
    got: dict[str, object] = {}
    fake = types.SimpleNamespace(Llama=lambda **kwargs: got.update(kwargs))
    fake.Llama.from_pretrained = lambda **kwargs: got.update(kwargs, from_pretrained=True)
    before = Path.cwd()
    os.chdir(where)
    try:
        exec(compile(code, "<plan's python lines>", "exec"), {"llama_cpp": fake})
    finally:
        os.chdir(before)
    return got
