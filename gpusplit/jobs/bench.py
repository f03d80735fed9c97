"""`gpusplit bench` (the job; matrix.py holds its matrix): llama-bench's tests over a matrix of
configurations, each planned, then run in its own engine child; one BenchRow per (configuration,
test), yielded as each configuration finishes (documents/render.py's bench_record is its
`gpusplit.bench/3` record). A configuration that fails becomes failed rows and the matrix goes on.
Each row carries its noise: the mean with outliers set aside and its 95 % interval (base/stats.py),
and what other work took of the CPUs while it was timed (base/contention.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

from ..base.contention import ENV, Contention
from ..base.errors import GpusplitError
from ..base.reasons import Reason
from ..base.stats import Summary, summarize
from ..base.version import __version__
from ..devices.cpu import default_threads
from ..devices.device import Device
from ..devices.rpc import parse_endpoints
from ..engine import require_engine
from ..engine.child import EngineCrash
from ..engine.detect import detect_devices
from ..gguf.model import ModelInfo
from ..planning.launch import engine_params
from ..planning.planner import Plan, without_repack
from ..planning.prepare import plan as make_plan
from ..planning.prepare import require_complete
from ..planning.request import DEFAULT, Request
from ..sources import read_model
from .matrix import Config, Matrix, Test, Tests
from .runner import Recovery, bench_config


@dataclass(frozen=True)
class BenchRow:
    """One (configuration, test) of a bench: measured (`samples`, tokens/s per repetition) or
    failed (`error`, and llama.cpp's last log lines). `plan` is the configuration's plan (None when
    planning it failed); `actual` llama.cpp's buffers per device as it logged them; `recovery` says
    the row ran with --no-repack after llama.cpp crashed with the CPU's extra buffer types on;
    `contention` what other work took of the CPUs while the test was timed (None where it was not
    watched: GPUSPLIT_CONTENTION=ignore, or no /proc/stat)."""

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
    contention: Contention | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.samples is not None

    @cached_property
    def summary(self) -> Summary | None:
        """The repetitions' mean, outliers set aside, with its 95 % interval (None for a failed row)."""
        return summarize(self.samples) if self.ok and self.samples else None

    @property
    def mean_ts(self) -> float | None:
        """Tokens/s, the mean of the repetitions with outliers set aside (None for a failed row)."""
        return None if self.summary is None else self.summary.mean

    @property
    def contended(self) -> bool:
        """Other work took CPU time the test needed while it was timed (base/contention.py's rule)."""
        return self.contention is not None and self.contention.contended

    @property
    def no_repack(self) -> bool:
        """Run with llama.cpp's --no-repack (the CPU's extra buffer types off)."""
        return self.plan is not None and self.plan.best.settings.no_repack


@dataclass(frozen=True)
class _Common:
    """What every row of a bench shares."""

    model: ModelInfo
    inventory: tuple[Device, ...]
    repetitions: int
    version: str = __version__


@dataclass(frozen=True)
class _Job:
    """How each configuration is run: on which workers, for how long, with which tests."""

    endpoints: list[str]
    timeout: float
    repetitions: int
    config_timeout: float
    common: _Common
    needed_ctx: int = field(default=0)  # KV cells each sequence of the tests needs
    slots: int = 1  # sequences the tests decode together at most


def bench(
    model: str | os.PathLike[str],
    request: Request = DEFAULT,
    *,
    matrix: Matrix = Matrix(),
    tests: Tests = Tests(),
    rpc: Sequence[str] = (),
    timeout: float = 3.0,
    repetitions: int = 5,
    config_timeout: float = 1800.0,
    skip: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    on_config: Callable[[int, int, str], None] | None = None,
    saved_plan: Plan | None = None,
) -> Iterator[BenchRow]:
    """llama-bench's tests (pp: a prompt batch, tg: token by token) over the matrix of modes,
    splits, n_gpu_layers, contexts, KV types and flash attention, each configuration the `request`
    with those fields changed: one BenchRow per (configuration, test), yielded as each
    configuration finishes. A configuration that fails (a refused plan, llama.cpp aborting, a dead
    worker) yields failed rows and the matrix goes on. `skip` holds (config_key, test) pairs
    already done; `on_config(k, total, key)` announces each configuration before it runs. With
    `saved_plan` that one configuration is run as it was planned (with the request's no_repack).
    A configuration whose load crashes with the CPU's extra buffer types on (llama.cpp's AMX bug)
    is measured again without them, its rows marked with the `recovery`, and so are the later ones.
    """
    chosen = tests.tests()
    needed = max(t.cells for t in chosen)
    slots = max(t.parallel for t in chosen)  # sequences decoded together: the configuration's slots
    configs = matrix.configs()
    for config in configs:
        config.request(request, needed, slots)  # every configuration's values checked before anything runs
    endpoints = parse_endpoints(list(rpc))
    info = read_model(model)
    require_complete(info, "be benchmarked")
    require_engine()
    inventory = detect_devices(rpc=endpoints, timeout=timeout, threads=request.n_threads)
    common = _Common(info, tuple(inventory.devices), repetitions)
    job = _Job(endpoints, timeout, repetitions, config_timeout, common, needed, slots)
    if saved_plan is not None:
        saved_plan = without_repack(saved_plan) if request.no_repack else saved_plan
        configs = [_saved_plan_config(saved_plan)]
    carried: Recovery | None = None
    for k, config in enumerate(configs, 1):
        pending = [t for t in chosen if (config.key(), t.name) not in skip]
        if not pending:
            continue
        if on_config is not None:
            on_config(k, len(configs), config.key())
        if saved_plan is not None:
            rows = _bench_saved_plan(saved_plan, config, pending, job)
        else:
            rows = _bench_config(config.request(request.with_(no_repack=request.no_repack or carried is not None), needed, slots),
                                 config, pending, job)  # fmt: skip
        for row in rows:
            if carried is not None and row.recovery is None and row.no_repack:
                row = replace(row, recovery=carried)  # run with --no-repack because an earlier configuration crashed
            yield row
        # Once llama.cpp crashed with the extra buffer types on, the later configurations go without
        # them: the bug is in its kernels, which they would meet too (one crash, one warning).
        carried = carried or next((r.recovery for r in rows if r.recovery), None)


def _saved_plan_config(saved: Plan) -> Config:
    """A saved plan's engine parameters as a bench configuration (the key its rows carry)."""
    p = engine_params(saved)
    split = ",".join(f"{x:g}" for x in p.tensor_split) or "auto"
    return Config(p.split_mode, split, p.n_gpu_layers, p.n_ctx, p.type_k, p.flash_attn)


def _bench_saved_plan(saved: Plan, config: Config, tests: list[Test], job: _Job) -> list[BenchRow]:
    """A saved plan as one bench configuration: its engine parameters as they are, not planned again."""
    n_ctx = saved.best.settings.n_ctx
    if job.needed_ctx > n_ctx:
        error = (
            f"the plan's context ({n_ctx}) is shorter than the tests need ({job.needed_ctx}); test less or plan a longer context"
        )
        return _rows(config, tests, job.common, saved, error=error)
    slots = saved.best.settings.n_parallel
    if job.slots > slots or job.needed_ctx > saved.best.settings.n_ctx_seq:
        error = (
            f"the plan has {slots} sequence slot(s) of {saved.best.settings.n_ctx_seq} cells; the tests decode {job.slots} "
            f"together, {job.needed_ctx} cells each: plan with --parallel {job.slots} and a context of at least "
            f"{job.slots * job.needed_ctx}, or test fewer"
        )
        return _rows(config, tests, job.common, saved, error=error)
    return _bench_planned(saved, config, tests, job)


def _bench_config(request: Request, config: Config, tests: list[Test], job: _Job) -> list[BenchRow]:
    """One configuration, planned then run in its own engine child; a failure becomes failed rows."""
    try:
        # Devices again for each configuration: live free memory, and a worker that died since
        # is refused here rather than aborting llama.cpp.
        devices = detect_devices(rpc=job.endpoints, timeout=job.timeout, threads=request.n_threads)
        planned = make_plan(job.common.model, devices, request)
    except GpusplitError as exc:
        return _rows(config, tests, job.common, error=f"plan: {exc.message}")
    return _bench_planned(planned, config, tests, job)


def _bench_planned(planned: Plan, config: Config, tests: list[Test], job: _Job) -> list[BenchRow]:
    """A plan's configuration run in its own engine child; a failure (it does not fit, llama.cpp
    fails) becomes failed rows."""
    if not planned.best.fits:
        return _rows(config, tests, job.common, planned, error="the plan does not fit these devices")
    params = engine_params(planned).with_(n_threads=planned.request.n_threads or default_threads())
    try:
        outcome = bench_config(planned, params, [t.as_dict() for t in tests], job.repetitions, timeout=job.config_timeout)
    except EngineCrash as exc:
        return _rows(config, tests, job.common, planned, error=exc.message, log_tail=exc.log_tail)
    except GpusplitError as exc:
        return _rows(config, tests, job.common, planned, error=exc.message)
    recovery = outcome.recovery
    if recovery is not None:
        planned = without_repack(planned, recovery.reason)  # the row ran with --no-repack: its plan says so
    return _rows(config, tests, job.common, planned, samples=outcome.samples, actual=outcome.actual, build=outcome.build,
                 recovery=recovery, contention=outcome.contention)  # fmt: skip


def _rows(
    config: Config,
    tests: list[Test],
    common: _Common,
    planned: Plan | None = None,
    samples: dict[str, list[float]] | None = None,
    error: str | None = None,
    log_tail: Sequence[str] = (),
    actual: Mapping[str, Mapping[str, int]] | None = None,
    build: Mapping[str, str] | None = None,
    recovery: Recovery | None = None,
    contention: Mapping[str, Contention] | None = None,
) -> list[BenchRow]:
    """One row per test of a configuration (with `error` when it failed; no `samples` then), each
    with its test's `contention`."""
    return [
        BenchRow(
            model=common.model,
            config=config,
            test=t,
            samples=None if samples is None or samples.get(t.name) is None else tuple(samples[t.name]),
            plan=planned,
            error=error,
            log_tail=tuple(log_tail),
            actual=actual,
            build=build,
            inventory=common.inventory,
            version=common.version,
            repetitions=common.repetitions,
            recovery=recovery,
            contention=(contention or {}).get(t.name),
        )
        for t in tests
    ]


def contended_warning(seen: Sequence[Contention | None], noun: str) -> Reason | None:
    """One warning for a whole job whose measurements (`noun`s: rows, trials, a generation) were
    disturbed: how many, the worst one's disturbance, and the fix; None where none was."""
    busy = [c for c in seen if c is not None and c.contended]
    if not busy:
        return None
    measured = sum(1 for c in seen if c is not None)
    worst = max(busy, key=lambda c: (c.others_cpus - c.spare_cpus, c.steal_pct))
    which = f"the {noun} was" if measured == 1 else f"{len(busy)} of {measured} {noun}s were"
    return Reason(
        "contended",
        f"{which} measured while other work took CPU time {'it' if measured == 1 else 'they'} needed "
        f"({'' if len(busy) == 1 else 'the worst: '}{worst.describe()}): such figures read low and noisy; rerun on an "
        f"idle machine, or set {ENV}=ignore to accept them",
        {"contended": len(busy), "measured": measured, "worst": worst.as_dict()},
    )
