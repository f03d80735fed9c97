"""`gpusplit bench` (the job; bench_matrix.py holds its matrix and results files): llama-bench's tests over a matrix of configurations, each planned, then run in
its own engine child; one `gpusplit.bench/1` record per (configuration, test), yielded as each
configuration finishes. A configuration that fails becomes failed records and the matrix goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .devices.cpu import default_threads
from .errors import GpusplitError, InputError
from .values import check_kv_type, check_mode, parse_split

if TYPE_CHECKING:
    from .gguf.model import ModelInfo
    from .planner import Plan


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
    saved_plan: Plan | dict[str, Any] | None = None,
    no_repack: bool = False,
) -> Iterator[dict[str, Any]]:
    """llama-bench's tests (pp: a prompt batch, tg: token by token) over the matrix of modes,
    splits, n_gpu_layers, contexts, KV types and flash attention: one `gpusplit.bench/1` record
    per (configuration, test), yielded as each configuration finishes. A configuration that fails
    (a refused plan, llama.cpp aborting, a dead worker) yields failed records and the matrix goes
    on. `skip` holds (config_key, test) pairs already done; `on_config(k, total, key)` announces
    each configuration before it runs. With `saved_plan` (a Plan, or a `gpusplit.plan/1` document
    such as `tune --output` writes) that one configuration is run as it was planned.
    `no_repack` runs every configuration with llama.cpp's --no-repack. A configuration whose load
    crashes with the CPU's extra buffer types on (llama.cpp's AMX bug) is measured again without
    them, its records marked with the `recovery`.
    """
    from . import __version__
    from .bench_matrix import matrix, tests_for
    from .devices.rpc import parse_endpoints
    from .documents import bench_model
    from .engine import require_engine
    from .hardware import detect_devices
    from .planning import require_complete
    from .sources import read_model

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
    common = {
        "model": bench_model(info),
        "version": __version__,
        "inventory": [d.as_dict() for d in inventory.devices],
        "repetitions": repetitions,
    }
    needed = max(t.n + t.depth for t in tests)
    if saved_plan is not None:
        from .planner import without_extra_buffers
        from .planning import plan_from_document

        if isinstance(saved_plan, dict):
            saved_plan = plan_from_document(saved_plan)  # on the devices it names (its own RPC workers)
        saved_plan = without_extra_buffers(saved_plan) if no_repack else saved_plan
        configs = [_saved_plan_config(saved_plan)]
    carried: dict[str, Any] | None = None
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
        for record in records:
            if carried is not None and record["recovery"] is None and record["no_repack"]:
                record["recovery"] = carried  # run with --no-repack because an earlier configuration crashed
            yield record
        # Once llama.cpp crashed with the extra buffer types on, the later configurations go without
        # them: the bug is in its kernels, which they would meet too (one crash, one warning).
        carried = carried or next((r["recovery"] for r in records if r["recovery"]), None)


def _saved_plan_config(saved: Plan) -> Any:
    """A saved plan's engine parameters as a bench configuration (the key its records carry)."""
    from .bench_matrix import Config
    from .params import engine_params

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
) -> list[dict[str, Any]]:
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
) -> list[dict[str, Any]]:
    """One configuration, planned then run in its own engine child; a failure becomes failed records."""
    from .hardware import detect_devices
    from .planning import plan

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
) -> list[dict[str, Any]]:
    """A plan's configuration run in its own engine child; a failure (it does not fit, llama.cpp
    fails) becomes failed records."""
    from .engine.child import EngineCrash
    from .params import engine_params
    from .planner import without_extra_buffers
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
    recovery = None
    if outcome.recovery is not None:
        planned = without_extra_buffers(planned, outcome.recovery.message)  # the row ran with --no-repack: its plan says so
        recovery = outcome.recovery.to_dict()
    return _records(
        config, tests, common, planned, samples=outcome.samples, actual=outcome.actual, build=outcome.build, recovery=recovery
    )


def _records(
    config: Any,
    tests: list[Any],
    common: dict[str, Any],
    planned: Plan | None = None,
    samples: dict[str, list[float]] | None = None,
    **fields: Any,
) -> list[dict[str, Any]]:
    """One `gpusplit.bench/1` record per test of a configuration (with `error` when it failed; no
    `samples` then), its plan rendered once for all of them."""
    from .documents import bench_record, plan_document

    doc = None if planned is None else plan_document(planned)
    return [
        bench_record(
            config=config, test=t, samples=None if samples is None else samples.get(t.name), plan=doc, **fields, **common
        )
        for t in tests
    ]
