"""`gpusplit tune`: the fastest configuration that fits, found by measurement within a budget.

The planner seeds the search: its candidates that fit, ordered by predicted speed. Then, around
the best measured so far: the split proportions (coarse to fine), the offloaded layer count,
flash attention, the micro-batch and the CPU threads. Every configuration is planned first and
only tried when the plan says it fits, so tuning never runs a device out of memory. Each trial is
a short llama-bench-style measurement in its own engine child (the runner `bench` uses); a trial
whose generation is clearly slower than the best skips its prompt test. A failing trial is
recorded and skipped. With hypothetical devices nothing can be measured: the ranking is the
prediction, and the result says so. No terminal I/O: callers get each trial through `on_trial`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..base.errors import GpusplitError, InputError

if TYPE_CHECKING:
    from ..devices.inventory import Inventory
    from ..gguf.model import ModelInfo

OBJECTIVES = ("tg", "pp", "mixed")
TG_TOKENS, PP_TOKENS = 64, 256
REPETITIONS = 3  # median of 3 after the runner's warm-up: short trials on a busy machine are noisy
CLEARLY_WORSE = 0.7  # a generation speed below this share of the best skips the prompt test
MIN_TRIAL_S = 30.0  # the least time a trial gets, even at the end of the budget
SHARE_STEPS = (0.2, 0.1, 0.05)  # coarse to fine moves of one device's share
# Before choosing, the best few are measured again, in turn: on a shared machine trials that differ
# only in settings that barely move generation (micro-batch, flash attention) read tens of percent
# apart, and the luckiest one would win. A winner whose margin over the runner-up is inside their
# spread is no winner: then the configuration closest to the plan's own choice is taken among
# those within the spread.
FINALISTS = 3
FINAL_ROUNDS = 2
MIXED_PROMPT, MIXED_GEN = 512, 128  # `mixed`: a chat turn, 512 tokens in and 128 out


@dataclass(frozen=True)
class Config:
    """One way to run: what `gpusplit.plan` is given, and the CPU threads."""

    mode: str | None = None
    split: tuple[float, ...] | None = None
    ngl: int | None = None
    n_cpu_moe: int | None = None
    ubatch: int = 512
    flash_attn: bool = False
    threads: int | None = None
    no_repack: bool = False  # llama.cpp's --no-repack: no AMX / CPU_REPACK copies of the host's weights

    @property
    def key(self) -> str:
        split = ",".join(f"{x:g}" for x in self.split) if self.split else "auto"
        return (
            f"mode={self.mode or 'auto'} split={split} ngl={self.ngl if self.ngl is not None else 'auto'} "
            f"n_cpu_moe={self.n_cpu_moe or 0} ub={self.ubatch} fa={int(self.flash_attn)} t={self.threads or 'auto'}"
            + (" nr=1" if self.no_repack else "")
        )


@dataclass
class Trial:
    key: str
    config: dict[str, Any]
    strategy: str = ""
    fits: bool = True
    predicted_tg: float | None = None
    predicted_pp: float | None = None
    measured_tg: float | None = None
    measured_pp: float | None = None
    score: float | None = None  # by the objective: measured, or predicted when nothing is measured
    status: str = "ok"  # ok | skipped (did not fit, or clearly slower) | failed
    error: str | None = None
    seconds: float = 0.0
    min_headroom_bytes: int | None = None
    # llama.cpp crashed with the CPU's extra buffer types on, and the trial was measured without them
    recovery: dict[str, Any] | None = None
    # every measurement's score: the search's, then the final rounds' (then `score` is their median)
    samples: list[float] = field(default_factory=list)
    round: int = 0  # 0: the search; 1, 2: a final round's measurement of a finalist (the JSONL keeps both)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TuneResult:
    trials: list[Trial]
    best: Trial | None
    plan: Any  # the winner's gpusplit Plan
    measured: bool
    stopped: str  # budget | done | interrupted
    elapsed_s: float
    notes: list[str] = field(default_factory=list)
    # the final rounds: the runner-up, how far the winner is ahead of it and how far their own
    # measurements spread (percent), and why the winner won ("fastest", "simplest within the spread")
    runner_up: str | None = None
    margin_pct: float | None = None
    spread_pct: float | None = None
    chosen: str = ""


def score(objective: str, tg: float | None, pp: float | None) -> float | None:
    if objective == "tg":
        return tg
    if objective == "pp":
        return pp
    if not tg or not pp:
        return None
    return (MIXED_PROMPT + MIXED_GEN) / (MIXED_PROMPT / pp + MIXED_GEN / tg)


def _plan(model: Any, inventory: Any, settings: dict[str, Any], config: Config) -> Any:
    from ..planning.prepare import plan

    kwargs = dict(settings)
    kwargs.update(ubatch=config.ubatch, batch=max(config.ubatch, settings.get("batch", 512)), flash_attn=config.flash_attn)
    for name, value in (("mode", config.mode), ("split", config.split), ("ngl", config.ngl), ("n_cpu_moe", config.n_cpu_moe)):
        if value is not None:
            kwargs[name] = value
    kwargs["no_repack"] = config.no_repack or bool(settings.get("no_repack"))
    return plan(model, inventory, **kwargs)


def seeds(plan: Any) -> list[Config]:
    """The planner's candidates that fit, as configurations, best predicted first."""
    out = []
    for c in [plan.best, *plan.alternatives]:
        if not c.fits:
            continue
        p = c.placement
        split = tuple(p.tensor_split) if c.llama_mode == "layer" and p.tensor_split else None
        mode = "none" if c.llama_mode == "none" else ("tensor" if c.llama_mode == "tensor" else "layer")
        ngl = -1 if p.n_gpu_layers < 0 or p.n_gpu_layers > plan.model.n_layer else p.n_gpu_layers
        out.append(
            Config(mode, split, ngl if plan.devices else 0, p.n_cpu_moe or None, c.settings.n_ubatch, c.settings.flash_attn,
                   no_repack=not c.settings.extra_buffers)
        )  # fmt: skip
    return list(dict.fromkeys(out))


def host_copies(plan: Any) -> bool:
    """Whether the plan's host keeps copies of its weights (AMX, CPU_REPACK): then --no-repack is a
    configuration of its own, with less host memory and other CPU kernels."""
    host = plan.best.memory.host
    return bool(host.amx_bytes or host.repack_bytes)


def neighbours(best: Config, n_devices: int, n_layer: int, cores: int, repack: bool = False) -> Iterable[Config]:
    """Moves around the best configuration so far: shares, layers, flash attention, batch, threads,
    and (`repack`: the host keeps copies of its weights) with and without them."""
    if best.mode == "layer" and best.split and n_devices == 2:
        share = best.split[0] / (sum(best.split) or 1.0)
        for step in SHARE_STEPS:
            for s in (share - step, share + step):
                if 0.05 <= s <= 0.95:
                    yield replace(best, split=(round(s, 3), round(1 - s, 3)))
    if best.ngl is not None and 0 < best.ngl <= n_layer:
        yield replace(best, ngl=best.ngl - 1)
        yield replace(best, ngl=min(best.ngl + 1, n_layer + 1))
    if best.n_cpu_moe:  # experts of one block more, or fewer, on the CPU
        yield replace(best, n_cpu_moe=best.n_cpu_moe - 1 or None)
        yield replace(best, n_cpu_moe=min(best.n_cpu_moe + 1, n_layer))
    yield replace(best, flash_attn=not best.flash_attn)
    for ubatch in (256, 1024):
        if ubatch != best.ubatch:
            yield replace(best, ubatch=ubatch)
    for threads in range(1, cores + 1):
        if threads != (best.threads or cores):  # no threads given means all cores
            yield replace(best, threads=threads)
    if repack:
        yield replace(best, no_repack=not best.no_repack)


def tune(
    model: Any,
    inventory: Any,
    settings: dict[str, Any],
    *,
    objective: str = "tg",
    budget_s: float = 120.0,
    previous: Iterable[Trial] = (),
    on_trial: Callable[[Trial], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    measure: Callable[[Any, Config, float | None, float], tuple[Any, ...]] | None = None,
) -> TuneResult:
    """Search for the configuration with the best `objective` (tg, pp or mixed) within `budget_s`.

    `previous` trials (a resumed log) are not run again; `on_trial` gets each new one as it ends;
    `should_stop()` ends the search early (Ctrl-C), always with the best so far. `measure(plan,
    config, best_tg, limit_s)` runs one trial (default: the engine) in at most limit_s seconds; it
    returns (tg, pp) tokens/s, and optionally the runner.Recovery (as a dict) if llama.cpp crashed and
    the trial was measured with --no-repack.
    """
    from ..devices.device import is_hypothetical

    if objective not in OBJECTIVES:
        raise InputError(f"--objective {objective!r} is not one of {', '.join(OBJECTIVES)}", "use tg, pp or mixed")
    if budget_s <= 0:
        raise InputError(f"--budget {budget_s:g} s must be positive", "e.g. --budget 120s")
    started = time.monotonic()
    measured = not is_hypothetical(inventory.devices)
    measure = measure or measure_config
    done = {t.key: t for t in previous}
    trials: list[Trial] = list(done.values())
    cores = os.cpu_count() or 1
    first = _plan(model, inventory, settings, Config())
    queue = seeds(first)
    # Once llama.cpp crashed with the extra buffer types on (and the trial was measured without
    # them), every later trial goes without them: the bug is in its kernels, the others would meet it.
    avoid_repack = bool(settings.get("no_repack")) or any(t.recovery for t in trials)
    repack = host_copies(first) and not avoid_repack
    notes = [] if measured else ["hypothetical devices: nothing can be measured, so configurations are ranked by prediction only"]
    stopped = "done"
    best = _best(trials)
    if best is not None:  # resumed: the neighbourhood of the best so far first
        moves = neighbours(Config(**_config_args(best.config)), len(inventory.devices), first.model.n_layer, cores, repack)
        queue = [c for c in moves if c.key not in done] + queue
    try:
        while queue:
            if should_stop is not None and should_stop():
                stopped = "interrupted"
                break
            elapsed = time.monotonic() - started
            typical = max((t.seconds for t in trials if t.status == "ok"), default=0.0)
            # time kept for the final rounds (the best few measured again), once there are some to compare
            finalists = min(FINALISTS, sum(1 for t in trials if t.status == "ok" and t.score))
            reserve = min(FINAL_ROUNDS * finalists * typical, 0.4 * budget_s) if finalists >= 2 else 0.0
            if measured and elapsed + typical + reserve > budget_s:
                stopped = "budget"
                break
            config = queue.pop(0)
            if avoid_repack and not config.no_repack:
                config = replace(config, no_repack=True)
            if config.key in done:
                continue
            # A trial may run to the end of the budget, and at least MIN_TRIAL_S (so that a short
            # budget still measures something): a slow configuration cannot overrun it by minutes.
            limit = max(budget_s - elapsed, MIN_TRIAL_S)
            trial = _run_trial(model, inventory, settings, config, objective, measured, measure, _best(trials), limit)
            done[trial.key] = trial
            trials.append(trial)
            if on_trial is not None:
                on_trial(trial)
            if trial.recovery:
                avoid_repack, repack = True, False
            best = _best(trials)
            if best is not None and best.key == trial.key:
                # A new best: its neighbourhood goes first.
                moves = neighbours(Config(**_config_args(best.config)), len(inventory.devices), first.model.n_layer, cores,
                                   repack)  # fmt: skip
                queue = [c for c in moves if c.key not in done] + queue
    except BaseException as exc:
        # Ctrl-C (KeyboardInterrupt, or the CLI's own interrupt): stop with the best so far.
        if isinstance(exc, (Exception, SystemExit)):
            raise
        stopped = "interrupted"
    result = TuneResult(trials, _best(trials), first, measured, stopped, time.monotonic() - started, notes)
    if measured and stopped != "interrupted":
        _final_rounds(result, model, inventory, settings, objective, measure, seeds(first)[:1], budget_s, started, on_trial)
    if result.best is not None:
        result.plan = _plan(model, inventory, settings, Config(**_config_args(result.best.config)))
    result.elapsed_s = time.monotonic() - started
    return result


def _final_rounds(
    result: TuneResult, model: Any, inventory: Any, settings: dict[str, Any], objective: str,
    measure: Callable[[Any, Config, float | None, float], tuple[Any, ...]], planned: list[Config], budget_s: float,
    started: float, on_trial: Callable[[Trial], None] | None,
) -> None:  # fmt: skip
    """Measure the best few again, in turn, and choose by their medians: the fastest, unless its
    margin over the runner-up is inside their spread; then the one closest to the plan's own choice
    among those within the spread (a simpler configuration, as fast as this machine can tell)."""
    ranked = sorted((t for t in result.trials if t.status == "ok" and t.score), key=lambda t: -(t.score or 0.0))
    finalists = ranked[:FINALISTS]
    if len(finalists) < 2:
        result.chosen = "the only configuration measured" if finalists else ""
        return
    for t in finalists:
        t.samples = t.samples or [t.score or 0.0]
    for round_number in range(1, FINAL_ROUNDS + 1):
        for t in finalists:
            left = budget_s - (time.monotonic() - started)
            if left <= 0 and round_number > 1:
                break  # out of budget: one final round at least, then what there is
            config = Config(**_config_args(t.config))
            try:
                again = measure(_plan(model, inventory, settings, config), config, None, max(left, MIN_TRIAL_S))
            except GpusplitError:
                continue
            value = score(objective, again[0], again[1])
            if value is None:
                continue
            t.samples.append(value)
            if on_trial is not None:
                on_trial(replace(t, samples=[value], score=value, measured_tg=again[0], measured_pp=again[1],
                                 round=round_number, seconds=0.0))  # fmt: skip
    for t in finalists:
        t.score = statistics.median(t.samples)
    finalists.sort(key=lambda t: -(t.score or 0.0))
    fastest, runner_up = finalists[0], finalists[1]

    def spread(t: Trial) -> float:
        return (max(t.samples) - min(t.samples)) / statistics.median(t.samples) if len(t.samples) > 1 else 0.0

    noise = max(spread(fastest), spread(runner_up))
    margin = ((fastest.score or 0.0) - (runner_up.score or 0.0)) / (runner_up.score or 1.0)
    result.runner_up = runner_up.key
    result.margin_pct, result.spread_pct = round(100 * margin, 1), round(100 * noise, 1)
    result.best, result.chosen = fastest, "fastest"
    if margin <= noise:
        # As fast as this machine can tell: the least change from the plan's own choice wins.
        close = [t for t in finalists if (t.score or 0.0) >= (fastest.score or 0.0) * (1 - noise)]
        simplest = min(close, key=lambda t: (_changes(Config(**_config_args(t.config)), planned), -(t.score or 0.0)))
        if simplest is not fastest:
            result.best, result.chosen = simplest, "closest to the plan within the spread"
        result.notes.append(
            f"{fastest.key} led {runner_up.key} by {100 * margin:.1f} %, inside the {100 * noise:.1f} % spread of their "
            f"measurements: {result.best.key} is chosen as the configuration closest to the plan among those that fast"
        )


def _changes(config: Config, planned: list[Config]) -> int:
    """How many settings differ from the plan's own choice (the simpler, the fewer)."""
    base = planned[0] if planned else Config()
    return sum(getattr(config, f) != getattr(base, f) for f in Config.__dataclass_fields__)


def _config_args(doc: dict[str, Any]) -> dict[str, Any]:
    args = dict(doc)
    if args.get("split") is not None:
        args["split"] = tuple(args["split"])
    return args


def _best(trials: list[Trial]) -> Trial | None:
    scored = [t for t in trials if t.status == "ok" and t.score]
    return max(scored, key=lambda t: t.score or 0.0) if scored else None


def _run_trial(
    model: Any, inventory: Any, settings: dict[str, Any], config: Config, objective: str, measured: bool,
    measure: Callable[[Any, Config, float | None, float], tuple[Any, ...]], best: Trial | None,
    limit_s: float,
) -> Trial:  # fmt: skip
    started = time.monotonic()
    trial = Trial(config.key, asdict(config))
    try:
        plan = _plan(model, inventory, settings, config)
    except GpusplitError as exc:
        trial.status, trial.error, trial.fits = "skipped", exc.message, False
        return trial
    c = plan.best
    trial.strategy, trial.fits = c.strategy, c.fits
    trial.predicted_tg, trial.predicted_pp = c.prediction.tg_tokens_per_s, c.prediction.pp_tokens_per_s
    used = [h for h, m in zip(c.headroom, c.memory.devices) if m.planned_bytes]
    trial.min_headroom_bytes = min([*used, c.host_headroom])
    if not c.fits:
        trial.status, trial.error = "skipped", "does not fit"
        return trial
    if not measured:
        trial.score = score(objective, trial.predicted_tg, trial.predicted_pp)
        return trial
    best_tg = best.measured_tg if best is not None and objective != "pp" else None
    try:
        result = measure(plan, config, best_tg, limit_s)
        trial.measured_tg, trial.measured_pp = result[0], result[1]
        trial.recovery = result[2] if len(result) > 2 else None
        if trial.recovery:
            # it ran with --no-repack: filed under that configuration, which is then not run again
            trial.key, trial.config = replace(config, no_repack=True).key, asdict(replace(config, no_repack=True))
    except GpusplitError as exc:  # a dead worker, llama.cpp refusing: recorded, never the end
        trial.status, trial.error = "failed", exc.message
    else:
        trial.score = score(objective, trial.measured_tg, trial.measured_pp)
        trial.samples = [trial.score] if trial.score is not None else []
        if trial.score is None:
            trial.status, trial.error = "skipped", "clearly slower than the best (generation)"
    trial.seconds = round(time.monotonic() - started, 3)
    return trial


def measure_config(
    plan: Any, config: Config, best_tg: float | None, limit_s: float = 300.0
) -> tuple[float | None, float | None, dict[str, Any] | None]:
    """A short measurement in an engine child: tg first; pp only if generation is not clearly worse.
    Both together are stopped after `limit_s` seconds. The third item: llama.cpp crashed with the
    CPU's extra buffer types on and the trial was measured without them (runner.Recovery)."""
    import statistics

    from ..devices.cpu import default_threads
    from ..planning.launch import engine_params
    from .runner import bench_config

    # llama.cpp's own default (4 threads) oversubscribes a small machine: the CPU's cores, as run does.
    params = engine_params(plan).with_(n_threads=config.threads or default_threads())
    tg_test = {"name": "tg", "kind": "tg", "n": TG_TOKENS, "depth": 0}
    pp_test = {"name": "pp", "kind": "pp", "n": PP_TOKENS, "depth": 0}
    # One load for both tests: the prompt test is skipped in the child when generation is clearly
    # worse than the best so far (it used to load the model a second time for it).
    stop_if = {"test": "tg", "below_ts": CLEARLY_WORSE * best_tg} if best_tg else None
    outcome = bench_config(plan, params, [tg_test, pp_test], REPETITIONS, timeout=limit_s, stop_if=stop_if)
    tg = statistics.median(outcome.samples["tg"])
    pp = outcome.samples.get("pp")
    recovery = outcome.recovery.to_dict() if outcome.recovery is not None else None
    return tg, statistics.median(pp) if pp else None, recovery


def tune_model(
    model: ModelInfo | str | os.PathLike[str],
    devices: Inventory | None = None,
    *,
    objective: str = "tg",
    budget: float | str = 120.0,
    previous: Iterable[Trial] = (),
    on_trial: Callable[[Trial], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **settings: Any,
) -> TuneResult:
    """The fastest configuration that fits, found by measurement within `budget` seconds
    (`objective`: tg, pp or mixed); returns a TuneResult whose `.plan` is the winner.

    Seeded by `plan(model, devices, **settings)`; never runs a configuration that does not fit.
    `previous` trials (a resumed log) are not run again. Hypothetical devices are ranked by
    prediction only (the result says so).
    """
    from ..base.units import parse_duration
    from ..engine.detect import detect_devices
    from ..sources import read_model

    info = model if not isinstance(model, (str, os.PathLike)) else read_model(model)
    inventory = devices if devices is not None else detect_devices()
    seconds = parse_duration(budget) or 0.0
    return tune(info, inventory, settings, objective=objective, budget_s=seconds, previous=previous, on_trial=on_trial,
                should_stop=should_stop)  # fmt: skip
