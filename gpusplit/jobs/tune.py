"""`gpusplit tune`: the fastest configuration that fits, found by measurement within a budget.

The planner seeds the search: its candidates that fit, ordered by predicted speed. Then, around
the best measured so far: the split proportions (coarse to fine), the offloaded layer count,
flash attention, the micro-batch and the CPU threads. Every move is the request with one field
changed; every configuration is planned first and only tried when the plan says it fits, so
tuning never runs a device out of memory. Each trial is a short llama-bench-style measurement in
its own engine child (the runner `bench` uses); a trial whose generation is clearly slower than
the best skips its prompt test. A failing trial is recorded and skipped. With hypothetical
devices nothing can be measured: the ranking is the prediction, and the result says so. Each
measured figure carries the 95 % interval of its repetitions and what other work took of the CPUs
while it was timed; the result notes (code `contended`) when any trial was disturbed so. No
terminal I/O: callers get each trial through `on_trial`.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ..base.contention import Contention, total
from ..base.errors import GpusplitError, InputError
from ..base.reasons import Reason
from ..base.stats import summarize
from ..base.units import parse_duration
from ..devices.cpu import default_threads, usable_cpus
from ..devices.device import is_hypothetical
from ..devices.inventory import Inventory
from ..engine import require_engine
from ..engine.detect import detect_devices
from ..gguf.model import ModelInfo
from ..planning.launch import engine_params
from ..planning.planner import Plan
from ..planning.prepare import plan as make_plan
from ..planning.request import DEFAULT, Request
from ..sources import read_model
from .bench import contended_warning
from .runner import Recovery, bench_config

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
# The request's fields a tune moves (a trial's key names them; the rest stays as the caller asked).
TUNED = ("split_mode", "tensor_split", "n_gpu_layers", "n_cpu_moe", "n_ubatch", "flash_attn", "n_threads", "no_repack")


class Measurement(NamedTuple):
    """One trial's measurement: tokens/s of generation and prompt (the median of the repetitions),
    the crash it recovered from, the 95 % intervals of the repetitions' mean, and what other work
    took of the CPUs meanwhile."""

    tg: float | None
    pp: float | None
    recovery: Recovery | None
    tg_interval: tuple[float, float] | None = None
    pp_interval: tuple[float, float] | None = None
    contention: Contention | None = None


# measure(plan, best_tg, limit_s) -> a Measurement, or (tg, pp, recovery): one trial (default: the engine)
Measure = Callable[[Plan, float | None, float], "tuple[float | None, float | None, Recovery | None] | Measurement"]


def key(request: Request) -> str:
    """A configuration's name: the fields a tune moves, compactly."""
    split = ",".join(f"{x:g}" for x in request.tensor_split) if request.tensor_split else "auto"
    ngl = request.n_gpu_layers if request.n_gpu_layers is not None else "auto"
    return (
        f"mode={request.split_mode or 'auto'} split={split} ngl={ngl} n_cpu_moe={request.n_cpu_moe or 0} "
        f"ub={request.n_ubatch} fa={int(request.flash_attn)} t={request.n_threads or 'auto'}"
        + (" nr=1" if request.no_repack else "")
    )


@dataclass
class Trial:
    """One configuration tried: its request, what was predicted and measured, and its score."""

    request: Request
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
    recovery: Recovery | None = None
    # every measurement's score: the search's, then the final rounds' (then `score` is their median)
    samples: list[float] = field(default_factory=list)
    round: int = 0  # 0: the search; 1, 2: a final round's measurement of a finalist (the JSONL keeps both)
    # the 95 % intervals of measured_tg's and measured_pp's repetitions (None: one, or not measured)
    tg_interval: tuple[float, float] | None = None
    pp_interval: tuple[float, float] | None = None
    # what other work took of the CPUs while it was timed (a finalist: the most disturbed of its measurements)
    contention: Contention | None = None
    below_floor: bool = False  # several users: one's share under the floor (min_user_tps), so no winner

    @property
    def key(self) -> str:
        return key(self.request)

    @property
    def contended(self) -> bool:
        return self.contention is not None and self.contention.contended


@dataclass
class TuneResult:
    trials: list[Trial]
    best: Trial | None
    plan: Plan  # the winner's plan (the planner's own choice when nothing was measured)
    measured: bool
    stopped: str  # budget | done | interrupted
    elapsed_s: float
    notes: list[Reason] = field(default_factory=list)
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


def seeds(plan: Plan) -> list[Request]:
    """The planner's candidates that fit, as requests (the plan's own with the placement each
    chose), best predicted first."""
    out = []
    for c in [plan.best, *plan.alternatives]:
        if not c.fits:
            continue
        p = c.placement
        split = tuple(p.tensor_split) if c.llama_mode == "layer" and p.tensor_split else None
        mode = "none" if c.llama_mode == "none" else ("tensor" if c.llama_mode == "tensor" else "layer")
        ngl = -1 if p.n_gpu_layers < 0 or p.n_gpu_layers > plan.model.n_layer else p.n_gpu_layers
        out.append(
            plan.request.with_(
                split_mode=mode, tensor_split=split, n_gpu_layers=ngl if plan.devices else 0, n_cpu_moe=p.n_cpu_moe or None,
                n_ubatch=c.settings.n_ubatch, n_batch=max(plan.request.n_batch, c.settings.n_ubatch),
                flash_attn=c.settings.flash_attn, no_repack=c.settings.no_repack,
            )
        )  # fmt: skip
    return list(dict.fromkeys(out))


def host_copies(plan: Plan) -> bool:
    """Whether the plan's host keeps copies of its weights (AMX, CPU_REPACK): then --no-repack is a
    configuration of its own, with less host memory and other CPU kernels."""
    host = plan.best.memory.host
    return bool(host.amx_bytes or host.repack_bytes)


def neighbours(
    best: Request, n_devices: int, n_layer: int, cores: int, repack: bool = False, default_threads: int | None = None
) -> Iterator[Request]:
    """Moves around the best request so far, each one field changed: shares, layers, flash
    attention, batch, threads (1 to `cores`; a request without threads runs `default_threads`,
    all cores unless told), and (`repack`: the host keeps copies of its weights) with and without
    them."""
    if best.split_mode == "layer" and best.tensor_split and n_devices == 2:
        share = best.tensor_split[0] / (sum(best.tensor_split) or 1.0)
        for step in SHARE_STEPS:
            for s in (share - step, share + step):
                if 0.05 <= s <= 0.95:
                    yield best.with_(tensor_split=(round(s, 3), round(1 - s, 3)))
    if best.n_gpu_layers is not None and 0 < best.n_gpu_layers <= n_layer:
        yield best.with_(n_gpu_layers=best.n_gpu_layers - 1)
        yield best.with_(n_gpu_layers=min(best.n_gpu_layers + 1, n_layer + 1))
    if best.n_cpu_moe:  # experts of one block more, or fewer, on the CPU
        yield best.with_(n_cpu_moe=best.n_cpu_moe - 1 or None)
        yield best.with_(n_cpu_moe=min(best.n_cpu_moe + 1, n_layer))
    yield best.with_(flash_attn=not best.flash_attn)
    for ubatch in (256, 1024):
        if ubatch != best.n_ubatch:
            yield best.with_(n_ubatch=ubatch, n_batch=max(best.n_batch, ubatch))
    for threads in range(1, cores + 1):
        if threads != (best.n_threads or default_threads or cores):
            yield best.with_(n_threads=threads)
    if repack:
        yield best.with_(no_repack=not best.no_repack)


@dataclass
class _Search:
    """A tune in progress: what is fixed (the model, the devices, the objective, the budget) and
    what it has found so far."""

    model: ModelInfo
    inventory: Inventory
    objective: str
    budget_s: float
    measure: Measure
    measured: bool
    started: float = field(default_factory=lambda: time.monotonic())  # looked up when made (tests move the clock)
    trials: list[Trial] = field(default_factory=list)
    done: dict[str, Trial] = field(default_factory=dict)
    avoid_repack: bool = False  # llama.cpp crashed with the extra buffer types on: every later trial goes without
    repack: bool = False  # with and without the host's copies are both worth a trial
    seen: list[Contention | None] = field(default_factory=list)  # every measurement's, final rounds' too
    users: int = 1  # users decoding together: the generation measured and scored is all of theirs
    min_user_tps: float | None = None  # the least each of them must get (a configuration under it is not a winner)

    def score(self, tg: float | None, pp: float | None) -> float | None:
        """A measurement's score by the objective; with several users their generation together,
        None where one user's share falls under the floor."""
        if self.users > 1 and tg and self.min_user_tps and tg / self.users < self.min_user_tps:
            return None
        return score(self.objective, tg, pp)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def moves(self, best: Trial, n_layer: int) -> list[Request]:
        around = neighbours(best.request, len(self.inventory.devices), n_layer, usable_cpus(), self.repack, default_threads())
        return [r for r in around if key(r) not in self.done]

    def out_of_time(self) -> bool:
        typical = max((t.seconds for t in self.trials if t.status == "ok"), default=0.0)
        # time kept for the final rounds (the best few measured again), once there are some to compare
        finalists = min(FINALISTS, sum(1 for t in self.trials if t.status == "ok" and t.score))
        reserve = min(FINAL_ROUNDS * finalists * typical, 0.4 * self.budget_s) if finalists >= 2 else 0.0
        return self.measured and self.elapsed + typical + reserve > self.budget_s

    def record(self, trial: Trial, on_trial: Callable[[Trial], None] | None) -> None:
        self.done[trial.key] = trial
        self.trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
        if trial.recovery:
            self.avoid_repack, self.repack = True, False


def tune(
    model: ModelInfo,
    inventory: Inventory,
    request: Request = DEFAULT,
    *,
    objective: str = "tg",
    budget_s: float = 120.0,
    previous: Iterable[Trial] = (),
    on_trial: Callable[[Trial], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    measure: Measure | None = None,
    min_user_tps: float | None = None,
) -> TuneResult:
    """Search for the configuration with the best `objective` (tg, pp or mixed) within `budget_s`,
    starting from `request` (what the user fixed: context, KV types, ...). With `request.users` N
    the objective is the generation of N users decoding together, each getting at least
    `min_user_tps` tokens/s where given.

    `previous` trials (a resumed log) are not run again; `on_trial` gets each new one as it ends;
    `should_stop()` ends the search early (Ctrl-C), always with the best so far. `measure(plan,
    best_tg, limit_s)` runs one trial (default: the engine) in at most limit_s seconds; it returns
    (tg, pp) tokens/s and the runner.Recovery if llama.cpp crashed and the trial was measured with
    --no-repack.
    """
    if objective not in OBJECTIVES:
        raise InputError(
            "{p.objective} {value!r} is not one of tg, pp, mixed", "use tg, pp or mixed", parameter="objective", value=objective
        )
    if not budget_s > 0:
        raise InputError("{p.budget} {value:g} s must be positive", "e.g. 120s", parameter="budget", value=budget_s)
    users = request.users or 1
    if users > 1 and objective != "tg":
        raise InputError(
            "{p.users} tunes the generation of several users together", "use the objective tg with it", parameter="users"
        )
    if min_user_tps is not None and (users <= 1 or not min_user_tps > 0):
        raise InputError(
            "{p.min_user_tps} is a floor for each of several users", "give a positive floor with users of 2 or more",
            parameter="min_user_tps",
        )  # fmt: skip
    measured = not is_hypothetical(inventory.devices)
    if measured and measure is None:
        require_engine()  # the trials run in the engine: said once, before the search, not once per failed trial
    search = _Search(model, inventory, objective, budget_s, measure or measure_config, measured, users=users,
                     min_user_tps=min_user_tps)  # fmt: skip
    for t in previous:
        search.done[t.key] = t
    search.trials = list(search.done.values())
    first = make_plan(model, inventory, request)
    queue = seeds(first)
    search.avoid_repack = request.no_repack or any(t.recovery for t in search.trials)
    search.repack = host_copies(first) and not search.avoid_repack
    notes = (
        []
        if search.measured
        else [
            Reason(
                "prediction-only",
                "hypothetical devices: nothing can be measured, so configurations are ranked by prediction only",
            )
        ]
    )
    best = _best(search.trials)
    if best is not None:  # resumed: the neighbourhood of the best so far first
        queue = search.moves(best, first.model.n_layer) + queue
    stopped = _search(search, queue, first.model.n_layer, on_trial, should_stop)
    result = TuneResult(search.trials, _best(search.trials), first, search.measured, stopped, search.elapsed, notes)
    if search.measured and stopped != "interrupted":
        _final_rounds(result, search, seeds(first)[:1], on_trial)
    busy = contended_warning(search.seen, "trial")
    if busy is not None:
        result.notes.append(busy)
    if result.best is None and min_user_tps and any(t.below_floor for t in search.trials):
        result.notes.append(Reason(
            "user-floor",
            f"no configuration tried gave each of {users} users {min_user_tps:g} tokens/s: the plan's own choice is "
            "kept; fewer users a server (replicas: plan --users), a lower floor, or faster devices",
            {"users": users, "min_user_tps": min_user_tps},
        ))  # fmt: skip
    if result.best is not None:
        result.plan = make_plan(model, inventory, result.best.request)
    result.elapsed_s = search.elapsed
    return result


def _search(
    search: _Search,
    queue: list[Request],
    n_layer: int,
    on_trial: Callable[[Trial], None] | None,
    should_stop: Callable[[], bool] | None,
) -> str:
    """Try the queue, the neighbourhood of each new best first, until it is empty ("done"), the
    budget is spent ("budget") or the caller stops it ("interrupted")."""
    try:
        while queue:
            if should_stop is not None and should_stop():
                return "interrupted"
            if search.out_of_time():
                return "budget"
            request = queue.pop(0)
            if search.avoid_repack and not request.no_repack:
                request = request.with_(no_repack=True)
            if key(request) in search.done:
                continue
            # A trial may run to the end of the budget, and at least MIN_TRIAL_S (so that a short
            # budget still measures something): a slow configuration cannot overrun it by minutes.
            limit = max(search.budget_s - search.elapsed, MIN_TRIAL_S)
            trial = _run_trial(search, request, _best(search.trials), limit)
            search.record(trial, on_trial)
            best = _best(search.trials)
            if best is not None and best.key == trial.key:
                queue = search.moves(best, n_layer) + queue  # a new best: its neighbourhood goes first
            elif best is None and trial.below_floor:
                queue = search.moves(trial, n_layer) + queue  # none above the users' floor yet: around it
    except BaseException as exc:
        # Ctrl-C (KeyboardInterrupt, or the CLI's own interrupt): stop with the best so far.
        if isinstance(exc, (Exception, SystemExit)):
            raise
        return "interrupted"
    return "done"


def _final_rounds(result: TuneResult, search: _Search, planned: list[Request], on_trial: Callable[[Trial], None] | None) -> None:
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
    _measure_again(finalists, search, on_trial)
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
        simplest = min(close, key=lambda t: (_changes(t.request, planned), -(t.score or 0.0)))
        if simplest is not fastest:
            result.best, result.chosen = simplest, "closest to the plan within the spread"
        result.notes.append(Reason(
            "within-noise",
            f"{fastest.key} led {runner_up.key} by {100 * margin:.1f} %, inside the {100 * noise:.1f} % spread of their "
            f"measurements: {result.best.key} is chosen as the configuration closest to the plan among those that fast",
        ))  # fmt: skip


def _measure_again(finalists: list[Trial], search: _Search, on_trial: Callable[[Trial], None] | None) -> None:
    """The final rounds: each finalist measured again, in turn, its samples growing."""
    for round_number in range(1, FINAL_ROUNDS + 1):
        for t in finalists:
            left = search.budget_s - search.elapsed
            if left <= 0 and round_number > 1:
                return  # out of budget: one final round at least, then what there is
            try:
                again = measurement(search.measure(make_plan(search.model, search.inventory, t.request), None,
                                                   max(left, MIN_TRIAL_S)))  # fmt: skip
            except GpusplitError:
                continue
            search.seen.append(again.contention)
            value = search.score(again.tg, again.pp)
            if value is None:
                continue
            t.samples.append(value)
            t.contention = most_disturbed(t.contention, again.contention)
            if on_trial is not None:
                on_trial(replace(t, samples=[value], score=value, measured_tg=again.tg, measured_pp=again.pp,
                                 round=round_number, seconds=0.0, tg_interval=again.tg_interval,
                                 pp_interval=again.pp_interval, contention=again.contention))  # fmt: skip


def _changes(request: Request, planned: list[Request]) -> int:
    """How many tuned fields differ from the plan's own choice (the simpler, the fewer)."""
    base = planned[0] if planned else DEFAULT
    return sum(getattr(request, name) != getattr(base, name) for name in TUNED)


def _best(trials: list[Trial]) -> Trial | None:
    scored = [t for t in trials if t.status == "ok" and t.score]
    return max(scored, key=lambda t: t.score or 0.0) if scored else None


def _run_trial(search: _Search, request: Request, best: Trial | None, limit_s: float) -> Trial:
    started = time.monotonic()
    trial = Trial(request)
    try:
        plan = make_plan(search.model, search.inventory, request)
    except GpusplitError as exc:
        trial.status, trial.error, trial.fits = "skipped", exc.message, False
        return trial
    c = plan.best
    trial.strategy, trial.fits = c.strategy, c.fits
    trial.predicted_tg, trial.predicted_pp = c.prediction.tg_tokens_per_s, c.prediction.pp_tokens_per_s
    if plan.serving is not None:  # several users: all of their generation together
        trial.predicted_tg = plan.serving.server.tokens_per_s
    used = [h for h, m in zip(c.headroom, c.memory.devices) if m.planned_bytes]
    trial.min_headroom_bytes = min([*used, c.host_headroom])
    if not c.fits:
        trial.status, trial.error = "skipped", "does not fit"
        return trial
    if not search.measured:
        trial.score = search.score(trial.predicted_tg, trial.predicted_pp)
        if trial.score is None and search.users > 1 and trial.predicted_tg:
            _below_floor(search, trial, trial.predicted_tg)
        return trial
    best_tg = best.measured_tg if best is not None and search.objective != "pp" else None
    try:
        measured = measurement(search.measure(plan, best_tg, limit_s))
        trial.measured_tg, trial.measured_pp, trial.recovery = measured.tg, measured.pp, measured.recovery
        trial.tg_interval, trial.pp_interval, trial.contention = measured.tg_interval, measured.pp_interval, measured.contention
        search.seen.append(measured.contention)
        if trial.recovery:
            # it ran with --no-repack: filed under that configuration, which is then not run again
            trial.request = request.with_(no_repack=True)
    except GpusplitError as exc:  # a dead worker, llama.cpp refusing: recorded, never the end
        trial.status, trial.error = "failed", exc.message
    else:
        trial.score = search.score(trial.measured_tg, trial.measured_pp)
        trial.samples = [trial.score] if trial.score is not None else []
        if trial.score is None and search.users > 1 and trial.measured_tg:
            _below_floor(search, trial, trial.measured_tg)
        elif trial.score is None:
            trial.status, trial.error = "skipped", "clearly slower than the best (generation)"
    trial.seconds = round(time.monotonic() - started, 3)
    return trial


def _below_floor(search: _Search, trial: Trial, together: float) -> None:
    """A trial whose users each got less than the floor: skipped, and said so."""
    each = together / search.users
    trial.status, trial.below_floor = "skipped", True
    trial.error = f"each of {search.users} users {each:.1f} tokens/s, under the floor of {search.min_user_tps:g}"


def measurement(value: tuple[float | None, float | None, Recovery | None] | Measurement) -> Measurement:
    """A measure's result as a Measurement (a plain (tg, pp, recovery) carries no noise)."""
    return value if isinstance(value, Measurement) else Measurement(*value)


def most_disturbed(a: Contention | None, b: Contention | None) -> Contention | None:
    """Of two measurements' contention, the one other work disturbed more (contended first)."""
    known = [c for c in (a, b) if c is not None]
    return max(known, key=lambda c: (c.contended, c.others_cpus - c.spare_cpus, c.steal_pct)) if known else None


def repetitions_interval(samples: Sequence[float] | None) -> tuple[float, float] | None:
    """The 95 % interval of the repetitions' mean (base/stats.py; its low end at least 0), None for
    fewer than two."""
    if not samples:
        return None
    summary = summarize(samples)
    if not math.isfinite(summary.high - summary.low):
        return None
    return max(summary.low, 0.0), summary.high


def measure_config(plan: Plan, best_tg: float | None, limit_s: float = 300.0) -> Measurement:
    """A short measurement in an engine child: tg first; pp only if generation is not clearly worse.
    Both together are stopped after `limit_s` seconds. Its `recovery`: llama.cpp crashed with the
    CPU's extra buffer types on and the trial was measured without them."""
    # llama.cpp's own default (4 threads) oversubscribes a small machine: the CPU's cores, as run does.
    params = engine_params(plan).with_(n_threads=plan.request.n_threads or default_threads())
    tg_test: dict[str, object] = {"name": "tg", "kind": "tg", "n": TG_TOKENS, "depth": 0}
    if (plan.request.users or 1) > 1:  # every user's token in each step, all of them together
        tg_test["parallel"] = plan.request.users
    pp_test = {"name": "pp", "kind": "pp", "n": PP_TOKENS, "depth": 0}
    # One load for both tests: the prompt test is skipped in the child when generation is clearly
    # worse than the best so far (it used to load the model a second time for it).
    stop_if = {"test": "tg", "below_ts": CLEARLY_WORSE * best_tg} if best_tg else None
    outcome = bench_config(plan, params, [tg_test, pp_test], REPETITIONS, timeout=limit_s, stop_if=stop_if)
    tg = statistics.median(outcome.samples["tg"])
    pp = outcome.samples.get("pp")
    return Measurement(
        tg,
        statistics.median(pp) if pp else None,
        outcome.recovery,
        repetitions_interval(outcome.samples["tg"]),
        repetitions_interval(pp),
        total(outcome.contention.values()),
    )


def tune_model(
    model: ModelInfo | str | os.PathLike[str],
    devices: Inventory | None = None,
    request: Request = DEFAULT,
    *,
    objective: str = "tg",
    budget: float | str = 120.0,
    previous: Iterable[Trial] = (),
    on_trial: Callable[[Trial], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    min_user_tps: float | None = None,
) -> TuneResult:
    """The fastest configuration that fits, found by measurement within `budget` seconds
    (`objective`: tg, pp or mixed; with `request.users`, those users' generation together, each at
    least `min_user_tps`); returns a TuneResult whose `.plan` is the winner.

    Seeded by `plan(model, devices, request)`; never runs a configuration that does not fit.
    `previous` trials (a resumed log) are not run again. Hypothetical devices are ranked by
    prediction only (the result says so).
    """
    info = model if isinstance(model, ModelInfo) else read_model(model)
    inventory = devices if devices is not None else detect_devices(threads=request.n_threads)
    seconds = parse_duration(budget, "budget") or 0.0
    return tune(info, inventory, request, objective=objective, budget_s=seconds, previous=previous, on_trial=on_trial,
                should_stop=should_stop, min_user_tps=min_user_tps)  # fmt: skip
