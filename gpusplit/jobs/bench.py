"""`gpusplit bench` (the job; matrix.py holds its matrix): llama-bench's tests over a matrix of
configurations, each planned, then run in its own engine child; one BenchRow per (configuration,
test), yielded as each configuration finishes (documents/render.py's bench_record is its
`gpusplit.bench/1` record). A configuration that fails becomes failed rows and the matrix goes on.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..base.errors import GpusplitError, InputError
from ..devices.cpu import default_threads
from ..planning.values import check_kv_type, check_mode, parse_split

if TYPE_CHECKING:
    from ..devices.device import Device
    from ..gguf.model import ModelInfo
    from ..planning.planner import Plan
    from .matrix import Config, Test
    from .runner import Recovery


@dataclass(frozen=True)
class BenchRow:
    """One (configuration, test) of a bench: measured (`samples`, tokens/s per repetition) or
    failed (`error`, and llama.cpp's last log lines). `plan` is the configuration's plan (None when
    planning it failed); `actual` llama.cpp's buffers per device as it logged them; `recovery` says
    the row ran with --no-repack after llama.cpp crashed with the CPU's extra buffer types on."""

    model: ModelInfo
    config: Config
    test: Test
    samples: tuple[float, ...] | None = None
    plan: Plan | None = None
    error: str | None = None
    log_tail: tuple[str, ...] = ()
    actual: Mapping[str, Mapping[str, int]] | None = None
    build: Mapping[str, str] | None = None
    inventory: tuple[Device, ...] = ()
    version: str = ""
    repetitions: int = 0
    recovery: Recovery | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.samples is not None

    @property
    def mean_ts(self) -> float | None:
        """Tokens/s, the mean of the repetitions (None for a failed row)."""
        return statistics.fmean(self.samples) if self.ok and self.samples else None

    @property
    def no_repack(self) -> bool:
        """Run with llama.cpp's --no-repack (the CPU's extra buffer types off)."""
        return self.plan is not None and not self.plan.best.settings.extra_buffers


def bench(
    model: str | os.PathLike[str],
    *,
    rpc: Sequence[str] | None = None,
    timeout: float = 3.0,
    modes: Sequence[str] = ("auto",),
    splits: Sequence[str] = ("auto",),
    ngls: Sequence[int | None] = (None,),
    ctxs: Sequence[int | None] = (None,),
    kv_types: Sequence[str] = ("f16",),
    flash_attn: Sequence[bool] = (False,),
    n_prompt: Sequence[int] = (512,),
    n_gen: Sequence[int] = (128,),
    depths: Sequence[int] = (0,),
    repetitions: int = 5,
    threads: int | None = None,
    config_timeout: float = 1800.0,
    skip: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    on_config: Callable[[int, int, str], None] | None = None,
    saved_plan: Plan | None = None,
    no_repack: bool = False,
) -> Iterator[BenchRow]:
    """llama-bench's tests (pp: a prompt batch, tg: token by token) over the matrix of modes,
    splits, n_gpu_layers, contexts, KV types and flash attention: one BenchRow per
    (configuration, test), yielded as each configuration finishes. A configuration that fails
    (a refused plan, llama.cpp aborting, a dead worker) yields failed records and the matrix goes
    on. `skip` holds (config_key, test) pairs already done; `on_config(k, total, key)` announces
    each configuration before it runs. With `saved_plan` that one configuration is run as it was
    planned.
    `no_repack` runs every configuration with llama.cpp's --no-repack. A configuration whose load
    crashes with the CPU's extra buffer types on (llama.cpp's AMX bug) is measured again without
    them, its records marked with the `recovery`.
    """
    from ..base.version import __version__
    from ..devices.rpc import parse_endpoints
    from ..engine import require_engine
    from ..engine.detect import detect_devices
    from ..planning.prepare import require_complete
    from ..sources import read_model
    from .matrix import matrix, tests_for

    for m in modes:
        check_mode(m)
    for s in splits:
        if s != "auto":
            parse_split(s)
    kvs = [check_kv_type(k) or "f16" for k in kv_types]
    for c in ctxs:
        if c is not None and c <= 0:
            raise InputError(f"--ctx {c} must be positive", "for example --ctx 4096")
    tests = tests_for(list(n_prompt), list(n_gen), list(depths))
    if not tests:
        raise InputError("no tests: -p and -n are all 0", "use -p 512 and/or -n 128")
    if any(d < 0 for d in depths):
        raise InputError("--depth must not be negative", "for example -d 0 -d 1024")
    endpoints = parse_endpoints(list(rpc or []))
    info = read_model(model)
    require_complete(info, "be benchmarked")
    require_engine()
    configs = matrix(list(modes), list(splits), list(ngls), list(ctxs), kvs, list(flash_attn))
    inventory = detect_devices(rpc=endpoints, timeout=timeout, threads=threads)
    common: dict[str, Any] = {
        "model": info,
        "version": __version__,
        "inventory": tuple(inventory.devices),
        "repetitions": repetitions,
    }
    needed = max(t.n + t.depth for t in tests)
    if saved_plan is not None:
        from ..planning.planner import without_extra_buffers

        saved_plan = without_extra_buffers(saved_plan) if no_repack else saved_plan
        configs = [_saved_plan_config(saved_plan)]
    carried: Recovery | None = None
    for k, config in enumerate(configs, 1):
        pending = [t for t in tests if (config.key(), t.name) not in skip]
        if not pending:
            continue
        if on_config is not None:
            on_config(k, len(configs), config.key())
        if saved_plan is not None:
            records = _bench_saved_plan(saved_plan, config, pending, needed, repetitions, threads, config_timeout, common)
        else:
            records = _bench_config(
                info, endpoints, timeout, config, pending, needed, repetitions, threads, config_timeout, common,
                no_repack or carried is not None,
            )  # fmt: skip
        for row in records:
            if carried is not None and row.recovery is None and row.no_repack:
                row = replace(row, recovery=carried)  # run with --no-repack because an earlier configuration crashed
            yield row
        # Once llama.cpp crashed with the extra buffer types on, the later configurations go without
        # them: the bug is in its kernels, which they would meet too (one crash, one warning).
        carried = carried or next((r.recovery for r in records if r.recovery), None)


def _saved_plan_config(saved: Plan) -> Any:
    """A saved plan's engine parameters as a bench configuration (the key its records carry)."""
    from ..planning.launch import engine_params
    from .matrix import Config

    p = engine_params(saved)
    split = ",".join(f"{x:g}" for x in p.tensor_split) or "auto"
    return Config(p.split_mode, split, p.n_gpu_layers, p.n_ctx, p.type_k, p.flash_attn)


def _bench_saved_plan(
    saved: Plan,
    config: Any,
    tests: list[Any],
    needed: int,
    repetitions: int,
    threads: int | None,
    config_timeout: float,
    common: dict[str, Any],
) -> list[BenchRow]:
    """A saved plan as one bench configuration: its engine parameters as they are, not planned again."""
    n_ctx = saved.best.settings.n_ctx
    if needed > n_ctx:
        error = f"the plan's context ({n_ctx}) is shorter than the tests need ({needed}); lower -p/-n/-d or plan with --ctx"
        return _records(config, tests, common, saved, error=error)
    return _bench_planned(saved, config, tests, repetitions, threads, config_timeout, common)


def _bench_config(
    info: ModelInfo,
    endpoints: list[str],
    timeout: float,
    config: Any,
    tests: list[Any],
    needed: int,
    repetitions: int,
    threads: int | None,
    config_timeout: float,
    common: dict[str, Any],
    no_repack: bool = False,
) -> list[BenchRow]:
    """One configuration, planned then run in its own engine child; a failure becomes failed records."""
    from ..engine.detect import detect_devices
    from ..planning.prepare import plan

    try:
        # Devices again for each configuration: live free memory, and a worker that died since
        # is refused here rather than aborting llama.cpp.
        planned = plan(
            info,
            detect_devices(rpc=endpoints, timeout=timeout, threads=threads),
            ctx=config.ctx or max(256, -(-needed // 256) * 256),
            kv_type=config.kv,
            flash_attn=config.fa,
            ngl=config.ngl,
            mode=None if config.mode == "auto" else config.mode,
            split=None if config.split == "auto" else config.split,
            allow_ctx_overflow=True,
            no_repack=no_repack,
        )
    except GpusplitError as exc:
        return _records(config, tests, common, error=f"plan: {exc.message}")
    return _bench_planned(planned, config, tests, repetitions, threads, config_timeout, common)


def _bench_planned(
    planned: Plan,
    config: Any,
    tests: list[Any],
    repetitions: int,
    threads: int | None,
    config_timeout: float,
    common: dict[str, Any],
) -> list[BenchRow]:
    """A plan's configuration run in its own engine child; a failure (it does not fit, llama.cpp
    fails) becomes failed records."""
    from ..engine.child import EngineCrash
    from ..planning.launch import engine_params
    from ..planning.planner import without_extra_buffers
    from .runner import bench_config

    if not planned.best.fits:
        return _records(config, tests, common, planned, error="the plan does not fit these devices")
    params = engine_params(planned).with_(n_threads=threads or default_threads())
    try:
        outcome = bench_config(planned, params, [t.as_dict() for t in tests], repetitions, timeout=config_timeout)
    except EngineCrash as exc:
        return _records(config, tests, common, planned, error=exc.message, log_tail=exc.log_tail)
    except GpusplitError as exc:
        return _records(config, tests, common, planned, error=exc.message)
    recovery = outcome.recovery
    if recovery is not None:
        planned = without_extra_buffers(planned, recovery.message)  # the row ran with --no-repack: its plan says so
    return _records(
        config, tests, common, planned, samples=outcome.samples, actual=outcome.actual, build=outcome.build, recovery=recovery
    )


def _records(
    config: Any,
    tests: list[Any],
    common: dict[str, Any],
    planned: Plan | None = None,
    samples: dict[str, list[float]] | None = None,
    log_tail: Sequence[str] = (),
    **fields: Any,
) -> list[BenchRow]:
    """One row per test of a configuration (with `error` when it failed; no `samples` then)."""
    return [
        BenchRow(
            config=config,
            test=t,
            samples=None if samples is None or samples.get(t.name) is None else tuple(samples[t.name]),
            plan=planned,
            log_tail=tuple(log_tail),
            **fields,
            **common,
        )
        for t in tests
    ]
