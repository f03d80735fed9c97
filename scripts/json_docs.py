"""Write docs/json.md: every --json schema, its fields (from gpusplit/schemas.py) and an example
taken from a real run on this machine.

    python scripts/json_docs.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpusplit.documents.schemas import SCHEMAS  # noqa: E402

INTRO = """# JSON output

Every command's `--json` prints exactly one JSON document to stdout (`bench -o jsonl` prints one
record per line); progress, warnings and errors go to stderr. Each document carries a `schema`
field, `gpusplit.<command>/<version>`; a breaking change bumps the version. The schemas below are
the JSON Schemas in `gpusplit/schemas.py`, which the test suite validates real outputs against.
Byte counts are exact integers; speeds are tokens per second. Strings that come from a model file
are stripped of control characters.

{provenance} Long arrays are shortened with `...`.
"""

DESCRIPTIONS = {
    "gpusplit.inspect/1": "`gpusplit inspect --json MODEL`: the model as its GGUF header describes it.",
    "gpusplit.devices/2": "`gpusplit devices --json`: the devices llama.cpp would use, in its order, and the host row. "
    "`plan --devices-file` reads this document.",
    "gpusplit.plan/2": "`gpusplit plan --json MODEL`: the chosen split, memory per device, flags and alternatives.",
    "gpusplit.run/2": "`gpusplit run --json MODEL`: the plan, the generated text, timings and planned vs actual bytes.",
    "gpusplit.bench/2": "`gpusplit bench -o json` (an array of these) or `-o jsonl` / `--output FILE` (one per line): "
    "one record per configuration and test.",
    "gpusplit.catalog/1": "`gpusplit devices --catalog --json`: the built-in GPU catalog.",
    "gpusplit.bench-compare/1": "`gpusplit bench --compare a.jsonl --compare b.jsonl -o json`: per-configuration ratios.",
    "gpusplit.tune/2": "`gpusplit tune --json`: every trial (configuration, predicted and measured speed, the least headroom, status), the winner, and its `gpusplit.plan/2` document (what `--output` writes).",
}


def gpusplit(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "gpusplit", *args], check=True, capture_output=True, text=True).stdout


def shorten(value, depth=0):
    if isinstance(value, list):
        items = [shorten(v, depth + 1) for v in value[:3]]
        return items + (["..."] if len(value) > 3 else [])
    if isinstance(value, dict):
        return {k: shorten(v, depth + 1) for k, v in value.items()}
    if isinstance(value, str) and len(value) > 160:
        return value[:157] + "..."
    return value


def fields(schema: dict) -> list[str]:
    rows = ["| field | type | required |", "| --- | --- | --- |"]
    required = set(schema.get("required", []))
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type", "const" if "const" in spec else "enum" if "enum" in spec else "")
        if "enum" in spec:
            kind = " / ".join(str(v) for v in spec["enum"])
        if "const" in spec:
            kind = f'"{spec["const"]}"'
        rows.append(
            f"| `{name}` | {kind if isinstance(kind, str) else ' or '.join(kind)} | {'yes' if name in required else 'no'} |"
        )
    return rows


def main() -> int:
    from gpusplit.synthetic import write_header_only

    with tempfile.TemporaryDirectory() as tmp:
        big = str(write_header_only(Path(tmp) / "llama-3.1-70b.gguf", "llama-3.1-70b", sparse=True))
        results = Path(tmp) / "bench.jsonl"
        examples = {
            "gpusplit.inspect/1": json.loads(gpusplit("inspect", "--json")),
            "gpusplit.devices/2": json.loads(gpusplit("devices", "--json", "--gpu", "RTX 4090", "--gpu", "RTX 3090")),
            "gpusplit.plan/2": json.loads(
                gpusplit("plan", "--json", big, "--gpu", "RTX 4090", "--gpu", "RTX 3090", "--ram", "64GiB")
            ),
            "gpusplit.run/2": json.loads(gpusplit("run", "--json", "-n", "8")),
            "gpusplit.bench/2": json.loads(
                gpusplit("bench", "-p", "32", "-n", "8", "-r", "2", "--ctx", "256", "-o", "json", "--output", str(results))
            )[0],
            "gpusplit.catalog/1": json.loads(gpusplit("devices", "--catalog", "--json")),
            "gpusplit.bench-compare/1": json.loads(
                gpusplit("bench", "--compare", str(results), "--compare", str(results), "-o", "json")
            ),
            "gpusplit.tune/2": json.loads(gpusplit("tune", "--json", "--budget", "10s")),
        }
    from gpusplit.documents.provenance import header

    lines = [INTRO.format(provenance=header("python scripts/json_docs.py", extra=", without a GPU"))]
    for name, schema in SCHEMAS.items():
        lines += [
            f"## `{name}`",
            "",
            DESCRIPTIONS[name],
            "",
            *fields(schema),
            "",
            "```json",
            json.dumps(shorten(examples[name]), indent=2),
            "```",
            "",
        ]
    (ROOT / "docs" / "json.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
