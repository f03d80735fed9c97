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

from gpusplit.base.reasons import CODES  # noqa: E402
from gpusplit.documents.schemas import resolve, schemas  # noqa: E402

SCHEMAS = schemas()

INTRO = """# JSON output

Every command's `--json` prints exactly one JSON document to stdout (`bench -o jsonl` prints one
record per line); progress, warnings and errors go to stderr. Each document carries a `schema`
field, `gpusplit.<command>/<version>`; a breaking change bumps the version. The schemas below are
generated from the types in `gpusplit/documents/models.py`, which the readers decode with and the
test suite validates real outputs against (`python -c "import json, gpusplit.documents.schemas as s;
print(json.dumps(s.schemas()))"` prints them whole). Every object is closed.
Byte counts are exact integers; speeds are tokens per second. Strings that come from a model file
are stripped of control characters.

{provenance} Long arrays are shortened with `...`.
"""

DESCRIPTIONS = {
    "gpusplit.inspect/1": "`gpusplit inspect --json MODEL`: the model as its GGUF header describes it.",
    "gpusplit.devices/2": "`gpusplit devices --json`: the devices llama.cpp would use, in its order, and the host row. "
    "`plan --devices-file` reads this document.",
    "gpusplit.plan/2": "`gpusplit plan --json MODEL`: the chosen split, memory per device, flags and alternatives, and "
    "the request it was made from (`request`: what `run --plan` and `bench --plan` plan again).",
    "gpusplit.run/3": "`gpusplit run --json MODEL`: the plan, the generated text, timings and planned vs actual bytes.",
    "gpusplit.bench/3": "`gpusplit bench -o json` (an array of these) or `-o jsonl` / `--output FILE` (one per line): "
    "one record per configuration and test, its noise (`mean_ts`, `interval_ts`, `outliers_ts`) and `contention`.",
    "gpusplit.catalog/1": "`gpusplit devices --catalog --json`: the built-in GPU catalog.",
    "gpusplit.bench-compare/4": "`gpusplit bench --compare a.jsonl --compare b.jsonl -o json`: per (configuration, test), the change, its 95 % interval and a verdict (faster, slower, the same within noise); a side of several runs (benches appended to one file) is judged over its runs' means.",
    "gpusplit.trial/3": "`gpusplit tune --trials FILE`: one trial per line, appended as each ends (`--resume FILE` goes on from them).",
    "gpusplit.tune/3": "`gpusplit tune --json`: every trial (configuration, predicted and measured speed, the least headroom, status), the winner, and its `gpusplit.plan/2` document (what `--output` writes).",
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


def kind_of(schema: dict, spec: dict) -> str:
    """A property's type in words: its JSON type, an enum's values, a constant, a definition's name."""
    if "anyOf" in spec:
        return " or ".join(kind_of(schema, arm) for arm in spec["anyOf"])
    if "$ref" in spec:
        return spec["$ref"].rsplit("/", 1)[1]
    if "const" in spec:
        return f'"{spec["const"]}"'
    if "enum" in spec:
        values = [str(v) for v in spec["enum"]]
        return " / ".join(values) if len(values) <= 8 else f"one of {len(values)} values"
    kind = spec.get("type", "")
    if kind == "array" and isinstance(spec.get("items"), dict):
        return f"array of {kind_of(schema, spec['items'])}"
    return kind if isinstance(kind, str) else " or ".join(kind)


def fields(schema: dict) -> list[str]:
    top = resolve(schema, schema)
    rows = ["| field | type | required |", "| --- | --- | --- |"]
    required = set(top.get("required", []))
    for name, spec in top.get("properties", {}).items():
        rows.append(f"| `{name}` | {kind_of(schema, spec)} | {'yes' if name in required else 'no'} |")
    return rows


def codes() -> list[str]:
    """The reason codes: what programs pick reasons, warnings and notes by."""
    rows = ["## Reason codes", "", "Every reason, warning and note is `{\"code\", \"text\"}` (and for some codes `values`, the",
            "figures behind the text): programs pick them by code; the text is for people and may change.", "",
            "| code | meaning |", "| --- | --- |"]  # fmt: skip
    rows += [f"| `{code}` | {meaning} |" for code, meaning in CODES.items()]
    return [*rows, ""]


def main() -> int:
    from gpusplit.synthetic import write_header_only

    with tempfile.TemporaryDirectory() as tmp:
        big = str(write_header_only(Path(tmp) / "llama-3.1-70b.gguf", "llama-3.1-70b", sparse=True))
        results = Path(tmp) / "bench.jsonl"
        trials = Path(tmp) / "trials.jsonl"
        examples = {
            "gpusplit.inspect/1": json.loads(gpusplit("inspect", "--json")),
            "gpusplit.devices/2": json.loads(gpusplit("devices", "--json", "--gpu", "RTX 4090", "--gpu", "RTX 3090")),
            "gpusplit.plan/2": json.loads(
                gpusplit("plan", "--json", big, "--gpu", "RTX 4090", "--gpu", "RTX 3090", "--ram", "64GiB")
            ),
            "gpusplit.run/3": json.loads(gpusplit("run", "--json", "-n", "8")),
            "gpusplit.bench/3": json.loads(
                gpusplit("bench", "-p", "32", "-n", "8", "-r", "2", "--ctx", "256", "-o", "json", "--output", str(results))
            )[0],
            "gpusplit.catalog/1": json.loads(gpusplit("devices", "--catalog", "--json")),
            "gpusplit.bench-compare/4": json.loads(
                gpusplit("bench", "--compare", str(results), "--compare", str(results), "-o", "json")
            ),
            "gpusplit.tune/3": json.loads(gpusplit("tune", "--json", "--budget", "10s", "--trials", str(trials))),
            "gpusplit.trial/3": json.loads(trials.read_text().splitlines()[0]),
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
    lines += codes()
    (ROOT / "docs" / "json.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
