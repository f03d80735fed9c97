"""Turn validate.sh's outputs into docs/gpu-validation.md-ready tables (planned vs actual memory,
predicted vs measured t/s).  python benchmarks/gpu/summarize.py OUTDIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MIB = 2**20


def load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def main() -> int:
    out = Path(sys.argv[1])
    print("# GPU validation\n")
    for name in ("nvidia-smi.txt", "engine.txt", "copy_bandwidth.txt"):
        if (out / name).exists():
            print(f"## {name}\n\n```\n{(out / name).read_text().strip()}\n```\n")
    devices = load(out / "devices.out")
    if devices:
        print("## devices\n\n```json\n" + json.dumps(devices["devices"], indent=2)[:4000] + "\n```\n")
    print("## run: planned vs actual\n")
    print("| run | device | planned MiB | actual MiB | diff | NVML used delta MiB | gen t/s | predicted t/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in sorted(out.glob("run_*.out")):
        doc = load(path)
        if not doc:
            print(f"| {path.stem} | failed: see {path.stem}.err | | | | | | |")
            continue
        for d in doc["devices"]:
            nvml = d.get("nvml_used_delta_bytes")
            print(
                f"| {path.stem} | {d['name']} | {d['planned_bytes'] / MIB:.1f} | {d['actual_bytes'] / MIB:.1f} | "
                f"{100 * d['diff_bytes'] / max(d['actual_bytes'], 1):+.1f}% | {'-' if nvml is None else f'{nvml / MIB:.0f}'} | "
                f"{doc['timings']['gen_tps']} | {doc['plan']['predicted']['tg_tokens_per_s']} |"
            )
    print("\n## bench\n")
    for path in sorted(out.glob("bench_*.jsonl")):
        print(f"### {path.stem}\n")
        print("| config | test | t/s | predicted | roofline share |\n| --- | --- | --- | --- | --- |")
        for line in path.read_text().splitlines():
            r = json.loads(line)
            print(f"| {r['config_key']} | {r['test']} | {r['avg_ts']} | {r['predicted_ts']} | {r['roofline_share']} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
