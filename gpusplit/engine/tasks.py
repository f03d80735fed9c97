"""Engine tasks, run inside the child process (engine/child.py): load, dry run, generate.

llama.cpp's low-level API is used rather than `llama_cpp.Llama`, so that nothing compiles or
renders the model's chat template and the parameters are exactly the ones gpusplit planned.
"""

from __future__ import annotations

import codecs
import ctypes
import dataclasses
import os
import random
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ..base import contention
from ..base.search import largest_fitting
from . import EngineError, EngineInputError
from .logparse import extra_weight_buffers, parse_buffers, spread_group
from .params import LLAMA_MAX_DEVICES, SPLIT_MODES, EngineParams, ggml_type_id
from .registry import add_rpc_server, cpu_backend_info, cpu_buffer_type, list_devices

# where llama.cpp says why it refused (its log: the CLI's --verbose, a script's on_log)
LOG_HINT = "llama.cpp's log says why: {p.on_log}"

Emit = Callable[[dict[str, Any]], None]

# The child's own copy of llama.cpp's log, as whole lines (a task that reads it clears it first).
# It lives here, not in child.py: the child runs as __main__, a second copy of that module.
LOG_LINES: list[str] = []
_partial = bytearray()


def keep_log(text: bytes) -> None:
    _partial.extend(text)
    while b"\n" in _partial:
        line, _, rest = bytes(_partial).partition(b"\n")
        if len(LOG_LINES) < 200_000:  # bounded: a long run must not grow without end
            LOG_LINES.append(line.decode("utf-8", "replace"))
        _partial[:] = rest


class _BuftOverride(ctypes.Structure):
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def expert_overrides(n_cpu_moe: int) -> list[bytes]:
    """llama.cpp's --n-cpu-moe patterns (common/arg.cpp): the expert tensors of blocks 0..N-1."""
    return [f"blk\\.{il}\\.ffn_(up|down|gate|gate_up)_(ch|)exps".encode() for il in range(n_cpu_moe)]


class Loaded:
    """A model and context loaded from EngineParams; frees both on close."""

    def __init__(self, params: EngineParams, dry_run: bool = False, on_progress: Callable[[float], None] | None = None) -> None:
        import llama_cpp  # heavy: only the tasks that load import it

        self.lib = llama_cpp
        for endpoint in params.rpc:
            add_rpc_server(endpoint)
        llama_cpp.llama_backend_init()
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = params.n_gpu_layers
        mp.split_mode = SPLIT_MODES[params.split_mode]
        mp.main_gpu = params.main_gpu
        self._split = (ctypes.c_float * LLAMA_MAX_DEVICES)(*params.tensor_split)
        if params.tensor_split:
            mp.tensor_split = self._split
        # A dry run simulates allocation without reading tensor data; mmap would assert there.
        mp.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE if dry_run or not params.use_mmap else llama_cpp.LLAMA_LOAD_MODE_MMAP
        mp.no_alloc = dry_run
        mp.use_extra_bufts = not params.no_repack
        if params.n_cpu_moe:
            patterns = expert_overrides(params.n_cpu_moe)
            cpu = cpu_buffer_type()
            # the list ends with an empty entry (pattern NULL), as llama.cpp reads it
            self._overrides = (_BuftOverride * (len(patterns) + 1))(*[_BuftOverride(p, cpu) for p in patterns], _BuftOverride())
            mp.tensor_buft_overrides = ctypes.cast(self._overrides, ctypes.c_void_p)
        if on_progress is not None:

            @llama_cpp.llama_progress_callback
            def progress(value: float, _user: Any) -> bool:
                on_progress(float(value))
                return True

            self._progress = progress  # keep the callback alive while llama.cpp holds it
            mp.progress_callback = progress
        started = time.perf_counter()
        self.model = llama_cpp.llama_model_load_from_file(params.model_path.encode(), mp)
        if not self.model:
            raise EngineError("llama.cpp could not load {path}", LOG_HINT, path=params.model_path)
        self.params = params
        self._adapters: list[Any] = []
        try:
            # LoRA adapters load into the buffers of the layers they adapt (not in a dry run: they
            # read their tensor data at once); llama.cpp frees them with the model.
            for path in () if dry_run else params.lora:
                adapter = llama_cpp.llama_adapter_lora_init(self.model, path.encode())
                if not adapter:
                    raise EngineError("llama.cpp could not load the LoRA adapter {path}", LOG_HINT, parameter="lora", path=path)
                self._adapters.append(adapter)
            self.ctx = self.new_context(params.n_ctx)
        except EngineError:
            llama_cpp.llama_model_free(self.model)
            raise
        self.load_ms = (time.perf_counter() - started) * 1000

    def new_context(self, n_ctx: int) -> Any:
        """A context with the plan's settings at n_ctx (on a dry-run model: only sized, in ~ms)."""
        llama_cpp = self.lib
        params = self.params
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = params.n_batch
        cp.n_ubatch = params.n_ubatch
        cp.n_seq_max = params.n_seq_max
        cp.type_k = ggml_type_id(params.type_k)
        cp.type_v = ggml_type_id(params.type_v)
        enabled, disabled = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED, llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.flash_attn_type = enabled if params.flash_attn else disabled
        cp.swa_full = params.swa_full
        cp.offload_kqv = params.offload_kqv
        cp.no_perf = False  # keep llama.cpp's timings (llama_perf_context)
        if params.n_threads:
            cp.n_threads = cp.n_threads_batch = params.n_threads
        ctx = llama_cpp.llama_init_from_model(self.model, cp)
        if not ctx:
            raise EngineError("llama.cpp could not create the context", LOG_HINT)
        if self._adapters:
            n = len(self._adapters)
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*self._adapters)
            llama_cpp.llama_set_adapters_lora(ctx, adapters, n, (ctypes.c_float * n)(*([1.0] * n)))
        return ctx

    def close(self) -> None:
        self.lib.llama_free(self.ctx)
        self.lib.llama_model_free(self.model)


# Tests only: make the child crash as llama.cpp's AMX kernels do on an AMX host (a SIGSEGV at the
# first decode, after every buffer is logged), on any CPU. "extra-buffers": only while one of the
# CPU backend's extra buffer types holds weights; "always": whatever the load.
FAULT_ENV = "GPUSPLIT_TEST_FAULT"


def injected_fault(loaded: Loaded) -> None:
    """Crash here if a test asked for it (see FAULT_ENV); nothing otherwise."""
    fault = os.environ.get(FAULT_ENV)
    if not fault:
        return
    if fault == "always" or (fault == "extra-buffers" and not loaded.params.no_repack and extra_weight_buffers(LOG_LINES)):
        os.kill(os.getpid(), signal.SIGSEGV)


def task_registry(request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """ggml's device list with live memory. In a child because asking a CUDA device for its memory
    opens a context on it (about 530 MiB on an H200) that the asking process keeps until it ends:
    in the CLI's own process that would hold memory away from the run it then starts."""
    return {"devices": [asdict(d) for d in list_devices()], "cpu": asdict(cpu_backend_info())}


def task_dryrun(request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Simulate the load (no_alloc): llama.cpp logs the compute buffers it would reserve."""
    loaded = Loaded(EngineParams.from_dict(request["params"]), dry_run=True)
    loaded.close()
    return {"ok": True}


def task_measure(request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """`plan --measure`: llama.cpp's dry run of each load, compute buffers per device.

    Each load is `{"params", "contexts", "budgets"?, "group"?}`. Without budgets every context is
    measured; with them (one per context: device name -> bytes left for compute) a binary search
    finds the largest context whose compute fits every budget. A dry-run model sizes a context in
    milliseconds, so the search costs little more than the model load.
    """

    rpc_names = request.get("rpc_names") or {}
    results = []
    for load in request["loads"]:
        params = EngineParams.from_dict(load["params"])
        contexts = [int(n) for n in load["contexts"]]
        budgets = load.get("budgets")
        group = load.get("group") or []
        loaded = Loaded(params.with_(n_ctx=contexts[0]), dry_run=True)
        loaded.lib.llama_free(loaded.ctx)
        measured: dict[str, dict[str, int]] = {}

        def compute_at(n_ctx: int, loaded: Loaded = loaded, measured: dict = measured, group: list = group) -> dict[str, int]:
            key = str(n_ctx)
            if key not in measured:
                del LOG_LINES[:]
                loaded.lib.llama_free(loaded.new_context(n_ctx))
                by_device = spread_group(parse_buffers(LOG_LINES, rpc_names).by_device, group)
                measured[key] = {name: parts.get("compute", 0) for name, parts in by_device.items()}
            return measured[key]

        best = None
        if budgets is None:
            for n_ctx in contexts:
                compute_at(n_ctx)
        else:

            def fits(i: int, compute_at: Any = compute_at, budgets: list = budgets, contexts: list = contexts) -> bool:
                compute = compute_at(contexts[i])
                return all(compute.get(name, 0) <= left for name, left in budgets[i].items())

            best = largest_fitting(fits, 0, len(contexts) - 1)
        loaded.lib.llama_model_free(loaded.model)
        results.append({"measured": measured, "best_index": best})
    return {"loads": results}


def task_load(request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Really load (allocating every buffer), then free: the log holds the actual sizes."""
    loaded = Loaded(EngineParams.from_dict(request["params"]))
    result = {"load_ms": loaded.load_ms}
    loaded.close()
    return result


def _tokenize(lib: Any, vocab: Any, text: str) -> list[int]:
    data = text.encode("utf-8")
    n_max = len(data) + 16
    tokens = (lib.llama_token * n_max)()
    n = lib.llama_tokenize(vocab, data, len(data), tokens, n_max, True, False)
    if n < 0:
        tokens = (lib.llama_token * -n)()
        n = lib.llama_tokenize(vocab, data, len(data), tokens, -n, True, False)
    return list(tokens[:n])


def _sampler(lib: Any, temperature: float, seed: int) -> Any:
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    if temperature <= 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
    else:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(temperature))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
    return chain


# Generation warms up for this long (bench: or the test's length, if shorter; run: or 64 tokens):
# the first tens of milliseconds of single-token decodes can run far slower than the rest (threads
# waking, caches filling), as llama-bench's own warm-up run allows for.
WARM_UP_S = 0.05


def _warm_up(lib: Any, ctx: Any, tokens: list[int]) -> None:
    """Single-token decodes for WARM_UP_S (64 at most), then one of the prompt's first 32 tokens
    (a prompt that short then finds its graph the last one built: the other way round the demo's
    13-token prompt read 10,000-14,000 t/s, not 14,000-16,000), then a clean slate, as llama.cpp's
    tools warm up before they time anything: on a GPU the first decodes load kernels (CUDA loads
    them lazily) and build graphs, which made a 17-token prompt on an H200 read 100 tokens/s
    instead of 2,000."""
    chunk = tokens[: min(len(tokens), 32)]
    one = (lib.llama_token * 1)(chunk[0])
    cells = lib.llama_n_ctx_seq(ctx)  # the sequence's own cells (with --parallel, a share of n_ctx)
    started = time.perf_counter()
    for _ in range(max(1, min(64, cells - len(chunk) - 1))):
        if lib.llama_decode(ctx, lib.llama_batch_get_one(one, 1)) != 0:
            raise EngineError("llama.cpp failed to decode the warm-up batch")
        lib.llama_synchronize(ctx)
        if time.perf_counter() - started >= WARM_UP_S:
            break
    arr = (lib.llama_token * len(chunk))(*chunk)
    if lib.llama_decode(ctx, lib.llama_batch_get_one(arr, len(chunk))) != 0:
        raise EngineError("llama.cpp failed to decode the warm-up batch")
    lib.llama_synchronize(ctx)
    lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
    lib.llama_perf_context_reset(ctx)


def task_generate(request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Load with the plan's parameters, generate, stream pieces as events, report timings."""
    params = EngineParams.from_dict(request["params"])
    n_predict = int(request.get("n_predict", 64))
    emit({"event": "progress", "value": 0.0})
    loaded = Loaded(params, on_progress=lambda v: emit({"event": "progress", "value": v}))
    emit({"event": "loaded", "load_ms": loaded.load_ms})
    injected_fault(loaded)
    lib = loaded.lib
    vocab = lib.llama_model_get_vocab(loaded.model)
    tokens = _prompt_tokens(lib, vocab, request.get("prompt", ""), n_predict, params.n_ctx)
    sampler = _sampler(lib, float(request.get("temperature", 0.0)), int(params.seed))
    # On the CPU too, as llama.cpp's own tools warm up whatever the device: a cold first prompt
    # measures the start-up, not the model.
    _warm_up(lib, loaded.ctx, tokens)
    meter = _meter(params)
    before = meter.sample()
    started = time.perf_counter()
    _decode_batches(lib, loaded.ctx, tokens, params.n_batch, "llama.cpp failed to decode the prompt")
    pieces = _Pieces(emit, stream=bool(request.get("stream", True)))
    generated, ttft_ms, token_ms = _sample_tokens(lib, loaded.ctx, vocab, sampler, n_predict, pieces, started)
    pieces.finish()
    wall_ms = (time.perf_counter() - started) * 1000
    seen = meter.since(before)
    perf = lib.llama_perf_context(loaded.ctx)
    lib.llama_sampler_free(sampler)
    # The parent reads NVML now, while the model is still held: CUDA's memory pool, cuBLAS's
    # workspace and CUDA graphs are allocated during the first decodes, after "loaded".
    emit({"event": "generated"})
    time.sleep(float(request.get("hold_s", 0.0)))
    result = {
        "text": pieces.text(),
        "prompt_tokens": len(tokens),
        "gen_tokens": generated,
        "load_ms": loaded.load_ms,
        "ttft_ms": ttft_ms,
        "wall_ms": wall_ms,
        "token_ms": token_ms,
        "contention": replace_mhz(seen).as_dict() if seen is not None else None,
        "perf": {
            "t_load_ms": perf.t_load_ms,
            "t_p_eval_ms": perf.t_p_eval_ms,
            "t_eval_ms": perf.t_eval_ms,
            "n_p_eval": perf.n_p_eval,
            "n_eval": perf.n_eval,
        },
    }
    loaded.close()
    return result


def _prompt_tokens(lib: Any, vocab: Any, prompt: str, n_predict: int, n_ctx: int) -> list[int]:
    """The prompt's tokens, refused when there are none or they leave no room for n_predict."""
    tokens = _tokenize(lib, vocab, prompt)
    if not tokens:
        raise EngineInputError("the prompt tokenized to nothing", parameter="prompt")
    if len(tokens) + n_predict > n_ctx:
        raise EngineInputError(
            "the prompt ({tokens} tokens) plus {p.n_predict} {n_predict} is more than the context ({n_ctx})",
            "raise {p.n_ctx} or lower {p.n_predict}",
            parameter="n_predict",
            tokens=len(tokens),
            n_predict=n_predict,
            n_ctx=n_ctx,
        )
    return tokens


def _decode_batches(lib: Any, ctx: Any, tokens: list[int], n_batch: int, failure: str) -> None:
    """Decode tokens in batches of n_batch (EngineError `failure` if llama.cpp refuses one)."""
    for start in range(0, len(tokens), n_batch):
        chunk = tokens[start : start + n_batch]
        arr = (lib.llama_token * len(chunk))(*chunk)
        if lib.llama_decode(ctx, lib.llama_batch_get_one(arr, len(chunk))) != 0:
            raise EngineError(failure)


class _Pieces:
    """The generated text, streamed as token events at most every 50 ms: each event wakes the
    parent, and on a machine whose cores all run llama.cpp's threads those wake-ups cost speed."""

    def __init__(self, emit: Emit, stream: bool) -> None:
        self.emit = emit
        self.stream = stream
        self.pieces: list[str] = []
        self.pending: list[str] = []
        self.last_emit = time.perf_counter()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, data: bytes) -> None:
        text = self.decoder.decode(data)
        if not text:
            return
        self.pieces.append(text)
        if self.stream:
            self.pending.append(text)
            now = time.perf_counter()
            if now - self.last_emit >= 0.05:
                self.emit({"event": "token", "text": "".join(self.pending)})
                self.pending.clear()
                self.last_emit = now

    def finish(self) -> None:
        tail = self.decoder.decode(b"", final=True)
        if tail:
            self.pieces.append(tail)
            self.pending.append(tail)
        if self.stream and self.pending:
            self.emit({"event": "token", "text": "".join(self.pending)})

    def text(self) -> str:
        return "".join(self.pieces)


def _sample_tokens(
    lib: Any, ctx: Any, vocab: Any, sampler: Any, n_predict: int, pieces: _Pieces, started: float
) -> tuple[int, float | None, list[float]]:
    """Sample and decode up to n_predict tokens (to an end-of-generation token): how many, the
    milliseconds from `started` to the first, and each generated token's decode in milliseconds
    (what llama.cpp's own eval time counts: the generation's noise, token by token)."""
    buf = ctypes.create_string_buffer(256)
    one = (lib.llama_token * 1)()
    generated, ttft_ms = 0, None
    token_ms: list[float] = []
    for _ in range(n_predict):
        token = lib.llama_sampler_sample(sampler, ctx, -1)
        if ttft_ms is None:
            ttft_ms = (time.perf_counter() - started) * 1000
        if lib.llama_vocab_is_eog(vocab, token):
            break
        n = lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
        pieces.add(buf.raw[: max(n, 0)])
        generated += 1
        one[0] = token
        decoding = time.perf_counter()
        if lib.llama_decode(ctx, lib.llama_batch_get_one(one, 1)) != 0:
            raise EngineError("llama.cpp failed to decode a generated token")
        # the next sample would wait for it anyway: waiting here puts a GPU's work in its token's time
        lib.llama_synchronize(ctx)
        token_ms.append(round((time.perf_counter() - decoding) * 1000, 4))
    return generated, ttft_ms, token_ms


def task_bench(request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """llama-bench's tests on one loaded configuration: pp (a batch of random tokens) and tg
    (one token at a time, after `depth` tokens of context), each repeated after one warm-up: the
    whole batch for pp (as llama-bench), the test's tokens for tg but for at most WARM_UP_S
    (llama-bench's one token left the first repetition at half speed on a 2-vCPU VM; the whole test
    cost the probe a sixth of its generation time)."""
    import llama_cpp  # heavy: the child imports it for the tasks that load

    params = EngineParams.from_dict(request["params"])
    reps = int(request.get("repetitions", 5))
    loaded = Loaded(params)
    injected_fault(loaded)
    bench = _BenchRuns(loaded, params.n_batch)
    # {"test": "tg", "below_ts": X}: the later tests are skipped when that test's median is below X
    # (tune: no prompt test for a configuration that already generates clearly slower)
    stop_if = request.get("stop_if") or {}
    meter = _meter(params)
    results = []
    for test in request["tests"]:  # [{"name": "pp512", "kind": "pp", "n": 512, "depth": 0}, ...]
        bench.one_run(test, None if test["kind"] == "pp" else WARM_UP_S)  # warm-up
        samples: list[float] = []
        seen: list[contention.Contention] = []
        for rep in range(int(test.get("repetitions") or reps)):
            before = meter.sample()
            samples.append(bench.one_run(test))
            disturbance = meter.since(before)
            if disturbance is not None:
                seen.append(disturbance)
            emit({"event": "rep", "test": test["name"], "rep": rep + 1})
        result: dict[str, Any] = {"test": test["name"], "samples_ts": samples}
        # the whole test's, unless one repetition was disturbed: then that one's (a hog of three
        # seconds in a ten-second test averaged to 0.23 CPUs, under the rule's quarter)
        disturbed = [c for c in seen if c.contended]
        measured = max(disturbed, key=lambda c: c.others_cpus) if disturbed else contention.total(seen)
        if measured is not None:
            result["contention"] = replace_mhz(measured).as_dict()
        results.append(result)
        if test["name"] == stop_if.get("test") and sorted(samples)[len(samples) // 2] < float(stop_if["below_ts"]):
            break
    info = {
        "llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }
    out = {"results": results, "load_ms": loaded.load_ms, "build": info}
    if request.get("sample_reps"):
        out["sample_s"] = _sample_seconds(loaded.lib, loaded, int(request["sample_reps"]))
    loaded.close()
    return out


def replace_mhz(measured: contention.Contention) -> contention.Contention:
    """The measurement's contention with the CPU's clock read now (once per test: it costs a read
    of /proc/cpuinfo)."""
    return dataclasses.replace(measured, mhz=contention.cpu_mhz())


def _meter(params: EngineParams) -> contention.Meter:
    """Contention around each timed run: this child, its parent, and the RPC workers on this
    machine are the measurement; any other process's CPU time is a neighbour's."""
    workers = contention.worker_pids()
    cpus = contention.cpu_count()  # the CPUs this child may run on, not the machine's
    # local workers keep their own threads busy: no CPU is spare then
    threads = cpus if workers else min(max(int(params.n_threads or cpus), 1), cpus)
    return contention.Meter({os.getppid(), *workers}, threads)


class _BenchRuns:
    """Timed runs of llama-bench's tests on a loaded model, random tokens from a fixed seed."""

    def __init__(self, loaded: Loaded, n_batch: int) -> None:
        self.loaded = loaded
        self.lib = loaded.lib
        self.n_batch = n_batch
        self.n_vocab = self.lib.llama_vocab_n_tokens(self.lib.llama_model_get_vocab(loaded.model))
        self.memory = self.lib.llama_get_memory(loaded.ctx)
        self.rng = random.Random(0)
        self.filled_depth: int | tuple[str, int, int] = 0  # what the cache holds now, ahead of the timed tokens

    def decode(self, tokens: list[int]) -> None:
        failure = "llama.cpp failed to decode a batch (context too small for the test?)"
        _decode_batches(self.lib, self.loaded.ctx, tokens, self.n_batch, failure)

    def one_run(self, test: dict[str, Any], limit_s: float | None = None) -> float:
        """One run of the test: its tokens per second (with "parallel" N > 1 sequences, all of
        them together: llama-batched-bench's S_TG)."""
        if int(test.get("parallel") or 1) > 1:
            return self._parallel_run(test, int(test["parallel"]), limit_s)
        lib, ctx = self.lib, self.loaded.ctx
        depth = int(test.get("depth") or 0)
        self._context(depth, depth, lambda: self.decode([self.rng.randrange(self.n_vocab) for _ in range(depth)]))
        tokens = [self.rng.randrange(self.n_vocab) for _ in range(int(test["n"]))]
        started = time.perf_counter()
        if test["kind"] == "pp":
            self.decode(tokens)
        else:
            for token in tokens:
                self.decode([token])
                # Each token waits for the one before, as in generation (its input is sampled from
                # the last logits) and in llama-bench: unsynchronised, a split over RPC workers
                # overlapped consecutive tokens and read up to a third faster than it generates.
                lib.llama_synchronize(ctx)
                if limit_s is not None and time.perf_counter() - started >= limit_s:
                    break
        lib.llama_synchronize(ctx)
        return int(test["n"]) / (time.perf_counter() - started)

    def _context(self, key: int | tuple[str, int, int], depth: int, fill: Callable[[], None]) -> None:
        """The cache as a test's run needs it: `depth` tokens of context (every sequence's), filled
        once per test as llama-bench reuses it (the last run's tokens go, the depth's stay:
        refilling 1536 tokens took several times the timed batch), or cleared and filled anew."""
        lib = self.lib
        if depth and self.filled_depth == key:
            lib.llama_memory_seq_rm(self.memory, -1, depth, -1)
        else:
            lib.llama_memory_clear(self.memory, True)
            if depth:
                fill()
            self.filled_depth = key
        lib.llama_synchronize(self.loaded.ctx)

    def _parallel_run(self, test: dict[str, Any], n_seq: int, limit_s: float | None) -> float:
        """N sequences decoded together, as llama-server's slots and llama-batched-bench: each
        after its own `depth` tokens of prompt (decoded first, untimed), then `n` steps of one
        batch holding a token of every sequence, each step waiting for the last. Its tokens per
        second are all the sequences' together."""
        lib, ctx = self.lib, self.loaded.ctx
        depth, steps = int(test.get("depth") or 0), int(test["n"])

        def prompts() -> None:
            for seq in range(n_seq):
                prompt = [self.rng.randrange(self.n_vocab) for _ in range(depth)]
                for start in range(0, depth, self.n_batch):
                    chunk = prompt[start : start + self.n_batch]
                    self._decode_items([(token, start + i, seq, False) for i, token in enumerate(chunk)])

        self._context(("parallel", n_seq, depth), depth, prompts)
        started = time.perf_counter()
        done = 0
        for step in range(steps):
            self._decode_items([(self.rng.randrange(self.n_vocab), depth + step, seq, True) for seq in range(n_seq)])
            lib.llama_synchronize(ctx)
            done += 1
            if limit_s is not None and time.perf_counter() - started >= limit_s:
                break
        return n_seq * done / (time.perf_counter() - started)

    def _decode_items(self, items: list[tuple[int, int, int, bool]]) -> None:
        """One batch of (token, position, sequence, logits) entries."""
        lib = self.lib
        batch = lib.llama_batch_init(len(items), 0, 1)
        try:
            for i, (token, pos, seq, logits) in enumerate(items):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = logits
            batch.n_tokens = len(items)
            if lib.llama_decode(self.loaded.ctx, batch) != 0:
                raise EngineError("llama.cpp failed to decode a batch of parallel sequences (context too small for the test?)")
        finally:
            lib.llama_batch_free(batch)


def _sample_seconds(lib: Any, loaded: Loaded, reps: int) -> float:
    """The median time of a greedy sample over the vocabulary's logits (what `run` adds to each
    generated token besides its decode: its sampler builds a candidate per vocabulary entry)."""
    lib.llama_memory_clear(lib.llama_get_memory(loaded.ctx), True)
    one = (lib.llama_token * 1)(0)
    if lib.llama_decode(loaded.ctx, lib.llama_batch_get_one(one, 1)) != 0:
        raise EngineError("llama.cpp failed to decode a token before timing the sampler")
    lib.llama_synchronize(loaded.ctx)
    sampler = _sampler(lib, 0.0, 0)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        lib.llama_sampler_sample(sampler, loaded.ctx, -1)
        times.append(time.perf_counter() - started)
    lib.llama_sampler_free(sampler)
    return statistics.median(times)


def task_bench_series(request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """task_bench for each of `runs` in turn, in this one process: llama.cpp is imported and each
    RPC worker registered once (a child per model cost the probe 0.12 s each, 66 times)."""
    runs = []
    for index, run in enumerate(request["runs"]):
        runs.append(task_bench(run, emit))
        # each run's result as it ends: if llama.cpp crashes on a later one, these are kept
        emit({"event": "run_done", "index": index, "result": runs[-1]})
    return {"runs": runs}


def task_quantize(request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """llama.cpp's own quantizer (llama_model_quantize): `src` to `dst` in `ftype` (a llama_ftype)."""
    import llama_cpp

    qp = llama_cpp.llama_model_quantize_default_params()
    qp.ftype = int(request["ftype"])
    qp.nthread = int(request.get("threads") or 0)
    started = time.perf_counter()
    code = llama_cpp.llama_model_quantize(request["src"].encode(), request["dst"].encode(), ctypes.byref(qp))
    if code != 0:
        raise EngineError(f"llama.cpp could not quantize {request['src']} (code {code})")
    return {"seconds": time.perf_counter() - started}
