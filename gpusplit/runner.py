"""Running a plan: the engine child generates, and what llama.cpp really allocated comes back.

Library code under `gpusplit run` and `gpusplit bench`: no printing; callbacks carry progress and
tokens to whoever displays them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .engine.params import EngineParams


@dataclass
class Timings:
    load_ms: float
    prompt_tokens: int
    prompt_tps: float | None
    gen_tokens: int
    gen_tps: float | None
    ttft_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "load_ms": round(self.load_ms, 2),
            "prompt_tokens": self.prompt_tokens,
            "prompt_tps": None if self.prompt_tps is None else round(self.prompt_tps, 2),
            "gen_tokens": self.gen_tokens,
            "gen_tps": None if self.gen_tps is None else round(self.gen_tps, 2),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 2),
        }


@dataclass
class RunResult:
    text: str
    timings: Timings
    actual: dict[str, dict[str, int]]  # device name -> component -> bytes, from llama.cpp's log
    nvml_used_delta: dict[str, int] = field(default_factory=dict)  # device name -> bytes
    log: list[str] = field(default_factory=list)


def timings_from(result: dict[str, Any]) -> Timings:
    perf = result.get("perf", {})
    p_ms, e_ms = perf.get("t_p_eval_ms") or 0.0, perf.get("t_eval_ms") or 0.0
    n_p, n_e = perf.get("n_p_eval") or 0, perf.get("n_eval") or 0
    return Timings(
        load_ms=float(result.get("load_ms") or 0.0),
        prompt_tokens=int(result.get("prompt_tokens") or n_p),
        prompt_tps=n_p / p_ms * 1000 if p_ms > 0 and n_p else None,
        gen_tokens=int(result.get("gen_tokens") or 0),
        gen_tps=n_e / e_ms * 1000 if e_ms > 0 and n_e else None,
        ttft_ms=result.get("ttft_ms"),
    )


def _nvml_used(pci_ids: dict[str, str]) -> dict[str, int]:
    """Used bytes per device name for NVIDIA devices (empty without NVML)."""
    if not pci_ids:
        return {}
    from .devices.nvml import match_by_pci, query_nvml

    report = query_nvml()
    if not report.available:
        return {}
    used = {}
    for name, pci in pci_ids.items():
        info = match_by_pci(report, pci)
        if info is not None and info.used_bytes is not None:
            used[name] = info.used_bytes
    return used


def generate(
    params: EngineParams,
    prompt: str,
    n_predict: int,
    temperature: float = 0.0,
    rpc_names: dict[str, str] | None = None,
    nvidia_devices: dict[str, str] | None = None,
    on_token: Callable[[str], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Load and generate in an engine child; `nvidia_devices` maps device names to PCI bus ids."""
    from .engine.child import run_task
    from .engine.logparse import parse_buffers

    before = _nvml_used(nvidia_devices or {})
    after: dict[str, int] = {}

    def on_event(event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "token" and on_token is not None:
            on_token(event.get("text", ""))
        elif kind == "progress" and on_progress is not None:
            on_progress(float(event.get("value", 0.0)))
        elif kind == "loaded":
            after.update(_nvml_used(nvidia_devices or {}))

    request = {
        "params": params.as_dict(),
        "prompt": prompt,
        "n_predict": n_predict,
        "temperature": temperature,
        "stream": on_token is not None,
    }
    result, log = run_task("generate", request, on_event=on_event, timeout=timeout, on_log=on_log)
    actual = parse_buffers(log, rpc_names or {}).by_device
    delta = {name: after[name] - before[name] for name in after if name in before}
    return RunResult(result["text"], timings_from(result), actual, delta, log)
