"""Record which options llama-server accepts, and how many values each takes, from llama.cpp's own
option table (common/arg.cpp), so that tests can check every flag line gpusplit prints without a
llama-server binary.

    python scripts/llama_server_options.py PATH/TO/llama.cpp [--out tests/data/llama-server-options.json]

PATH is llama.cpp's source tree (the one vendored in the llama-cpp-python sdist gpusplit pins).
An option is llama-server's when its examples name LLAMA_EXAMPLE_SERVER or LLAMA_EXAMPLE_COMMON
(the default) and it is not excluded for the server, as common_params_parser_init decides.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def _top_level_args(text: str) -> list[str]:
    """`text` split at commas outside brackets and string literals."""
    args, depth, current, quote = [], 0, "", False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current += ch
            if ch == "\\":
                current += text[i + 1]
                i += 1
            elif ch == '"':
                quote = False
        elif ch == '"':
            quote, current = True, current + ch
        elif ch in "({[":
            depth, current = depth + 1, current + ch
        elif ch in ")}]":
            depth, current = depth - 1, current + ch
        elif ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    if current.strip():
        args.append(current.strip())
    return args


def server_options(arg_cpp: str) -> dict[str, int]:
    """Option name -> number of values, for every option llama-server parses."""
    named_lists = dict(re.findall(r"std::initializer_list<enum llama_example>\s+(\w+)\s*=\s*\{([^}]*)\}", arg_cpp))
    options: dict[str, int] = {}
    blocks = arg_cpp.split("add_opt(common_arg(")[1:]
    for block in blocks:
        names_match = re.match(r"\s*\{([^}]*)\}\s*,", block)
        if not names_match:
            continue
        names = re.findall(r'"([^"]+)"', names_match[1])
        lambda_at = block.find("[](")
        head = block[names_match.end() : lambda_at if lambda_at >= 0 else len(block)]
        args = _top_level_args(head.strip().rstrip(","))
        if args and args[0].startswith("{"):  # a boolean's negative names: {"--repack"}, {"--no-repack"}
            names += re.findall(r'"([^"]+)"', args.pop(0))
        values = len(args) - 1  # the last one is the help text
        tail = block[lambda_at:] if lambda_at >= 0 else ""
        examples_match = re.search(r"\.set_examples\(\s*(\{[^}]*\}|\w+)\s*\)", tail)
        if examples_match:
            spec = examples_match[1]
            examples = spec if spec.startswith("{") else named_lists.get(spec, "")
        else:
            examples = "LLAMA_EXAMPLE_COMMON"
        excluded = re.search(r"\.set_excludes\(\s*\{([^}]*)\}", tail)
        if "LLAMA_EXAMPLE_SERVER" not in examples and "LLAMA_EXAMPLE_COMMON" not in examples:
            continue
        if excluded and "LLAMA_EXAMPLE_SERVER" in excluded[1]:
            continue
        for name in names:
            options[name] = max(values, 0)
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("llama_cpp", type=Path)
    parser.add_argument("--out", type=Path, default=Path("tests/data/llama-server-options.json"))
    args = parser.parse_args()
    source = args.llama_cpp / "common" / "arg.cpp"
    options = server_options(source.read_text())
    document = {
        "generated_by": "python scripts/llama_server_options.py " + str(args.llama_cpp),
        "source": "common/arg.cpp of the llama.cpp vendored in llama-cpp-python (see pyproject.toml's pin)",
        "options": dict(sorted(options.items())),
    }
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{len(options)} llama-server options -> {args.out}")


if __name__ == "__main__":
    main()
