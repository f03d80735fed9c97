"""Across real links (issue 27): workers on namespaced hosts joined by shaped veth pairs
(tests/netlab.py), probed over their link, then measured against the prediction.

    sudo python benchmarks/links.py [--profiles veth 1gbe wifi wan] [--out docs/links.md]

Per link profile: two hosts (A and B), each running `gpusplit worker --threads 1`, reached through
the lab's delaying relay; `gpusplit devices --probe` over the links; then, on a real-shaped model
(SmolLM2-135M's shapes in Q4_1, random weights), `gpusplit bench` tg128/pp512 (median of 3 after a
warm-up) on one remote worker and on a layer split over both, and `gpusplit run` for the load
time (the workers' uploads) against the plan's prediction, before the bench with the workers' weight
caches empty and after it from them. Last, the planner's first choice over
A and B (the CPU here included) against the fastest measured setup. Targets: generation within
20 %, prompt within 30 %, loads within 30 %.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from netlab import PROFILES, Lab, unavailable  # noqa: E402

GPUSPLIT = [sys.executable, "-m", "gpusplit"]
PORT = 50052


def gpusplit(*args: str, timeout: float = 1800) -> dict:
    done = subprocess.run(
        [*GPUSPLIT, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "NO_COLOR": "1"}
    )
    if done.returncode != 0:
        raise RuntimeError(f"gpusplit {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def bench(model: str, *args: str) -> dict[str, tuple[float, float | None]]:
    """test -> (measured t/s, predicted t/s)."""
    rows = gpusplit("bench", model, "-p", "512", "-n", "128", "-r", "3", "--json", *args)
    out = {}
    for r in rows:
        if r["status"] != "ok":
            raise RuntimeError(f"bench {args}: {r['error']}")
        out[r["test"]] = (r["avg_ts"], r["predicted_ts"])
    return out


def error(predicted: float | None, measured: float | None) -> float | None:
    return None if not predicted or not measured else 100 * (predicted - measured) / measured


def within(value: float | None, target: float) -> str:
    return "-" if value is None else ("yes" if abs(value) <= target else "**no**")


def one_profile(name: str, model: str, rows: list[dict], choices: list[dict]) -> None:
    started = time.monotonic()
    with Lab() as lab, tempfile.TemporaryDirectory() as caches:
        hosts = [lab.host(name), lab.host(name)]
        for i, host in enumerate(hosts):
            # each worker with a weight cache of its own, empty at the start
            lab.spawn(host, [*GPUSPLIT, "worker", "--host", host.address, "--port", str(PORT), "--threads", "1", "--allow-remote",
                             "--cache-dir", str(Path(caches) / f"worker{i}")],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        for host in hosts:
            lab.wait_listening(host, PORT)
        a, b = (lab.relay(host, PORT) for host in hosts)
        both = f"{a},{b}"
        print(f"{name}: probing {both}", file=sys.stderr, flush=True)
        gpusplit("devices", "--probe", "--rpc", both, "--json", timeout=3600)
        setups = {
            "one remote worker (A)": ["--rpc", a, "--mode", "none"],
            "layer split over A and B": ["--rpc", both, "--mode", "layer", "--split", "0.5,0.5"],
        }
        measured_tg = {}
        for setup, args in setups.items():
            print(f"{name}: {setup}", file=sys.stderr, flush=True)
            # The first load of these weights (the workers' caches hold none of them: setups share
            # no worker's layers), then the measurements, then a load from the caches.
            first = gpusplit("run", model, *args, "-n", "16", "--json")
            speeds = bench(model, *args)
            again = gpusplit("run", model, *args, "-n", "16", "--json")
            plan = gpusplit("plan", model, *args, "--json")
            cached_pred = sum(w.get("cached_seconds", w["seconds"]) for w in plan["predicted"]["load"].values())
            tg, tg_pred = speeds["tg128"]
            pp, pp_pred = speeds["pp512"]
            measured_tg[setup] = tg
            rows.append({
                "profile": name, "setup": setup, "tg": tg, "tg_pred": tg_pred, "pp": pp, "pp_pred": pp_pred,
                "load": first["timings"]["load_ms"] / 1000, "load_pred": first["predicted"]["load_s"],
                "cached": again["timings"]["load_ms"] / 1000, "cached_pred": cached_pred,
            })  # fmt: skip
        measured_tg["the CPU alone"] = bench(model, "--ngl", "0", "--rpc", both)["tg128"][0]
        plan = gpusplit("plan", model, "--rpc", both, "--json")
        first = {"cpu-only": "the CPU alone", "single-gpu": "one remote worker", "layer-split": "layer split over A and B"}
        chosen = first.get(plan["strategy"], plan["strategy"])
        fastest = max(measured_tg, key=measured_tg.get)
        choices.append({
            "profile": name, "chosen": f"{chosen} ({plan['strategy']}, {plan['predicted']['tg_tokens_per_s']:.1f} t/s)",
            "fastest": f"{fastest} ({measured_tg[fastest]:.1f} t/s)",
            "ok": fastest.startswith(chosen) or measured_tg.get(chosen, 0) >= 0.95 * measured_tg[fastest]
            if chosen in measured_tg else fastest.startswith(chosen),
        })  # fmt: skip
    print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["veth", "1gbe", "wifi", "wan"], choices=sorted(PROFILES))
    parser.add_argument("--out", default="docs/links.md")
    args = parser.parse_args()
    # A kill must still tear the lab down (namespaces, veth pairs, workers): through SystemExit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = unavailable()
    if reason:
        print(f"links: cannot make namespaced hosts here: {reason}", file=sys.stderr)
        return 2
    from gpusplit.documents.provenance import header
    from gpusplit.jobs.runner import quantize
    from gpusplit.synthetic.real_shaped import write_real_shaped

    model = str(write_real_shaped(ROOT / "scratch" / "prediction" / "real", "smollm2-135m-Q4_1", quantize))
    started = time.monotonic()
    rows: list[dict] = []
    choices: list[dict] = []
    for name in args.profiles:
        one_profile(name, model, rows, choices)
    lines = [
        "# Across links: predicted vs measured",
        "",
        header(
            f"sudo python benchmarks/links.py --profiles {' '.join(args.profiles)}",
            extra=f", no GPU, in {(time.monotonic() - started) / 60:.0f} minutes",
        ),
        "",
        "Workers `gpusplit worker --threads 1` on two network namespaces (tests/netlab.py), each joined to",
        "this one by a veth pair shaped with `tc tbf` and a relay adding the one-way delay; probed over their",
        "links first (`devices --probe`). Model: SmolLM2-135M's shapes in Q4_1 (random weights). bench",
        "tg128/pp512, median of 3 after a warm-up; load: `gpusplit run`'s load time against the predicted",
        "uploads, first with the workers' weight caches (`--cache-dir`) empty, then again from them (their",
        "tensors over 10 MiB: SmolLM2's tied output matrix, 18 MB). Profiles (rate each way, round trip): "
        + "; ".join(
            f"{p} {PROFILES[p].rate_bits / 1e6:.0f} Mbit/s, {2 * PROFILES[p].one_way_s * 1000:.1f} ms"
            if PROFILES[p].rate_bits
            else f"{p} unshaped"
            for p in args.profiles
        )
        + ". Targets: generation 20 %, prompt 30 %, load 30 %.",
        "",
        "| link | setup | tg predicted / measured | error | pp predicted / measured | error | load predicted / measured s | error | again from the workers' caches s | error |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        e_tg, e_pp, e_load = error(r["tg_pred"], r["tg"]), error(r["pp_pred"], r["pp"]), error(r["load_pred"], r["load"])

        def pct(x: float | None) -> str:
            return "-" if x is None else f"{x:+.1f} %"

        e_cached = error(r["cached_pred"], r["cached"])
        lines.append(
            f"| {r['profile']} | {r['setup']} | {r['tg_pred'] or 0:.1f} / {r['tg']:.1f} | {pct(e_tg)} | "
            f"{r['pp_pred'] or 0:.1f} / {r['pp']:.1f} | {pct(e_pp)} | {r['load_pred'] or 0:.2f} / {r['load']:.2f} | {pct(e_load)} | "
            f"{r['cached_pred'] or 0:.2f} / {r['cached']:.2f} | {pct(e_cached)} |"
        )
    ok = (
        sum(within(error(r["tg_pred"], r["tg"]), 20) == "yes" for r in rows),
        sum(within(error(r["pp_pred"], r["pp"]), 30) == "yes" for r in rows),
        sum(within(error(r["load_pred"], r["load"]), 30) == "yes" for r in rows),
        sum(within(error(r["cached_pred"], r["cached"]), 30) == "yes" for r in rows),
    )
    lines += [
        "",
        f"Within target: generation {ok[0]} of {len(rows)}, prompt {ok[1]} of {len(rows)}, load {ok[2]} of {len(rows)}, "
        f"load from the caches {ok[3]} of {len(rows)}.",
        "",
        "## The planner's first choice over A and B (the CPU here included) against the fastest measured",
        "",
        "| link | first choice (predicted tg) | fastest measured | right |",
        "| --- | --- | --- | --- |",
        *[f"| {c['profile']} | {c['chosen']} | {c['fastest']} | {'yes' if c['ok'] else '**no**'} |" for c in choices],
        "",
    ]
    text = "\n".join(lines)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
