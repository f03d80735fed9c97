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
