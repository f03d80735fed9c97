"""Every JSON document gpusplit writes and reads, as types: the one description of its formats.

documents/render.py builds these documents, documents/read.py decodes what comes back into these
types (msgspec: each bad value named by its path, "$.devices[0].free_bytes"), and
documents/schemas.py publishes the JSON Schemas generated from them (docs/json.md shows them).
Objects are closed (an unknown field is an error), ranges are declared on the types (Meta), and
the values whose form is a domain type's own (a Request, EngineParams, a Device and its speed)
are that type: one description, checked the same way when a script builds one.

A document of an older version is migrated (documents/read.py) before it is decoded with these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from msgspec import Meta, Struct

from ..base.checked import INT32_MAX, Bytes, Count, Finite, Index, NonNegative, Rate, Seconds, SignedBytes, Speed
from ..base.reasons import CODES
from ..devices.device import Device
from ..devices.speed import GroupSpeed
from ..engine.params import EngineParams
from ..planning.request import Request


class Closed(Struct, forbid_unknown_fields=True, kw_only=True):
    """An object with these fields and no others."""


Basis = Literal["measured", "catalog", "assumed"]
SplitMode = Literal["none", "layer", "row", "tensor"]
Strategy = Literal["single-gpu", "layer-split", "tensor-split", "expert-offload", "partial-offload", "cpu-only", "as-given"]
if TYPE_CHECKING:
    Code = str
else:
    Code = Literal[tuple(CODES)]  # built from the table at run time, which msgspec checks
Percent = Annotated[float, Meta(ge=-1e9, le=1e9)]
Microseconds = Annotated[float, Meta(ge=0, le=1e12)]
Ratio = Annotated[float, Meta(ge=0, le=1e9)]


class ContentionDoc(Closed):
    """What other work took of the CPUs while a figure was measured (base/contention.py): other
    processes' CPUs kept busy on average, the hypervisor's steal in percent of all CPUs' time, and
    whether that was more than the measurement could spare (`contended`)."""

    contended: bool
    seconds: Seconds
    others_cpus: Annotated[float, Meta(ge=0, le=1e6)]
    steal_pct: Annotated[float, Meta(ge=0, le=1e6)]  # tick rounding can pass 100 over a short measurement
    cpus: Annotated[int, Meta(ge=1, le=INT32_MAX)]
    threads: Count
    mhz: Annotated[float, Meta(gt=0, le=1e7)] | None


class ReasonDoc(Closed):
    """A reason, warning or note: its code (base/reasons.py's CODES) for programs, its text for people."""

    code: Code
    text: str
    values: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------- inspect


class LayerDoc(Closed):
    name: str
    tensors: Count
    params: Count
    bytes: Bytes
    types: dict[str, Count]


class TensorDoc(Closed):
    name: str
    shape: list[Count]
    type: str
    bytes: Bytes
    shard: Count
    data_offset: Bytes


class ModelSummary(Closed):
    path: str
    name: str
    architecture: str
    file_type: str | None
    gguf_version: Count
    shards: Count
    complete: bool
    missing_bytes: Bytes
    header_bytes: Bytes
    file_bytes: Bytes
    params: Bytes
    total_bytes: Bytes
    n_layer: Count
    n_embd: Count
    n_head: list[Count]
    n_head_kv: list[Count]
    head_dim_k: Count
    head_dim_v: Count
    n_ff: list[Count]
    context_length: Count | None
    n_vocab: Count
    n_merges: Count
    n_expert: Count
    n_expert_used: Count
    sliding_window: Count
    swa_layers: list[Count]
    tokenizer_model: str | None
    chat_template_chars: Count | None
    layers: list[LayerDoc]
    tensors: list[TensorDoc] | None = None


class InspectDoc(Closed):
    schema: Literal["gpusplit.inspect/1"]
    model: ModelSummary


# --------------------------------------------------------------------------------------------- devices


class EngineDoc(Closed):
    """What detection found of the engine (llama-cpp-python): its backends and the CPU backend's
    extra buffer types, which decide the host's weight copies."""

    installed: bool
    rpc: bool | None = None
    backends: list[str] | None = None
    cpu_repack: Literal["none", "avx2", "avx512", "arm-dotprod"] | None = None
    cpu_extra_buffers: list[Literal["AMX", "CPU_KLEIDIAI", "CPU_REPACK"]] | None = None
    cpu_features: list[str] | None = None


class NvmlSummary(Closed):
    available: bool
    reason: str | None
    driver_version: str | None
    cuda_driver_version: str | None
    gpus: Count


class DevicesDoc(Closed):
    """The devices llama.cpp would use, in its order, and the host row. A file written by hand for
    `--devices-file` may give the devices alone (the host is then this machine's)."""

    schema: Literal["gpusplit.devices/2"]
    devices: Annotated[list[Device], Meta(max_length=64)]
    host: Device | None = None
    best_gpu: Index | None = None
    engine: EngineDoc | None = None
    nvml: NvmlSummary | None = None
    tensor_group: GroupSpeed | None = None
    notes: list[ReasonDoc] = []


class CatalogCard(Closed):
    name: str
    vendor: str
    backend: str
    memory_bytes: Bytes
    bandwidth_bytes_per_s: Rate
    memory_type: str
    interconnect: str
    link_bytes_per_s: Rate | None
    pcie: str
    aliases: list[str]
    source: str
    unified_memory: bool
    logical_devices: Count
    notes: str


class CatalogDoc(Closed):
    schema: Literal["gpusplit.catalog/1"]
    cards: list[CatalogCard]


# --------------------------------------------------------------------------------------------- plan


class PlanModel(Closed):
    path: str
    name: str
    architecture: str
    file_type: str | None
    params: Bytes
    total_bytes: Bytes
    n_layer: Count
    n_expert: Count
    context_length: Count | None
    complete: bool
    missing_bytes: Bytes


class PlanSettings(Closed):
    n_ctx: Count
    n_batch: Count
    n_ubatch: Count
    n_parallel: Count
    type_k: str
    type_v: str
    flash_attn: bool
    swa_full: bool
    no_repack: bool = False


class PlanHost(Closed):
    """A device's (or the host's) planned bytes by part, against its free memory."""

    name: str
    index: Index | None
    kind: str
    total_bytes: Bytes
    free_bytes: Bytes
    reserve_bytes: Bytes
    layers: str
    n_layers: Count
    weights_bytes: Bytes
    kv_bytes: Bytes
    compute_bytes: Bytes
    output_bytes: Bytes
    runtime_bytes: Bytes
    planned_bytes: Bytes
    headroom_bytes: SignedBytes
    # the host's weights per llama.cpp buffer (CPU_Mapped, CPU_REPACK, AMX), as its log names them,
    # and the CPU_Mapped buffer it would be with --no-repack
    weight_buffers: dict[str, Bytes] | None = None
    no_repack_mapped_bytes: Bytes | None = None

    def memory_parts(self) -> dict[str, int]:
        """Its planned bytes by part, as the memory bars draw them (render.memory_parts's)."""
        return {
            "weights": self.weights_bytes,
            "KV": self.kv_bytes,
            "compute": self.compute_bytes + self.output_bytes,
            "runtime": self.runtime_bytes,
        }


class PlanDevice(PlanHost, kw_only=True):
    backend: str
    description: str
    bandwidth_bytes_per_s: Rate | None
    endpoint: str | None
    pci_bus_id: str | None


class DeviceParts(Closed):
    layers: Microseconds
    rows: Microseconds
    weights: Microseconds
    output: Microseconds
    kv: Microseconds


class PredictedParts(Closed):
    """Where a generated token's predicted microseconds go: fixed costs, links, synchronisation,
    and per device."""

    fixed: Microseconds
    links: Microseconds
    sync: Microseconds
    devices: dict[str, DeviceParts]


class LoadDoc(Closed):
    bytes: Bytes
    seconds: Seconds
    cached_seconds: Seconds | None = None


SpeedRange = Annotated[list[Speed], Meta(min_length=2, max_length=2)]


class Predicted(Closed):
    tg_tokens_per_s: Speed | None
    pp_tokens_per_s: Speed | None
    tg_range: SpeedRange | None
    pp_range: SpeedRange | None
    basis: Basis
    batch_fixed_s: Seconds
    batch_token_s: Seconds
    bytes_per_token: Bytes
    limited_by: str
    assumptions: list[ReasonDoc]
    parts: PredictedParts | None = None
    sample_s: Seconds | None = None
    load_s: Seconds | None = None
    load: dict[str, LoadDoc] | None = None


class DownloadDoc(Closed):
    """A file to download before llama_cpp.Llama(model_path=...) loads it (a URL's, an Ollama blob)."""

    url: str
    path: str


class PythonKwargs(Closed, kw_only=True, omit_defaults=True):
    """llama_cpp.Llama(...)'s keyword arguments for the same load (model_path, or repo_id and
    filename for Llama.from_pretrained with a hf:// name), in the order `plan` prints them."""

    model_path: str | None = None
    repo_id: str | None = None
    filename: str | None = None
    n_gpu_layers: Count
    split_mode: Annotated[int, Meta(ge=0, le=3)]
    main_gpu: Index
    n_ctx: Count
    n_batch: Count
    n_ubatch: Count
    flash_attn: bool
    swa_full: bool
    offload_kqv: bool
    use_mmap: bool
    seed: Count
    tensor_split: list[NonNegative] | None = None
    type_k: Count | None = None
    type_v: Count | None = None
    n_threads: Count | None = None
    n_threads_batch: Count | None = None
    lora_path: str | None = None


class Alternative(Closed):
    strategy: Strategy
    split_mode: SplitMode
    n_gpu_layers: Annotated[int, Meta(ge=-1)]
    tensor_split: list[NonNegative]
    n_cpu_moe: Count
    fits: bool
    all_on_gpu: bool
    predicted_tg_tps: Speed | None
    predicted_pp_tps: Speed | None
    predicted_basis: Basis
    reasons: list[ReasonDoc]


class DraftRow(Closed):
    name: str
    weights_bytes: Bytes
    kv_bytes: Bytes
    compute_bytes: Bytes
    planned_bytes: Bytes


class DraftDoc(Closed):
    path: str
    name: str
    n_gpu_layers: Count
    devices: list[DraftRow]
    host: DraftRow


class WorkerCommand(Closed):
    endpoint: str
    gpusplit: list[str]
    llama_cpp: list[str]


class ServerDoc(Closed):
    """One llama-server serving users (planning/serving.py's Server)."""

    devices: Annotated[list[str], Meta(max_length=64)]
    slots: Count
    users: Count
    tokens_per_s: Speed | None  # all its users' generation together
    per_user_tokens_per_s: Speed | None
    first_token_s: Annotated[float, Meta(ge=0, le=1e9)] | None  # a newcomer's prompt beside the others
    command: list[str]  # llama-server's flags


class ServingDoc(Closed):
    """Several users (plan --users N): the plan's one server against replicas (one per device)."""

    users: Count
    depth: Annotated[int, Meta(ge=0, le=INT32_MAX)]
    prompt_tokens: Count
    server: ServerDoc
    replicas: Annotated[list[ServerDoc], Meta(max_length=64)]
    replicas_tokens_per_s: Speed | None
    winner: Literal["one-server", "replicas"]
    ratio: Annotated[float, Meta(ge=1, le=1e9)] | None


class PlanDoc(Closed):
    schema: Literal["gpusplit.plan/2"]
    model: PlanModel
    settings: PlanSettings
    strategy: Strategy
    split_mode: SplitMode
    tensor_split: list[NonNegative]
    n_gpu_layers: Count
    n_cpu_moe: Count
    main_gpu: Index
    fits: bool
    all_on_gpu: bool
    best_ctx: Count
    score: Annotated[float, Meta(ge=0, le=1)]
    compute_source: Literal["estimate", "measured"]
    pipeline_parallel: bool
    predicted: Predicted
    devices: Annotated[list[PlanDevice], Meta(max_length=64)]
    host: PlanHost
    llama_args: list[str]
    llama_cpp_python: PythonKwargs
    engine_params: EngineParams
    reasons: list[ReasonDoc]
    python_downloads: list[DownloadDoc]
    warnings: list[ReasonDoc]
    request: Request
    alternatives: list[Alternative]
    draft: DraftDoc | None = None
    workers: list[WorkerCommand] | None = None
    serving: ServingDoc | None = None  # plan --users N


# --------------------------------------------------------------------------------------------- run


class Components(Closed):
    weights: Bytes
    kv: Bytes
    compute: Bytes
    output: Bytes


class RunPredicted(Closed):
    gen_tps: Speed | None
    prompt_tps: Speed | None
    gen_error_pct: Percent | None
    prompt_error_pct: Percent | None
    basis: Basis
    parts: PredictedParts | None = None  # None where nothing was predicted
    load_s: Seconds | None = None
    load_error_pct: Percent | None = None


class Timings(Closed):
    load_ms: NonNegative
    prompt_tokens: Count
    prompt_tps: Speed | None
    gen_tokens: Count
    gen_tps: Speed | None
    ttft_ms: NonNegative | None
    # the 95 % interval of the generation's tokens/s, from each generated token's decode time (those
    # beyond Tukey's fences set aside: gen_outliers of them); None with fewer than two tokens timed
    gen_interval_tps: SpeedRange | None
    gen_outliers: Count


class RunDevice(Closed):
    name: str
    index: Index | None
    planned: Components
    actual: Components
    planned_bytes: Bytes
    planned_runtime_bytes: Bytes
    actual_bytes: Bytes
    diff_bytes: SignedBytes
    actual_source: Literal["device", "group"]
    nvml_used_delta_bytes: SignedBytes | None


class HostWeights(Closed):
    planned: dict[str, Bytes]
    actual: dict[str, Bytes]


class RecoveryDoc(Closed):
    """llama.cpp crashed with the CPU's extra buffer types holding weights; the work ran again
    without them."""

    crash: str
    extra_buffers: list[str]
    rerun: str
    message: str


class RunDoc(Closed):
    schema: Literal["gpusplit.run/3"]
    plan: PlanDoc
    split_mode: SplitMode
    text: str
    predicted: RunPredicted
    timings: Timings
    devices: list[RunDevice]
    host_weights: HostWeights
    recovery: RecoveryDoc | None
    contention: ContentionDoc | None  # while the prompt and generation ran (None: not watched)


# --------------------------------------------------------------------------------------------- bench


class BenchModel(Closed):
    name: str
    path: str
    architecture: str
    file_type: str | None
    total_bytes: Bytes
    params: Bytes


class BenchConfig(Closed):
    mode: Literal["auto", "none", "layer", "row", "tensor"]
    split: str
    ngl: Annotated[int, Meta(ge=-1, le=2**31 - 1)] | None
    ctx: Annotated[int, Meta(ge=1, le=2**31 - 1)] | None
    kv: str
    fa: bool


class BenchDevice(Closed):
    name: str
    planned_bytes: Bytes
    actual_bytes: Bytes | None
    actual_source: Literal["device", "group"]


class BenchBuild(Closed):
    llama_cpp_python: str | None = None
    system_info: str | None = None


class BenchRecord(Closed):
    schema: Literal["gpusplit.bench/3"]
    status: Literal["ok", "failed"]
    model: BenchModel
    config: BenchConfig
    config_key: str
    split_mode: SplitMode | None
    n_gpu_layers: Count | None
    backend: str
    test: str
    test_kind: Literal["pp", "tg"]
    n_tokens: Count
    depth: Count
    repetitions: Count
    samples_ts: list[Speed]
    avg_ts: Speed | None  # llama-bench's: the mean and standard deviation of every sample
    stddev_ts: Annotated[float, Meta(ge=0, le=1e12)] | None
    # base/stats.py's: the mean with outliers set aside (those in outliers_ts), its 95 % interval
    # (None for one sample; its low end at least 0), None for a failed row
    mean_ts: Speed | None
    interval_ts: SpeedRange | None
    outliers_ts: list[Speed]
    contention: ContentionDoc | None  # what other work took while the test was timed (None: not watched)
    predicted_ts: Speed | None
    predicted_basis: Basis | None
    prediction_error_pct: Percent | None
    roofline_share: Ratio | None
    devices: list[BenchDevice]
    error: str | None
    log_tail: list[str]
    build: BenchBuild
    inventory: list[Device]
    gpusplit_version: str
    timestamp: str
    engine_params: EngineParams | None
    no_repack: bool = False
    recovery: RecoveryDoc | None = None
    predicted_parts: PredictedParts | None = None
    # generation of several sequences decoded together (bench --parallel): how many; samples_ts and
    # the means are all of theirs together, per_user_ts each one's share
    parallel: Annotated[int, Meta(ge=1, le=256)] = 1
    per_user_ts: Speed | None = None


class CompareRow(Closed):
    config: str
    test: str
    a_ts: Speed  # the mean of a's repetitions, outliers set aside
    b_ts: Speed
    ratio: Ratio | None
    change_pct: Percent
    change_low_pct: Percent | None  # the change's 95 % interval (None: a side of one run of one repetition)
    change_high_pct: Percent | None
    verdict: Literal["faster", "slower", "same"]  # "same": the intervals overlap
    a_runs: Count  # records of the row in the file; with 2 or more the interval is over the runs' means
    b_runs: Count
    a_outliers: Count  # repetitions set aside inside the runs
    b_outliers: Count
    a_runs_aside: Count  # runs set aside (Tukey's fences over 4 runs or more)
    b_runs_aside: Count
    contended: bool  # either side was measured while other work took CPU time it needed


class CompareDoc(Closed):
    schema: Literal["gpusplit.bench-compare/4"]
    a: str
    b: str
    rows: list[CompareRow]


# --------------------------------------------------------------------------------------------- tune


class TrialDoc(Closed):
    """One tune trial: its key and request, what was predicted and measured."""

    key: str
    request: Request
    strategy: str
    fits: bool
    predicted_tg: Speed | None
    predicted_pp: Speed | None
    measured_tg: Speed | None
    measured_pp: Speed | None
    score: Speed | None
    status: Literal["ok", "skipped", "failed"]
    error: str | None
    seconds: Seconds
    min_headroom_bytes: SignedBytes | None
    # the 95 % intervals of the measured figures' repetitions (None: one repetition, or not measured)
    measured_tg_interval: SpeedRange | None
    measured_pp_interval: SpeedRange | None
    contention: ContentionDoc | None  # what other work took while the trial was timed (None: not watched)
    recovery: RecoveryDoc | None = None
    samples: list[Speed] = []
    round: Annotated[int, Meta(ge=0, le=1000)] = 0


class TrialRecord(TrialDoc, kw_only=True):
    """A line of a --trials file."""

    schema: Literal["gpusplit.trial/3"]


class TuneDoc(Closed):
    schema: Literal["gpusplit.tune/3"]
    objective: Literal["tg", "pp", "mixed"]
    budget_s: Seconds
    elapsed_s: Seconds
    measured: bool
    stopped: Literal["budget", "done", "interrupted"]
    notes: list[ReasonDoc]
    trials: list[TrialDoc]
    best: TrialDoc | None
    plan: PlanDoc
    runner_up: str | None = None
    margin_pct: Finite | None = None
    spread_pct: Finite | None = None
    chosen: str | None = None


# every document by its schema name (the current version of each)
DOCUMENTS: dict[str, type[Struct]] = {
    "gpusplit.inspect/1": InspectDoc,
    "gpusplit.devices/2": DevicesDoc,
    "gpusplit.plan/2": PlanDoc,
    "gpusplit.run/3": RunDoc,
    "gpusplit.bench/3": BenchRecord,
    "gpusplit.catalog/1": CatalogDoc,
    "gpusplit.bench-compare/4": CompareDoc,
    "gpusplit.tune/3": TuneDoc,
    "gpusplit.trial/3": TrialRecord,
}
