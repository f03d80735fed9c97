"""Turn validate.sh's outputs into the tables of docs/gpu-validation.md: the device, planned vs
actual memory (llama.cpp's buffers and NVML's used memory), predicted vs measured speed, run
against a bare llama-cpp-python loop, the probe's figures, tune's winner and every failed step.

    python benchmarks/gpu/summarize.py WORKDIR   (the folder validate.sh packs into results.tar.gz)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MIB = 2**20


def load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def pct(a: float | None, b: float | None) -> str:
    """a relative to b, in percent."""
    if a is None or not b:
        return "-"
    return f"{100 * (a - b) / b:+.1f}%"


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MIB:,.1f}"


def section_device(work: Path) -> None:
    for name in ("nvidia-smi.txt", "engine.txt", "model.txt", "copy_bandwidth.out"):
        if (work / name).exists():
            print(f"### {name}\n\n```\n{(work / name).read_text().strip()[:3000]}\n```\n")
    devices = load(work / "devices.out")
    if devices:
        print("### devices --json (GPU rows)\n")
        for d in devices["devices"]:
            nvml = d.get("nvml") or {}
            print(
                f"- {d['name']} ({d['backend']}): {d['description']}, total {mib(d['total_bytes'])} MiB, free "
                f"{mib(d['free_bytes'])} MiB, PCI {d.get('pci_bus_id')}; NVML index {nvml.get('index')}, "
                f"uuid {nvml.get('uuid')}, PCIe gen {nvml.get('pcie_gen')} x{nvml.get('pcie_width')}, "
                f"bandwidth {d.get('bandwidth_bytes_per_s') or 0:.3g} B/s ({d.get('bandwidth_source')})"
            )
        print(f"- engine: {devices.get('engine')}\n- nvml: {devices.get('nvml')}\n")


def section_memory(work: Path) -> None:
    print("## Planned vs actual memory\n")
    print(
        "| run | device | planned buffers MiB | llama.cpp MiB | planned vs llama.cpp | planned runtime MiB "
        "| planned total MiB | NVML used delta MiB | planned total vs NVML |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in sorted(work.glob("run_*.out")):
        doc = load(path)
        if not doc:
            print(f"| {path.stem} | failed (see below) | | | | | | | |")
            continue
        for d in doc["devices"]:
            nvml = d.get("nvml_used_delta_bytes")
            runtime = d.get("planned_runtime_bytes", 0)  # absent before the runtime was planned
            total = d["planned_bytes"] + runtime
            print(
                f"| {path.stem} | {d['name']} | {mib(d['planned_bytes'])} | {mib(d['actual_bytes'])} | "
                f"{pct(d['planned_bytes'], d['actual_bytes'])} | {mib(runtime)} | {mib(total)} | {mib(nvml)} | "
                f"{pct(total, nvml)} |"
            )
    print()


def section_speed(work: Path) -> None:
    print("## Predicted vs measured speed\n")
    print("| run | gen t/s | predicted | error | prompt t/s | predicted | error | basis |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in sorted(work.glob("run_*.out")):
        doc = load(path)
        if not doc:
            continue
        t, p = doc["timings"], doc.get("predicted") or {}
        print(
            f"| {path.stem} | {t.get('gen_tps')} | {p.get('gen_tps')} | {pct(p.get('gen_tps'), t.get('gen_tps'))} | "
            f"{t.get('prompt_tps')} ({t.get('prompt_tokens')} tokens) | {p.get('prompt_tps')} | "
            f"{pct(p.get('prompt_tps'), t.get('prompt_tps'))} | {p.get('basis')} |"
        )
    print()
    bare = load(work / "bare_loop.out")
    run = load(work / "run_4096.out")
    if bare and run:
        gen = run["timings"]["gen_tps"]
        print("### run against a bare llama-cpp-python loop (same Llama() arguments, 128 tokens)\n")
        print("| | gen t/s | run vs it |\n| --- | --- | --- |")
        print(f"| gpusplit run (llama.cpp's counters) | {gen} | |")
        print(f"| bare loop, llama.cpp's counters | {bare['gen_tps_counter']} | {pct(gen, bare['gen_tps_counter'])} |")
        print(f"| bare loop, wall clock around Llama.generate | {bare['gen_tps_wall']} | {pct(gen, bare['gen_tps_wall'])} |")
        print()
    for name in ("bench_gpu", "bench_gpu_probed", "bench_split"):
        rows = jsonl(work / f"{name}.jsonl")
        if not rows:
            continue
        print(f"### {name}\n")
        print("| config | split mode | ngl | test | t/s | predicted | error | basis | status |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(
                f"| {r['config_key']} | {r.get('split_mode')} | {r.get('n_gpu_layers')} | {r['test']} | {r.get('avg_ts')} | "
                f"{r.get('predicted_ts')} | {pct(r.get('predicted_ts'), r.get('avg_ts'))} | {r.get('predicted_basis')} | "
                f"{r['status']}{': ' + str(r.get('error'))[:120] if r.get('error') else ''} |"
            )
        print()


def section_probe(work: Path) -> None:
    probe = load(work / "probe.out")
    if not probe:
        return
    print("## Probe figures\n")
    for d in [*probe["devices"], probe["host"]]:
        s = d.get("speed")
        if not s:
            continue
        bw = ", ".join(f"{k} {v / 1e9:.0f} GB/s" for k, v in s["bandwidth"].items())
        fl = ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in s["flops"].items())
        print(
            f"- {d['name']}: read {bw}; prompt {fl}; per token {s['token_overhead_s'] * 1e6:.0f} us + "
            f"{s['layer_overhead_s'] * 1e6:.1f} us per layer; per batch {s['batch_overhead_s'] * 1e3:.2f} ms + "
            f"{s['batch_layer_overhead_s'] * 1e3:.3f} ms per layer"
        )
        print(f"  - raw: `{json.dumps(s.get('probe'))}`")
    print()


def section_tune(work: Path) -> None:
    tune = load(work / "tune.out")
    if not tune:
        return
    print("## tune\n")
    print(f"```json\n{json.dumps({k: v for k, v in tune.items() if k not in ('plan',)}, indent=1)[:3000]}\n```\n")


def section_steps(work: Path) -> None:
    print("## Steps\n")
    print("| step | exit | seconds |\n| --- | --- | --- |")
    failed = []
    for line in (work / "exit_codes.txt").read_text().splitlines() if (work / "exit_codes.txt").exists() else []:
        name, rc, seconds = line.split()
        print(f"| {name} | {rc} | {seconds} |")
        if rc != "0":
            failed.append(name)
    if (work / "skipped.txt").exists():
        for line in (work / "skipped.txt").read_text().splitlines():
            print(f"| {line.split()[0]} | skipped | |")
    print()
    for name in failed:
        err = (work / f"{name}.err").read_text(errors="replace").strip().splitlines()[-15:]
        print(f"### {name} failed\n\n```\n" + "\n".join(err) + "\n```\n")


def main() -> int:
    work = Path(sys.argv[1])
    print("# GPU validation (raw)\n")
    section_device(work)
    section_memory(work)
    section_speed(work)
    section_probe(work)
    section_tune(work)
    section_steps(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
