"""`gpusplit devices --probe`: measure what llama.cpp achieves on each device, for the predictor.

For each device llama.cpp would use (the CPU at the thread count runs use, each GPU, each RPC
worker) a few generated models are run wholly on that device with llama-bench's tests (a prompt
batch, then tokens one at a time), each in an engine child like `bench`:

- three small models (1 and 12 layers of width 256, 2 layers of width 768): the fixed costs of a
  decode and of a layer, and the rate at which weights that stay in cache are read;
- one 195 MB f16 model, and the same quantized by llama.cpp's own quantizer to Q8_0, Q4_K_M and
  Q4_0: the rate at which each weight class is read from memory, and the FLOP/s of a prompt batch
  (on a local GPU a 1.75 GB set with Llama-8B-wide layers instead: a GPU reads 195 MB in about
  50 microseconds, too little next to its fixed costs per token to tell its bandwidth);
- two small mixtures of experts (2 and 8 layers), in f16 and quantized to Q4_K_M: how much slower
  expert matmuls of each kind run in a prompt batch, from what the six extra layers add.

The figures are fitted with the predictor's own equations (predict.fit_speed) and cached per
device identity (devices/speed.py). For RPC workers the round trip is timed from Python and the
transfer rate from uploading the 195 MB model. Over two or more GPUs or workers, the small models
run once more with llama.cpp's tensor parallelism, which measures what its synchronisation costs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.contention import ENV, Contention
from ..base.contention import total as total_contention
from ..base.errors import GpusplitError
from ..base.files import replacing
from ..base.paths import cache_dir
from ..base.reasons import CODES, Reason
from ..devices import speed as speed_cache
from ..devices.backends import backend
from ..devices.cpu import default_threads
from ..devices.inventory import attach_speeds, detect
from ..devices.rpc import (
    RPCError,
    link_rates,
    parse_endpoints,
    round_trips,
    same_cpu_service,
    served_key,
    serves_this_cpu,
)
from ..devices.speed import COPIED, DeviceSpeed, GroupSpeed, speed_folder
from ..engine import engine_build_id, require_engine
from ..engine.inventory import engine_summary, registry_devices
from ..engine.params import EngineParams
from ..gguf.model import read_model
from ..gguf.reader import TensorInfo
from ..gguf.types import type_by_name
from ..planning.cpu_buffers import host_copy
from ..planning.launch import engine_params
from ..planning.memory import Placement, Settings, plan_memory
from ..planning.predict import CACHE_READ_BYTES_PER_S, ProbePoint, Work, fit_speed, offered_by_hash, placement_work, predict
from ..planning.prepare import plan as make_plan
from ..planning.refusals import TENSOR_UNSUPPORTED
from ..planning.request import Request
from ..synthetic import write_tiny_model
from ..synthetic.tiny import TINY_MODELS, TinySpec
from .runner import bench_series, quantize

if TYPE_CHECKING:
    from ..devices.device import Device
    from ..devices.inventory import Inventory

PROBE_VERSION = "3"
SMALL = ("l1", "l12", "wide2")
ROWS = "rows"  # one narrow layer under a 262,144-token vocabulary: what a matrix row costs
ROWS_QUANT = "rows-q8_0"  # the same quantized: a quantized row's cost
MOE = "moe"
MOE_DEEP = "moe8"
MOE_QUANT = ("moe-q4_k_m", "moe8-q4_k_m")  # the same two, quantized: quantized experts' factor
DEEP = "deep"  # the attention model's prompt batch after DEEP_TOKENS of context (Target.attention_model)
# In this order: Q4_K_M models hold Q6_K tensors too, which the q6k figures, fitted first, account for.
LARGE = {
    "float": "f16", "q8": "q8_0", "q6k": "q6_k", "q5k": "q5_k_m", "kquant": "q4_k_m", "legacy": "q4_0", "q4_1": "q4_1",
    "q5_0": "q5_0", "iq4": "iq4_xs",
}  # fmt: skip
LARGE_GPU = {cls: f"gpu-{name}" for cls, name in LARGE.items()}
# llama_ftype of each quantized probe model (llama.cpp's quantizer makes them from the f16 one)
QUANTIZE = {"q8_0": 7, "q6_k": 18, "q5_k_m": 17, "q4_k_m": 15, "q4_0": 2, "q4_1": 3, "q5_0": 8, "iq4_xs": 30}
# The type that names each class's probe model (what decides whether the CPU copies it)
CLASS_TYPE = {"float": "F16", "q8": "Q8_0", "q6k": "Q6_K", "q5k": "Q5_K", "kquant": "Q4_K", "legacy": "Q4_0",
              "q4_1": "Q4_1", "q5_0": "Q5_0", "iq4": "IQ4_XS"}  # fmt: skip
PLAIN = ":plain"  # a probe model run with --no-repack: its class's plain kernels where the CPU copies it
# Tokens per generation test: enough that one repetition takes tens of milliseconds or more, since
# on a busy machine a short one is mostly scheduling noise.
TG_TOKENS = {
    "l1": 256,
    "l12": 64,
    "wide2": 64,
    "rows": 64,
    "rows-q8_0": 64,
    "moe": 64,
    "moe8": 32,
    "moe-q4_k_m": 64,
    "moe8-q4_k_m": 32,
}
TG_TOKENS_LARGE = 24
GROUP_TG_TOKENS = 32
BATCH_TOKENS = 512
# One model's prompt batch is timed again after this much context: what attention costs per score
# (the probe's context is 2048 cells).
DEEP_TOKENS = 1024
REPETITIONS = 3
PP_REPETITIONS = 1
BIG_REPETITIONS = 2  # generation of the big models, in each of its two rounds
# The small models, timed in a fraction of a second, get more: their per-layer costs come from the
# difference of two of them, which one slow sample can move several times over.
SMALL_REPETITIONS = 5


class ProbeError(GpusplitError):
    """A device could not be measured (its small models or the f16 one failed)."""


# what a device disturbed every time, or a probe left with none, says to do
IDLE_HINT = f"run the probe when the machine is idle (or set {ENV}=ignore to keep such figures)"


class ProbeContended(ProbeError):
    """Other work took CPU time while a device's model ran, each of three times: its figures are not kept."""

    def __init__(self, device: str, models: list[str], seen: Contention | None) -> None:
        super().__init__(
            "{device}: not kept: {what} while {count} of its probe models ran ({models}), three times each",
            IDLE_HINT,
            device=device,
            what=seen.describe() if seen is not None else "other work took CPU time",
            count=len(models),
            models=", ".join(models[:3]) + (", ..." if len(models) > 3 else ""),
        )
        self.device = device
        self.contention = seen


# Told what happens next; `measured` is True for the steps step_count counts (a model timed on a device).
Step = Callable[[str, bool], None]


def _specs() -> dict[str, TinySpec]:
    base = TINY_MODELS["dense-f16"]  # llama, width 256, GQA
    wide = TINY_MODELS["dense-large-f16"]  # width 768, vocabulary 1024
    return {
        "l1": replace(base, name="probe-l1", n_layer=1),
        "l12": replace(base, name="probe-l12", n_layer=12),
        "wide2": replace(wide, name="probe-wide2", n_layer=2),
        # 262,144 output rows of 256 (128 MB of f16, 68 of q8_0: past any cache): a row's own cost,
        # which real models' large vocabularies and narrow layers pay (Gemma-3-270M: 262,144 rows of 640)
        ROWS: replace(base, name="probe-rows", n_layer=1, n_head=4, n_head_kv=2, n_ff=512, n_vocab=262144),
        # 195 MB: several times any CPU cache (a GPU's L2 is smaller still)
        "f16": replace(wide, name="probe-f16", n_layer=4, n_embd=1536, n_head=12, n_head_kv=4, n_ff=4096),
        # Mixtral-style experts: what a prompt batch pays for llama.cpp's per-expert matmuls
        "moe": replace(wide, name="probe-moe", n_layer=2, n_ff=1024, n_expert=8, n_expert_used=2),
        "moe8": replace(wide, name="probe-moe8", n_layer=8, n_ff=1024, n_expert=8, n_expert_used=2),
        # 1.75 GB, four Llama-3-8B-shaped layers: for local GPUs only (see the module's docstring)
        "gpu-f16": replace(wide, name="probe-gpu-f16", n_layer=4, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336),
    }


def model_folder() -> Path:
    return cache_dir() / "probe-models" / f"v{PROBE_VERSION}"


def probe_models(on_step: Step | None = None, gpu: bool = False) -> dict[str, Path]:
    """The probe models, generated (and quantized by llama.cpp) on first use into the cache; the
    GPU set only with `gpu`."""
    folder = model_folder()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, spec in _specs().items():
        if name.startswith("gpu-") and not gpu:
            continue
        path = folder / f"{name}.gguf"
        if not path.is_file():
            if on_step:
                on_step(f"writing the probe model {name}", False)
            write_tiny_model(path, spec)
        paths[name] = path
    jobs = [
        (f"{prefix}{name}", f"{prefix}f16", ftype)
        for prefix in (("", "gpu-") if gpu else ("",))
        for name, ftype in QUANTIZE.items()
    ]
    jobs += [(name, name.removesuffix("-q4_k_m"), QUANTIZE["q4_k_m"]) for name in MOE_QUANT]
    jobs.append((ROWS_QUANT, ROWS, QUANTIZE["q8_0"]))
    for name, source, ftype in jobs:
        path = folder / f"{name}.gguf"
        if not path.is_file():
            if on_step:
                on_step(f"quantizing the probe model to {name} with llama.cpp", False)
            with replacing(path, "probe_models") as tmp:
                quantize(str(paths[source]), str(tmp), ftype)
        paths[name] = path
    return paths


@dataclass(frozen=True)
class Target:
    """One device to probe, and how to place a model wholly on it."""

    device: Device
    identity: str
    rpc: tuple[str, ...] = ()
    main_gpu: int = 0
    on_cpu: bool = False
    big: bool = False  # timed on the GPU set even if it is no local GPU
    this_cpu: bool = False  # an RPC worker serving this machine's CPU (its cache is this CPU's)
    no_repack: bool = False  # llama.cpp's --no-repack: the CPU's extra buffer types off
    extra_buffers: tuple[str, ...] = ()  # the CPU's extra buffer types (the host target only)
    repack_level: str = "none"

    @property
    def copied_classes(self) -> tuple[str, ...]:
        """The classes whose probe model the CPU copies into an extra buffer type: timed by default
        (the copies' kernels) and once more with --no-repack (the plain ones)."""
        if not self.on_cpu or self.no_repack or not self.extra_buffers:
            return ()

        def copied(type_name: str) -> bool:
            t = type_by_name(type_name)
            shape = (1536, 4096)  # a probe model's matrix (rows a multiple of every kernel's)
            n = shape[0] * shape[1]
            weight = TensorInfo("blk.0.ffn_up.weight", shape, t, 0, 0, n, n // t.block_size * t.type_size)
            return host_copy(weight, self.extra_buffers, self.repack_level)[1] > 0

        return tuple(cls for cls in self.large if copied(CLASS_TYPE[cls]))

    def fit_classes(self) -> dict[str, str]:
        """Class -> probe run that measures it: the plain classes, and where the CPU copies a class
        its copies' class ("legacy+copy") from the default run and the plain one from a --no-repack run."""
        out = {}
        copied = self.copied_classes
        for cls, name in self.large.items():
            out[cls] = name + PLAIN if cls in copied else name
            if cls in copied:
                out[cls + COPIED] = name
        return out

    @property
    def local_gpu(self) -> bool:
        return not self.on_cpu and not self.rpc and backend(self.device.backend).gpu

    @property
    def attention_model(self) -> str:
        """The probe model whose prompt batch is timed again after a long context: a small one with
        64-wide heads (a CPU fills 1024 cells of it in a tenth of a second), the big float set on a
        GPU (on a small model a GPU's attention is lost in its fixed costs)."""
        return self.large["float"] if self.local_gpu or self.big else "wide2"

    @property
    def large(self) -> dict[str, str]:
        """The large probe models (weight class -> name) this device is timed on."""
        return LARGE_GPU if self.local_gpu or self.big else LARGE


def targets(inventory: Inventory, threads: int, build: str) -> list[Target]:
    reported = inventory.engine.cpu_backend(inventory.engine_from_file) if inventory.engine is not None else None
    host = Target(
        inventory.host,
        speed_cache.identity_of(inventory.host, threads, build),
        on_cpu=True,
        extra_buffers=reported.extra_buffers if reported is not None else (),
        repack_level=reported.repack if reported is not None else "none",
    )
    out = [host]
    for d in inventory.devices:
        if d.endpoint:
            # Only this worker registered: its devices come first in llama.cpp's list.
            k = sum(1 for other in inventory.devices[: d.index] if other.endpoint == d.endpoint)
            this_cpu = serves_this_cpu(d, inventory.host)
            identity = speed_cache.identity_of(d, threads, build, served_key(d.endpoint))
            out.append(Target(d, identity, rpc=(d.endpoint,), main_gpu=k, this_cpu=this_cpu))
        else:
            local = [x for x in inventory.devices if not x.endpoint]
            out.append(Target(d, speed_cache.identity_of(d, threads, build), main_gpu=local.index(d)))
    return out


def _params(target: Target, path: Path, threads: int) -> EngineParams:
    return EngineParams(
        model_path=str(path),
        rpc=target.rpc,
        n_gpu_layers=0 if target.on_cpu else 999,
        split_mode="none",
        main_gpu=target.main_gpu,
        n_ctx=2048,
        n_batch=BATCH_TOKENS,
        n_ubatch=BATCH_TOKENS,
        n_threads=threads,
        no_repack=target.no_repack,
    )


@dataclass(frozen=True)
class ProbeRun:
    """One probe model timed on the target: generation, and unless `prompt` is False a prompt
    batch (and with `deep` the same batch after DEEP_TOKENS of context)."""

    name: str
    params: EngineParams
    tg_tokens: int
    repetitions: int = REPETITIONS
    pp_repetitions: int = REPETITIONS
    prompt: bool = True
    deep: bool = False
    label: str = ""
    sample_reps: int = 0  # greedy samples timed after the tests (the host CPU: what `run` adds a token)

    def tests(self) -> list[dict[str, Any]]:
        tests = [{"name": "tg", "kind": "tg", "n": self.tg_tokens, "depth": 0}]
        if self.prompt:
            tests.append({"name": "pp", "kind": "pp", "n": BATCH_TOKENS, "depth": 0, "repetitions": self.pp_repetitions})
        if self.prompt and self.deep:
            tests.append(
                {"name": "pp_deep", "kind": "pp", "n": BATCH_TOKENS, "depth": DEEP_TOKENS, "repetitions": self.pp_repetitions}
            )
        return tests


@dataclass(frozen=True)
class Timing:
    """Medians of one ProbeRun: seconds per generated token and per prompt batch (None when not
    timed), after DEEP_TOKENS of context (with `deep`), and the load's seconds."""

    token_s: float
    batch_s: float | None
    load_s: float
    deep_batch_s: float | None = None
    no_repack: bool = False  # run with the extra buffer types off, after llama.cpp crashed with them
    sample_s: float | None = None  # a greedy sample over the vocabulary (where asked)
    contention: Contention | None = None  # what other work took while its tests ran

    @property
    def contended(self) -> bool:
        return self.contention is not None and self.contention.contended


def _time_runs(
    runs: list[ProbeRun], on_step: Step | None = None, notes: list[Reason] | None = None, failures: list[str] | None = None
) -> list[Timing | None]:
    """Every run in one engine child, in order (on_step announces each as it starts). A run that
    failed is None, and what happened is added to `notes` and to `failures`; a crash llama.cpp's
    extra buffer types caused is recovered from (bench_series) and said in `notes` once."""

    def started(index: int) -> None:
        if on_step is not None and index < len(runs):
            on_step(runs[index].label, True)

    started(0)
    # One limit for the whole series, far above a device's probe (tens of seconds): a hang shows in 30 min.
    outcomes = bench_series(
        [(r.params, r.tests(), r.repetitions, r.sample_reps) for r in runs], lambda i: started(i + 1), timeout=1800
    )

    def per_batch(samples: dict[str, list[float]], test: str) -> float | None:
        return BATCH_TOKENS / statistics.median(samples[test]) if test in samples else None

    recovery = next((o.recovery for o in outcomes if o.recovery is not None), None)
    if recovery is not None and notes is not None:
        notes.append(recovery.reason)
    timings: list[Timing | None] = []
    for run, o in zip(runs, outcomes):
        if o.error is not None or not o.samples.get("tg"):
            timings.append(None)
            failure = f"{run.label}: not measured ({o.error or 'no samples'})"
            if notes is not None:
                notes.append(Reason("run-failed", failure, {"run": run.label, "model": run.name}))
            if failures is not None:
                failures.append(failure)
            continue
        timings.append(Timing(1.0 / statistics.median(o.samples["tg"]), per_batch(o.samples, "pp"), o.load_ms / 1000,
                              per_batch(o.samples, "pp_deep"), o.recovery is not None, o.sample_s,
                              total_contention(o.contention.values())))  # fmt: skip
    return timings


SPIKE = 1.5  # rounds further apart than this: the slower one met a busy moment
# A first load's large tensors this much slower a byte than the later loads': the worker's weight
# cache served the later ones (over an unshaped veth here 6 ns a byte against 2.5; without a cache
# the two agree within a busy moment's 20 %).
CACHED_LOADS = 1.5
SAMPLE_REPS = 21


def two_rounds(first: float, second: float) -> float:
    """One figure from a model's two rounds: their mean, as a shared machine's speed drifts both
    ways between them (taking the faster round alone biases every prediction fast), unless one
    round is a spike (a busy moment only ever adds time): then the faster."""
    low, high = sorted((first, second))
    return low if high > SPIKE * low else (low + high) / 2


def _work(path: Path, copies: tuple[str, ...] = (), repack_level: str = "none") -> Work:
    """What a token of this probe model reads and computes, with the model on one device; on the
    CPU with the extra buffer types `copies`, its copied weights in their classes of their own."""
    model = read_model(path)
    if copies:
        settings = Settings(n_ctx=2048, cpu_repack=repack_level, cpu_extra_buffers=copies)
        return placement_work(model, plan_memory(model, [], [], [], settings, Placement(n_gpu_layers=0)))[None]
    memory = plan_memory(model, ["probe"], ["probe"], [2**62], Settings(n_ctx=2048), Placement("none", -1, (), 0))
    # The input layer stays on the CPU (works[None]); its one row per token is negligible.
    return placement_work(model, memory)[0]


def probe_device(
    target: Target,
    paths: dict[str, Path],
    threads: int,
    on_step: Step | None = None,
    on_more: Callable[[int], None] | None = None,
) -> DeviceSpeed:
    """Time every probe model wholly on the target and fit its figures. The small and big models
    run twice (_second_round); a model whose run other work disturbed runs again in full
    (`on_more(n)` says how many steps that adds beyond step_count's), and once more if that run
    was disturbed too; a model disturbed every time raises ProbeContended: nothing is kept."""
    runs = _probe_runs(target, paths, threads)
    raw: dict[str, Any] = {}  # the timings as measured, kept with the figures (DeviceSpeed.probe)
    notes: list[Reason] = []
    failures: list[str] = []
    rtt = up = down = None
    if target.rpc:
        # The link first, while the worker is idle: its round trip and each way's rate.
        rtt = _round_trip(target.rpc[0])
        up, down = _link_rates(target.rpc[0], raw)
    timings = _time_runs(runs, on_step, notes, failures)
    again = _second_round(target, runs, timings, paths, threads)
    if again:
        extra = [run for run in again if run.name not in _run_twice(target)]
        if extra and on_more is not None:
            on_more(len(extra))  # disturbed runs beyond the second round step_count counts
        runs, timings = runs + again, timings + _time_runs(again, on_step, notes, failures)
    # A model with no undisturbed run yet gets a last try: on this VM the hypervisor stole 6-8 %
    # now and then, and a short model met such a moment twice in 2 of 3 probes of three devices.
    last = [_probe_run(target, paths, threads, name, again=True, full=True) for name in _settled(runs, timings)[1]]
    if last:
        if on_more is not None:
            on_more(len(last))
        runs, timings = runs + last, timings + _time_runs(last, on_step, notes, failures)
    disturbances = [t.contention for t in timings if t is not None and t.contended]
    seen = total_contention(c for c in disturbances if c is not None)
    timings, disturbed = _settled(runs, timings)
    if disturbed:
        raise ProbeContended(target.device.name, disturbed, seen)
    if seen is not None:
        notes.append(Reason("probe-remeasured", f"{len(disturbances)} runs measured again: {seen.describe()} during them",
                            {"runs": len(disturbances)}))  # fmt: skip
    loads, first_loads = _load_times(runs, timings)
    points = _probe_points(target, runs, timings, paths, down, raw)
    sample_fixed, sample_per_vocab = _sample_costs(runs, timings, paths, raw)
    large = target.large
    missing = [name for name in (*SMALL, large["float"]) if name not in points]
    if missing:
        why = failures[0] if failures else f"{missing[0]} failed"
        more = f" (and {len(failures) - 1} more runs)" if len(failures) > 1 else ""
        raise ProbeError(f"{target.device.name} could not be measured: {why}{more}")
    if notes:
        raw["notes"] = raw.get("notes", []) + [n.as_dict() for n in notes]
    cache = speed_cache.cpu_cache_bytes() if target.on_cpu or target.this_cpu else 0
    fitted = fit_speed(
        points,
        cache,
        SMALL,
        target.fit_classes(),
        MOE,
        MOE_DEEP,
        MOE_QUANT,
        (target.attention_model, DEEP),
        {"float": ROWS, "quant": ROWS_QUANT},
    )
    rate = None
    loaded = LoadFit()
    if target.rpc:
        loaded = _load_figures(loads, first_loads, paths, large["float"], rtt or 0.0, up)
        rate = loaded.rate
        if loaded.note:
            raw.setdefault("notes", []).append(Reason("cache-warm", loaded.note).as_dict())
    elif target.local_gpu and large["kquant"] in points:  # (a failed Q4_K_M model: nothing to compare with)
        rate = _upload_rate(target, paths, threads, points[large["kquant"]], raw, on_step)
    return replace(
        fitted,
        rtt_s=rtt,
        link_bytes_per_s=rate,
        download_bytes_per_s=down,
        load_fixed_s=loaded.fixed_s,
        load_per_vocab_s=loaded.per_vocab_s,
        load_hashed_s_per_byte=loaded.hashed_s_per_byte,
        load_cached_s_per_byte=loaded.cached_s_per_byte,
        threads=threads if target.on_cpu else None,
        source="measured",
        identity=target.identity,
        measured_at=speed_cache.now(),
        probe=raw,
        no_repack=target.no_repack or any(t is not None and t.no_repack for t in timings),
        sample_fixed_s=sample_fixed,
        sample_per_vocab_s=sample_per_vocab,
    )


def _probe_runs(target: Target, paths: dict[str, Path], threads: int) -> list[ProbeRun]:
    """Every probe model's first run on the target, in the order they are timed; `_second_round`
    says which run again."""
    # Where the CPU copies a class's weights, its probe model runs once more with --no-repack: the
    # plain kernels, for weights of that class it does not copy (a --no-repack plan, other shapes).
    plain = tuple(target.large[cls] + PLAIN for cls in target.copied_classes)
    names = (*SMALL, ROWS, ROWS_QUANT, *target.large.values(), *plain, MOE, MOE_DEEP, *MOE_QUANT)
    return [_probe_run(target, paths, threads, name) for name in names]


def _probe_run(
    target: Target, paths: dict[str, Path], threads: int, name: str, again: bool = False, full: bool = False
) -> ProbeRun:
    """One probe model's run on the target: its first (`again` False), or its second: generation
    alone for a big model unless `full` (the first was disturbed: everything again)."""
    big = name in target.large.values()
    prompt = full or not (again and big)
    params = _params(target, paths[name.removesuffix(PLAIN)], threads)
    return ProbeRun(
        name,
        params.with_(no_repack=True) if name.endswith(PLAIN) else params,
        TG_TOKENS.get(name, TG_TOKENS_LARGE),
        SMALL_REPETITIONS if name in (*SMALL, ROWS, ROWS_QUANT) else (BIG_REPETITIONS if big else REPETITIONS),
        # Prompt batches vary by a percent or two between runs (after the warm-up, which they
        # need: a first batch ran 3-15 % slow here, and after a 64-token warm-up a Q4_K_M batch
        # 21 % slow): three for the small models, one for the big and MoE ones (most of the
        # probe's time).
        REPETITIONS if name in SMALL else PP_REPETITIONS,
        prompt,
        prompt and name == target.attention_model,
        f"{target.device.name}: {name}" + (" again" if again else ""),
        # the host's sampling cost, from a 512- and a 262,144-token vocabulary
        SAMPLE_REPS if target.on_cpu and not again and name in ("l1", ROWS) else 0,
    )


def _second_round(
    target: Target, runs: list[ProbeRun], timings: list[Timing | None], paths: dict[str, Path], threads: int
) -> list[ProbeRun]:
    """The runs made again, after every first one. The small and rows models (their timings set the
    fixed costs, which drift both ways between rounds: two_rounds takes their mean, or the faster
    round past a spike) and the big models' generation (each weight class's memory rate; a remote
    worker gets the big set, ~1 GB, uploaded twice: 8 s more over 1 GbE); and any run other work
    disturbed, in full, its first run then dropped (_settled)."""
    again = []
    for run, timed in zip(runs, timings):
        if timed is None:
            continue  # failed: said already
        if timed.contended or run.name in _run_twice(target):
            again.append(_probe_run(target, paths, threads, run.name, again=True, full=timed.contended))
    return again


def _run_twice(target: Target) -> tuple[str, ...]:
    """The models every probe of the target runs twice (see _second_round)."""
    return (*SMALL, ROWS, ROWS_QUANT, *target.large.values())


def _settled(runs: list[ProbeRun], timings: list[Timing | None]) -> tuple[list[Timing | None], list[str]]:
    """The timings with each disturbed one dropped where its model also ran undisturbed; and the
    models every run of which was disturbed (their figures cannot be trusted)."""
    out = list(timings)
    disturbed: list[str] = []
    for name in dict.fromkeys(run.name for run in runs):
        mine = [i for i, run in enumerate(runs) if run.name == name and timings[i] is not None]
        contended = [i for i in mine if (timed := timings[i]) is not None and timed.contended]
        if mine and len(contended) == len(mine):
            disturbed.append(name)
            continue
        for i in contended:
            out[i] = None
    return out, disturbed


def _load_times(runs: list[ProbeRun], timings: list[Timing | None]) -> tuple[dict[str, float], dict[str, float]]:
    """Each model's faster load and its first one, in seconds.

    A first load reads the model file from disk (the big float model's took 0.78 s over an
    unshaped link, its second 0.29), and a worker with a weight cache (--cache, ggml-rpc-server -c)
    serves the second from its disk (the same model's 18 s over 100 Mbit/s came back in 5)."""
    loads: dict[str, float] = {}
    first_loads: dict[str, float] = {}
    for run, timed in zip(runs, timings):
        if timed is not None:
            first_loads.setdefault(run.name, timed.load_s)
            loads[run.name] = min(loads.get(run.name, timed.load_s), timed.load_s)
    return loads, first_loads


def _probe_points(
    target: Target, runs: list[ProbeRun], timings: list[Timing | None], paths: dict[str, Path], down: float | None,
    raw: dict[str, Any],
) -> dict[str, ProbePoint]:  # fmt: skip
    """The fit's point of each probe model that ran: its timings less its logits' download (over a
    link to a worker), its two rounds taken as one where it ran twice (two_rounds). Each round's
    timings go into `raw`."""
    points: dict[str, ProbePoint] = {}
    for run, timed in zip(runs, timings):
        if timed is None:
            continue  # failed: its class stays unmeasured
        name, first = run.name, points.get(run.name)
        if first is None:
            if timed.batch_s is None:
                continue  # only its second round ran (generation alone): its class stays unmeasured
            less = _less_logits(paths[name.removesuffix(PLAIN)], down)
            token_s, batch_s = less(timed.token_s), less(timed.batch_s)
            deep_s = None if timed.deep_batch_s is None else less(timed.deep_batch_s)
            raw[name] = _raw_times(timed.load_s, token_s, batch_s, deep_s)
        else:
            less = _less_logits(paths[name.removesuffix(PLAIN)], down)
            token_s = less(timed.token_s)
            again_s = None if timed.batch_s is None else less(timed.batch_s)
            deep_s = None if timed.deep_batch_s is None else less(timed.deep_batch_s)
            raw[name]["again"] = _raw_times(timed.load_s, token_s, again_s, deep_s)
            token_s = two_rounds(first.token_s, token_s)
            if again_s is None or again_s >= first.batch_s:  # the deep batch stays with its base's round
                batch_s, deep_s = first.batch_s, (points[DEEP].batch_s if run.deep else None)
            else:
                batch_s = again_s
        # the copies' classes where llama.cpp copied them (not after a crash made the rest run plain)
        copies = target.extra_buffers if not run.params.no_repack and not timed.no_repack and target.on_cpu else ()
        work = _work(paths[name.removesuffix(PLAIN)], copies, target.repack_level)
        points[name] = ProbePoint(name, work, token_s, batch_s, BATCH_TOKENS)
        if deep_s is not None:
            points[DEEP] = replace(points[name], name=DEEP, batch_s=deep_s, depth=DEEP_TOKENS)
    return points


def _less_logits(path: Path, down: float | None) -> Callable[[float], float]:
    """A timing less the logits a worker sends back over the link, at `down` bytes per second (None:
    not a worker, the timing as it is): each token's (a batch's: its last token's), bytes the
    predictor counts as a transfer, not as the model's rows (a 262,144-entry vocabulary's megabyte
    took 88 ms over 100 Mbit/s, and read as 5x the rows' cost)."""
    if not down:
        return lambda seconds: seconds
    logits_s = _vocab(path) * 4 / down
    return lambda seconds: max(seconds - logits_s, 1e-6)


def _raw_times(load_s: float, token_s: float, batch_s: float | None, deep_s: float | None) -> dict[str, float]:
    """A round's timings as the raw record keeps them."""
    record = {"token_s": round(token_s, 7), "load_s": round(load_s, 4)}
    if batch_s is not None:
        record["batch_s"] = round(batch_s, 6)
    if deep_s is not None:
        record["deep_batch_s"] = round(deep_s, 6)
    return record


def _sample_costs(
    runs: list[ProbeRun], timings: list[Timing | None], paths: dict[str, Path], raw: dict[str, Any]
) -> tuple[float, float]:
    """(fixed seconds, seconds per vocabulary entry) of a greedy sample on the host (its candidate
    array), from the 1-layer and the rows models' samples; zeros where they were not timed."""
    sampled = {run.name: t.sample_s for run, t in zip(runs, timings) if t is not None and t.sample_s}
    if "l1" not in sampled or ROWS not in sampled:
        return 0.0, 0.0
    small_vocab, large_vocab = _vocab(paths["l1"]), _vocab(paths[ROWS])
    per_vocab = max((sampled[ROWS] - sampled["l1"]) / (large_vocab - small_vocab), 0.0)
    fixed = max(sampled["l1"] - per_vocab * small_vocab, 0.0)
    raw["sample"] = {"l1_s": round(sampled["l1"], 7), "rows_s": round(sampled[ROWS], 7)}
    return fixed, per_vocab


def _upload_rate(
    target: Target, paths: dict[str, Path], threads: int, on_device: ProbePoint, raw: dict[str, Any], on_step: Step | None
) -> float | None:
    """How fast weights reach a local GPU from mapped host memory: what a prompt batch of a partly
    offloaded model pays for the CPU's blocks, which llama.cpp uploads for each batch (op offload).
    Timed directly: the Q4_K_M model's batch with every block left on the CPU, against the same
    batch with all of them on the GPU (`on_device`). (An H200's loads grew by 6-16 GB/s; these
    uploads ran at about 5.)"""
    name = target.large["kquant"]
    on_cpu = _params(target, paths[name], threads).with_(n_gpu_layers=0)
    (host,) = _time_runs([ProbeRun(name, on_cpu, 4, label=f"{target.device.name}: {name} from host memory")], on_step)
    host_batch_s = (host.batch_s if host is not None else None) or 0.0
    raw["upload"] = {"batch_s": round(host_batch_s, 6)}
    return offload_rate(_host_weight_bytes(paths[name]), host_batch_s, on_device.batch_s)


def _vocab(path: Path) -> int:
    return read_model(path).n_vocab


def offload_rate(host_bytes: int, host_batch_s: float, device_batch_s: float) -> float | None:
    """Bytes per second at which a batch's host weights reach the device: what the batch took
    longer with them in host memory. None when it took no longer (nothing to tell)."""
    extra = host_batch_s - device_batch_s
    return host_bytes / extra if host_bytes > 0 and extra > 0 else None


def _host_weight_bytes(path: Path) -> int:
    """The weights llama.cpp uploads per batch with no block offloaded: all but the input layer."""
    model = read_model(path)
    return sum(b.n_bytes for b in model.blocks) + model.output.n_bytes


@dataclass(frozen=True)
class LoadFit:
    """What a load onto a worker costs (see _load_figures); rate None: not measured."""

    rate: float | None = None
    fixed_s: float = 0.0
    per_vocab_s: float = 0.0
    hashed_s_per_byte: float = 0.0
    cached_s_per_byte: float = 0.0
    note: str = ""


def _load_figures(
    loads: dict[str, float], first_loads: dict[str, float], paths: dict[str, Path], big_name: str, rtt: float,
    up: float | None,
) -> LoadFit:  # fmt: skip
    """A load onto a worker, from the probe models' loads (each model's fastest, and its first):
    - the bytes sent as they are, at the rate the largest model with no tensor over 10 MiB loaded
      beside the smallest one (never served from a cache), and a fixed part (allocations and graph
      reservation, each a round trip, and the worker's own setup);
    - a byte of a tensor over 10 MiB (offered by hash first, a round trip each), and what a
      vocabulary adds (the host's tokenizer, the worker's logits buffers), from the big float model
      and the 262,144-entry one: on a first load (the host hashes it, sends it, and a worker with a
      weight cache hashes it again and writes it to disk: 6 ns a byte over an unshaped veth here,
      where the link alone takes 1.5), and from the worker's cache where its later loads came from
      there (the host's hash and the worker's disk read: 2.5 ns)."""
    if "l1" not in loads or big_name not in loads:
        return LoadFit()
    sent = {name: _sent(paths[name]) for name in loads}
    # the largest plain model (q8_0: 108 MB, nothing over 10 MiB), or the float one taken as plain
    plain = max((n for n in loads if n != "l1" and sent[n].hashed == 0), key=lambda n: sent[n].total, default=big_name)
    if loads[plain] > loads["l1"]:
        rate = (sent[plain].total - sent["l1"].total) / (loads[plain] - loads["l1"])
    else:
        rate = sent[plain].total / loads[plain]
    fixed = max(loads["l1"] - sent["l1"].total / rate, 0.0)
    if plain == big_name:
        return LoadFit(rate, fixed)
    # A first load's bytes read from disk (the probe models' files cold): what the plain model's
    # first load took beyond its fastest, per byte, taken out of the float model's first load.
    cold = max(first_loads.get(plain, loads[plain]) - loads[plain], 0.0) / sent[plain].total

    def beyond(name: str, seconds: float) -> float:
        """What a load took beyond its fixed part, its plain bytes and its hashed tensors' round trips."""
        return seconds - fixed - sent[name].plain / rate - sent[name].n_hashed * rtt

    vocab_l1 = _vocab(paths["l1"])
    # the float model: its hashed bytes, its vocabulary beyond l1's, what its fastest load took beyond
    a1, b1, r1 = sent[big_name].hashed, _vocab(paths[big_name]) - vocab_l1, beyond(big_name, loads[big_name])
    per_vocab, hashed = 0.0, r1 / a1
    if ROWS in loads and sent[ROWS].hashed:
        # two unknowns (a hashed byte, a vocabulary entry) from two models: solved together
        a2, b2, r2 = sent[ROWS].hashed, _vocab(paths[ROWS]) - vocab_l1, beyond(ROWS, loads[ROWS])
        det = a1 * b2 - a2 * b1
        if det:
            per_vocab = max((a1 * r2 - a2 * r1) / det, 0.0)
            hashed = (r1 - b1 * per_vocab) / a1
    first_seconds = first_loads.get(big_name, loads[big_name]) - cold * sent[big_name].total
    first = (beyond(big_name, first_seconds) - b1 * per_vocab) / a1
    first, hashed = max(first, 0.0), max(hashed, 0.0)
    note = ""
    if first > CACHED_LOADS * hashed:
        cached = hashed  # the worker's cache served the later loads: timed
    else:
        # no cache (or one that held them before the probe): a hashed byte from a cache is the
        # host's hash (what such a byte took beyond the link) and the worker's disk read
        cached = max(hashed - 1.0 / rate, 0.0) + 1.0 / CACHE_READ_BYTES_PER_S
        if up and first * up < 1.0 / CACHED_LOADS:
            # faster than its bytes can cross the link: the cache held them before the probe
            note = (
                f"large tensors loaded at {1e-6 / first:.0f} MB/s over a {up / 1e6:.0f} MB/s link: the worker's "
                "weight cache served them; a first load is taken at the link's rate"
            )
            cached, first = first, 1.0 / up + first
    return LoadFit(rate, fixed, per_vocab, first, cached, note)


@dataclass(frozen=True)
class Sent:
    """What a probe model sends a worker at load: all its weights (the input layer stays on the
    host), those of its tensors over 10 MiB (offered by hash first), and how many those are."""

    total: int
    hashed: int
    n_hashed: int

    @property
    def plain(self) -> int:
        return self.total - self.hashed


def _sent(path: Path) -> Sent:
    model = read_model(path)
    n_hashed, hashed, total = offered_by_hash(model, list(range(len(model.blocks))), True)
    return Sent(total, hashed, n_hashed)


def _link_rates(endpoint: str, raw: dict[str, Any]) -> tuple[float | None, float | None]:
    """Each way's rate over the link to a worker, recorded in `raw`; (None, None) where the worker
    would not take the test buffer (its notes say why)."""
    try:
        up, down = link_rates(endpoint)
    except RPCError as exc:
        raw.setdefault("notes", []).append(Reason("link-unmeasured", f"link rates not measured: {exc}").as_dict())
        return None, None
    raw["link"] = {"up_bytes_per_s": round(up), "down_bytes_per_s": round(down)}
    return up, down


def _round_trip(endpoint: str) -> float:
    """Median seconds of one request and answer to the worker."""
    return statistics.median(round_trips(endpoint))


def probe_group(
    inventory: Inventory, paths: dict[str, Path], threads: int, on_step: Step | None = None, no_repack: bool = False
) -> GroupSpeed | None:
    """Tensor parallelism over every device: what its synchronisation adds per layer."""
    devices = inventory.devices
    if len(devices) < 2 or any(d.speed is None for d in devices):
        return None
    # The 12-layer model: the synchronisation per layer is what its layers add over the predictions.
    model = read_model(paths["l12"])
    if model.architecture in TENSOR_UNSUPPORTED:
        return None
    request = Request(n_ctx=2048, split_mode="tensor", n_gpu_layers=-1, allow_ctx_overflow=True, no_repack=no_repack)
    plan = make_plan(model, inventory, request)
    params = engine_params(plan)
    params = params.with_(n_threads=threads, n_batch=BATCH_TOKENS, n_ubatch=BATCH_TOKENS)
    # Tensor parallelism's synchronisation is a cost per layer: a short generation shows it as well
    # as a long one, and over slow workers a long one would take most of the probe.
    label = f"tensor parallelism over {len(devices)} devices: l12"
    (timed,) = _time_runs([ProbeRun("l12", params, GROUP_TG_TOKENS, label=label)], on_step)
    if timed is None:
        return None
    measured_token, measured_batch = timed.token_s, timed.batch_s or 0.0
    c = plan.best
    # What the devices' own figures and the bytes over the links predict, without fixed sync costs:
    alone = predict(model, c.memory, c.settings, devices, inventory.host, c.placement.n_cpu_moe, GroupSpeed(0.0, 0.0))
    no_sync_batch = BATCH_TOKENS / alone.pp_tokens_per_s if alone.pp_tokens_per_s else 0.0
    members = [d.speed.identity for d in devices if d.speed is not None]
    return GroupSpeed(
        layer_sync_s=max((measured_token - (alone.seconds_per_token or 0.0)) / model.n_layer, 0.0),
        batch_layer_sync_s=max((measured_batch - no_sync_batch) / model.n_layer, 0.0),
        identity=speed_cache.group_identity(members),
        measured_at=speed_cache.now(),
    )


# Each device's timed runs: the small and rows models and the big ones twice, the four MoE ones once
DEVICE_STEPS = 2 * len(SMALL) + 4 + 2 * len(LARGE) + 4


def twins(probed: Sequence[Target]) -> dict[int, list[int]]:
    """Which targets compute exactly as earlier ones: index -> those earlier indices. Two `gpusplit
    worker`s on this machine serving its CPU at the same threads with the same llama.cpp build run
    the same kernels on the same cores; measured in full, two such workers differed 15-20 % in
    generation from moment to moment here, as one worker does between two probes: noise, not two
    devices, and measuring both made a probe of the CPU and two workers 163-179 s."""
    earlier: dict[tuple[Any, ...], list[int]] = {}
    out: dict[int, list[int]] = {}
    for index, target in enumerate(probed):
        key = same_cpu_service(target.rpc[0]) if len(target.rpc) == 1 and target.this_cpu else None
        if key is None:
            continue
        if key in earlier:
            out[index] = list(earlier[key])
        earlier.setdefault(key, []).append(index)
    return out


def twin_speed(target: Target, twin: DeviceSpeed, twin_name: str) -> DeviceSpeed:
    """A twin's figures (see `twins`): the other worker's compute and load figures, with its own
    link measured (the round trip and each way's rate, a second or two)."""
    raw: dict[str, Any] = {"twin": twin.identity}
    rtt = _round_trip(target.rpc[0])
    _, down = _link_rates(target.rpc[0], raw)
    note = Reason("probe-twin", f"computes as {twin_name} (this CPU, the same threads and llama.cpp build): its "
                  f"figures are {twin_name}'s, its link measured", {"twin": twin_name})  # fmt: skip
    raw["notes"] = [note.as_dict(), *raw.get("notes", [])]  # first: the one the inventory shows
    return replace(twin, rtt_s=rtt, download_bytes_per_s=down, identity=target.identity, measured_at=speed_cache.now(), probe=raw)


def step_count(inventory: Inventory, no_repack: bool = False) -> int:
    """How many steps run_probe reports (for a progress bar): every probe model on each device and
    the host (the small and big ones twice, the CPU's copied ones once more plain), and one
    tensor-parallel run over two devices or more; a twin of a device probed before it (`twins`)
    runs none; a run that other work disturbed adds its own (on_more) as it is known."""
    probed = targets(inventory, 1, "")  # (reads each local worker's note: once)
    devices = len(inventory.devices) - len(twins(probed))
    local_gpus = sum(1 for d in inventory.devices if not d.endpoint and backend(d.backend).gpu)
    plain = len(replace(probed[0], no_repack=no_repack).copied_classes)
    group = 1 if len(inventory.devices) >= 2 else 0
    return DEVICE_STEPS * (devices + 1) + plain + group + local_gpus


def run_probe(
    inventory: Inventory, threads: int, build: str, folder: Path, on_step: Step | None = None, no_repack: bool = False,
    on_more: Callable[[int], None] | None = None,
) -> Inventory:  # fmt: skip
    """Probe every device of the inventory (and the host), cache the figures, and return the
    inventory with them attached. A device that cannot be measured is left out, and said in the
    inventory's notes; `no_repack` measures with llama.cpp's extra buffer types off."""
    started = time.monotonic()
    probed = [replace(t, no_repack=no_repack) for t in targets(inventory, threads, build)]
    gpu = any(t.local_gpu for t in probed)
    if gpu:
        # The GPU set is there anyway: the CPU is timed on it too. A GPU host's CPU often has a
        # last-level cache as big as the small set's quantized models (the H200 host's read
        # "182 GB/s", and ran Llama-8B's CPU half at two thirds of what that predicted).
        probed = [replace(t, big=True) if t.on_cpu else t for t in probed]
    paths = probe_models(on_step, gpu=gpu)
    measured: dict[str, DeviceSpeed] = {}
    failed: list[Reason] = []
    twin_of = twins(probed)
    for index, target in enumerate(probed):
        # the first twin measured in this probe (one that failed or was disturbed left nothing)
        twin = next((probed[i] for i in twin_of.get(index, []) if probed[i].identity in measured), None)
        try:
            if twin is not None:
                if on_step is not None:
                    on_step(f"{target.device.name}: its link (it computes as {twin.device.name})", False)
                speed = twin_speed(target, measured[twin.identity], twin.device.name)
            else:
                if index in twin_of and on_more is not None:
                    on_more(DEVICE_STEPS)  # no twin of it could be measured: this one is, in full
                speed = probe_device(target, paths, threads, on_step, on_more)
        except ProbeContended as exc:
            failed.append(Reason("probe-contended", exc.message, {"device": exc.device}))  # nothing cached
            continue
        except ProbeError as exc:
            failed.append(Reason("probe", exc.message))  # the other devices are still measured
            continue
        speed_cache.save(folder, target.identity, speed)
        measured[target.identity] = speed
        inventory.notes.extend(_device_note(target.device.name, note) for note in speed.probe.get("notes", [])[:1])
    inventory = attach_speeds(inventory, threads, build, folder)
    group = probe_group(inventory, paths, threads, on_step, no_repack)
    if group is not None:
        speed_cache.save(folder, group.identity, group)
        inventory.group_speed = group
    if failed and not measured:
        texts = [f.text for f in failed]
        hint = (
            IDLE_HINT
            if all(f.code == "probe-contended" for f in failed)
            else "try {p.no_repack}; llama.cpp's log says why ({p.on_log})"
        )
        raise ProbeError(
            "{failures}", hint, failures=texts[0] if len(texts) == 1 else f"no device could be measured: {'; '.join(texts)}"
        )
    inventory.notes.extend(failed)
    inventory.notes.append(Reason("probe", f"probed {len(measured)} devices in {time.monotonic() - started:.0f} s"))
    return inventory


def _device_note(device: str, note: object) -> Reason:
    """A probe's raw note ({"code", "text"}; a bare text in records probed before notes had codes)
    as one of the inventory's, naming its device."""
    if isinstance(note, dict) and note.get("code") in CODES:
        return Reason(note["code"], f"{device}: {note.get('text', '')}", note.get("values") or {})
    return Reason("probe", f"{device}: {note}")


def probe_devices(
    *,
    rpc: Sequence[str] | None = None,
    timeout: float = 3.0,
    threads: int | None = None,
    on_step: Callable[[int, int, str], None] | None = None,
    no_repack: bool = False,
) -> Inventory:
    """Measure what llama.cpp achieves on every device here (the CPU at `threads`, each GPU, each
    `rpc` worker), cache the figures, and return the inventory carrying them. Plans made later
    predict speed from these figures. Needs the engine; tens of seconds. A probe model that fails
    leaves its weight class unmeasured (said in the figures) rather than failing the probe; a crash
    with the CPU's extra buffer types on is measured again without them (`no_repack`: from the start)."""
    require_engine()
    registry, cpu = registry_devices()
    inventory = detect(
        parse_endpoints(list(rpc or [])), rpc_timeout=timeout, registry=registry, engine=engine_summary(registry, cpu)
    )
    total = [step_count(inventory, no_repack)]
    done = [0]
    started = time.monotonic()

    def step(text: str, measured: bool) -> None:
        if on_step is not None:
            on_step(done[0], total[0], text + _time_left(done[0], total[0], time.monotonic() - started))
        done[0] += measured

    def more(count: int) -> None:
        total[0] += count

    return run_probe(inventory, threads or default_threads(), engine_build_id(), speed_folder(), step, no_repack, more)


def _time_left(done: int, total: int, elapsed: float) -> str:
    """' (about 40 s left)' from the pace so far, once a few steps have set it."""
    if done < 3 or total <= done:
        return ""
    left = elapsed / done * (total - done)
    return f" (about {left:.0f} s left)" if left < 120 else f" (about {left / 60:.0f} min left)"
