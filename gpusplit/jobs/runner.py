"""Plans through the engine: generate (`run`), one bench configuration (`bench`), and llama.cpp's
dry run (`plan --measure`). Every engine task runs in a child process (engine/child.py), so a
llama.cpp abort or a dead RPC worker becomes an error here instead of killing the caller.

Library code: no printing; callbacks carry tokens, progress and log lines to whoever shows them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from ..base.contention import Contention, watching
from ..base.reasons import Reason
from ..base.stats import Summary, summarize
from ..devices.nvml import match_by_pci, query_nvml
from ..engine import EngineError
from ..engine.child import CRASH_SIGNALS, EngineCrash, run_task
from ..engine.logparse import parse_buffers, rpc_buffer_map
from ..engine.params import EngineParams
from ..planning.launch import engine_params
from ..planning.planner import Plan, apply_measured_compute, context_budgets, finish_measured, without_repack

T = TypeVar("T")
UPSTREAM_BUG = "https://github.com/ggml-org/llama.cpp/issues/20824"


@dataclass(frozen=True)
class Recovery:
    """llama.cpp crashed while the CPU backend's extra buffer types held weights, and the work ran
    again with them off (llama.cpp's --no-repack), which avoids its kernels for copied weights."""

    crash: str  # the signal: SIGSEGV, SIGILL, ...
    extra_buffers: tuple[str, ...]  # AMX, CPU_REPACK, ... that held weights when it crashed

    @property
    def message(self) -> str:
        held = ", ".join(self.extra_buffers)
        known = f" (llama.cpp's AMX kernels: {UPSTREAM_BUG})" if "AMX" in self.extra_buffers else ""
        return (
            f"llama.cpp crashed ({self.crash}) with weights in its {held} buffer{'s' if len(self.extra_buffers) > 1 else ''}, "
            f"a llama.cpp bug{known}; ran it again with --no-repack, which avoids it: add --no-repack to skip the crash"
        )

    @property
    def reason(self) -> Reason:
        """The plan's reason for running without the extra buffer types."""
        return Reason("recovered", self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"crash": self.crash, "extra_buffers": list(self.extra_buffers), "rerun": "--no-repack", "message": self.message}

    @classmethod
    def from_crash(cls, exc: EngineCrash) -> Recovery:
        return cls(exc.signal or "a signal", exc.extra_buffers)


def recoverable(exc: EngineCrash, params: EngineParams) -> bool:
    """A crash that running without the extra buffer types can avoid: a signal inside llama.cpp's
    code (not an abort it chose, not a kill or a time limit) while those buffers held weights."""
    return not params.no_repack and exc.signal in CRASH_SIGNALS and bool(exc.extra_buffers)


def with_repack_fallback(
    call: Callable[[EngineParams], T], params: EngineParams, may_retry: Callable[[], bool] = lambda: True
) -> tuple[T, Recovery | None]:
    """`call(params)`, and once more with the extra buffer types off if llama.cpp crashed in a way
    that avoids and `may_retry()` (nothing shown yet that a second run would show again); the
    second crash, if any, is raised as it is."""
    try:
        return call(params), None
    except EngineCrash as exc:
        if not recoverable(exc, params) or not may_retry():
            raise
        recovery = Recovery.from_crash(exc)
    try:
        return call(params.with_(no_repack=True)), recovery
    except EngineCrash as exc:
        raise exc.again_without_repack(recovery.extra_buffers) from None


@dataclass
class Timings:
    load_ms: float
    prompt_tokens: int
    prompt_tps: float | None
    gen_tokens: int
    gen_tps: float | None
    ttft_ms: float | None
    token_ms: tuple[float, ...] = ()  # each generated token's decode, in milliseconds

    @property
    def token_summary(self) -> Summary | None:
        """The generated tokens' decode milliseconds: their mean, outliers set aside, with its 95 %
        interval (None with fewer than two tokens timed: no noise to tell)."""
        return summarize(self.token_ms) if len(self.token_ms) >= 2 else None


@dataclass
class RunResult:
    """What one `run` did: the plan it ran, the text, timings and what llama.cpp allocated."""

    plan: Plan  # the plan that ran (with --no-repack, where a crash made it run again so)
    text: str
    timings: Timings
    actual: dict[str, dict[str, int]]  # device name -> component -> bytes, from llama.cpp's log
    nvml_used_delta: dict[str, int] = field(default_factory=dict)  # device name -> bytes
    log: list[str] = field(default_factory=list)
    recovery: Recovery | None = None  # llama.cpp crashed and the run was made again with --no-repack
    host_weights: dict[str, int] = field(default_factory=dict)  # the host's weights by llama.cpp buffer
    contention: Contention | None = None  # what other work took while the prompt and generation ran


@dataclass
class BenchOutcome:
    """One bench configuration: tokens/s samples per test, the buffers, llama.cpp's build."""

    samples: dict[str, list[float]]
    actual: dict[str, dict[str, int]]
    build: dict[str, Any]
    load_ms: float = 0.0
    recovery: Recovery | None = None
    error: str | None = None  # a series' run that failed (bench_series): no samples
    sample_s: float | None = None  # a greedy sample's seconds, where the run asked for it (sample_reps)
    # per test: what other processes and the hypervisor took while it was timed (Linux only)
    contention: dict[str, Contention] = field(default_factory=dict)


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
        token_ms=tuple(float(ms) for ms in result.get("token_ms") or ()),
    )


def rpc_buffer_names(plan: Plan) -> dict[str, str]:
    """'host:port#k' (the k-th device of that worker, as llama.cpp names its buffers) -> RPCn."""
    return rpc_buffer_map([(d.name, d.endpoint) for d in plan.devices])


def _nvidia_devices(plan: Plan) -> dict[str, str]:
    return {d.name: d.pci_bus_id for d in plan.devices if d.pci_bus_id and d.backend == "CUDA"}


def _nvml_used(pci_ids: dict[str, str]) -> dict[str, int]:
    """Used bytes per device name for NVIDIA devices (empty without NVML)."""
    if not pci_ids:
        return {}

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
    plan: Plan,
    params: EngineParams,
    prompt: str,
    n_predict: int,
    temperature: float = 0.0,
    on_token: Callable[[str], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Load with `params` (the plan's, plus seed and threads) and generate in an engine child."""

    watching()  # GPUSPLIT_CONTENTION checked here, where a bad value can be said (the child ignores it)
    nvidia = _nvidia_devices(plan)
    before = _nvml_used(nvidia)
    after: dict[str, int] = {}
    streamed = [False]  # text already shown: a rerun would show it twice, so a crash is not retried then
    deadline = None if timeout is None else time.monotonic() + timeout  # one limit for both attempts

    def on_event(event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "token" and on_token is not None:
            streamed[0] = True
            on_token(event.get("text", ""))
        elif kind == "progress" and on_progress is not None:
            on_progress(float(event.get("value", 0.0)))
        elif kind in ("loaded", "generated"):
            # the larger of after loading and after generating (pools grow during the first decodes)
            for name, used in _nvml_used(nvidia).items():
                after[name] = max(used, after.get(name, 0))

    def attempt(load: EngineParams) -> tuple[dict[str, Any], list[str]]:
        request = {
            "params": load.as_dict(),
            "prompt": prompt,
            "n_predict": n_predict,
            "temperature": temperature,
            "stream": on_token is not None,
            # long enough for the parent to read NVML before the child lets go of the model
            "hold_s": 0.3 if before else 0.0,
        }
        left = None if deadline is None else max(deadline - time.monotonic(), 1.0)
        return run_task("generate", request, on_event=on_event, timeout=left, on_log=on_log)

    (result, log), recovery = with_repack_fallback(attempt, params, lambda: not streamed[0])
    if recovery is not None:
        plan = without_repack(plan, recovery.reason)
    report = parse_buffers(log, rpc_buffer_names(plan))
    delta = {name: after[name] - before[name] for name in after if name in before}
    seen = Contention.from_dict(result["contention"]) if result.get("contention") else None
    return RunResult(
        plan, result["text"], timings_from(result), report.by_device, delta, log, recovery, report.host_weights, seen
    )


def bench_config(
    plan: Plan,
    params: EngineParams,
    tests: list[dict[str, Any]],
    repetitions: int,
    timeout: float | None = None,
    stop_if: dict[str, Any] | None = None,
) -> BenchOutcome:
    """llama-bench's tests on one loaded configuration, in its own engine child. `stop_if`
    ({"test": name, "below_ts": x}) skips the later tests when that test's median is below x."""

    watching()
    deadline = None if timeout is None else time.monotonic() + timeout  # one limit for both attempts

    def attempt(load: EngineParams) -> tuple[dict[str, Any], list[str]]:
        request = {"params": load.as_dict(), "tests": tests, "repetitions": repetitions, "stop_if": stop_if}
        return run_task("bench", request, timeout=None if deadline is None else max(deadline - time.monotonic(), 1.0))

    (result, log), recovery = with_repack_fallback(attempt, params)
    outcome = _bench_outcome(result, parse_buffers(log, rpc_buffer_names(plan)).by_device)
    outcome.recovery = recovery
    return outcome


def _bench_outcome(result: dict[str, Any], actual: dict[str, dict[str, int]]) -> BenchOutcome:
    """task_bench's result (samples per test, build, load time) with the buffers read from its log."""
    samples = {r["test"]: r["samples_ts"] for r in result["results"]}
    seen = {r["test"]: Contention.from_dict(r["contention"]) for r in result["results"] if r.get("contention")}
    return BenchOutcome(
        samples,
        actual,
        result.get("build") or {},
        float(result.get("load_ms") or 0.0),
        sample_s=result.get("sample_s"),
        contention=seen,
    )


def bench_series(
    runs: list[tuple[EngineParams, list[dict[str, Any]], int] | tuple[EngineParams, list[dict[str, Any]], int, int]],
    on_done: Callable[[int], None] | None = None,
    timeout: float | None = None,
) -> list[BenchOutcome]:
    """bench_config's tests for each (params, tests, repetitions) in turn, in one engine child (the
    probe's models, one after another); `on_done(i)` as run i finishes. No buffers are read.

    A failure does not lose the series: the runs done are kept, and the rest go on in a new child.
    A crash that the extra buffer types cause (see `recoverable`) is recovered from once: that run
    and every later one go again with them off (the bug is in llama.cpp's kernels for copied
    weights, which the later runs would meet too), each outcome carrying the `recovery`. A run that
    fails otherwise, or crashes again, comes back with its `error` and no samples.
    """

    watching()
    deadline = None if timeout is None else time.monotonic() + timeout  # one limit for the whole series
    outcomes: list[BenchOutcome | None] = [None] * len(runs)
    recovery: Recovery | None = None
    start = 0
    while start < len(runs):
        first = start

        def on_event(event: dict[str, Any], first: int = first, recovered: Recovery | None = recovery) -> None:
            if event.get("event") == "run_done":
                index = first + int(event["index"])
                outcomes[index] = replace(_bench_outcome(event["result"], {}), recovery=recovered)
                if on_done is not None:
                    on_done(index)

        # (params, tests, repetitions[, greedy samples to time after them])
        load = [(run[0].with_(no_repack=True) if recovery else run[0], *run[1:]) for run in runs[first:]]
        request = {
            "runs": [
                {"params": run[0].as_dict(), "tests": run[1], "repetitions": run[2], "sample_reps": run[3] if len(run) > 3 else 0}
                for run in load
            ]
        }
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break  # out of time: the runs not done come back "not run"
        try:
            run_task("bench_series", request, on_event=on_event, timeout=left)
            break
        except EngineError as exc:
            failed = next((i for i in range(first, len(runs)) if outcomes[i] is None), None)
            if failed is None:
                break  # it died after its last run was done: nothing is lost
            if recovery is None and isinstance(exc, EngineCrash) and recoverable(exc, runs[failed][0]):
                recovery = Recovery.from_crash(exc)
                start = failed
                continue
            outcomes[failed] = BenchOutcome({}, {}, {}, recovery=recovery, error=exc.message)
            if on_done is not None:
                on_done(failed)
            start = failed + 1
    return [o if o is not None else BenchOutcome({}, {}, {}, error="not run") for o in outcomes]


def quantize(src: str, dst: str, ftype: int, threads: int | None = None, timeout: float | None = 600.0) -> float:
    """llama.cpp's quantizer in an engine child (LLAMA_FTYPE_* `ftype`); returns the seconds it took."""
    result, _ = run_task("quantize", {"src": src, "dst": dst, "ftype": ftype, "threads": threads}, timeout=timeout)
    return float(result["seconds"])


def measure(plan: Plan, timeout: float = 300.0) -> Plan:
    """`plan --measure`: every candidate's compute buffers from llama.cpp's dry run, the ranking
    redone on them, and the best context found by dry runs too, so that fits, headroom, best_ctx
    and score all come from the measurement. Two engine children: the candidates, then the search."""
    names = rpc_buffer_names(plan)
    candidates = [plan.best, *plan.alternatives]
    loads = []
    for c in candidates:
        params = engine_params(plan, c)
        loads.append({"params": params.as_dict(), "contexts": [params.n_ctx], "group": _group(plan, c)})
    result, _ = run_task("measure", {"loads": loads, "rpc_names": names}, timeout=timeout)
    for c, load in zip(candidates, result["loads"]):
        apply_measured_compute(plan, c, load["measured"][str(engine_params(plan, c).n_ctx)])
    plan = finish_measured(plan, candidates, best_ctx=None)
    best = plan.best
    contexts, budgets = context_budgets(plan, best)
    search = {
        "params": engine_params(plan, best).as_dict(),
        "contexts": contexts,
        "budgets": budgets,
        "group": _group(plan, best),
    }
    result, _ = run_task("measure", {"loads": [search], "rpc_names": names}, timeout=timeout)
    index = result["loads"][0]["best_index"]
    return finish_measured(plan, [plan.best, *plan.alternatives], best_ctx=0 if index is None else contexts[index])


def _group(plan: Plan, candidate: Any) -> list[str]:
    """The devices llama.cpp's tensor parallelism reports together as `Meta()`."""
    if candidate.llama_mode != "tensor":
        return []
    return [plan.devices[i].name for i in candidate.memory.split_shares]
