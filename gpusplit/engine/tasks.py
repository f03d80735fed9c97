"""Engine tasks, run inside the child process (engine/child.py): load, dry run, generate.

llama.cpp's low-level API is used rather than `llama_cpp.Llama`, so that nothing compiles or
renders the model's chat template and the parameters are exactly the ones gpusplit planned.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Any

from . import EngineError
from .params import LLAMA_MAX_DEVICES, SPLIT_MODES, EngineParams, ggml_type_id

Emit = Callable[[dict[str, Any]], None]


class Loaded:
    """A model and context loaded from EngineParams; frees both on close."""

    def __init__(self, params: EngineParams, dry_run: bool = False) -> None:
        import llama_cpp

        from .registry import add_rpc_server

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
        started = time.perf_counter()
        self.model = llama_cpp.llama_model_load_from_file(params.model_path.encode(), mp)
        if not self.model:
            raise EngineError(f"llama.cpp could not load {params.model_path} (see the log with --verbose)")
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = params.n_ctx
        cp.n_batch = params.n_batch
        cp.n_ubatch = params.n_ubatch
        cp.n_seq_max = params.n_seq_max
        cp.type_k = ggml_type_id(params.type_k)
        cp.type_v = ggml_type_id(params.type_v)
        cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if params.flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.swa_full = params.swa_full
        cp.offload_kqv = params.offload_kqv
        if params.n_threads:
            cp.n_threads = cp.n_threads_batch = params.n_threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, cp)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise EngineError("llama.cpp could not create the context (see the log with --verbose)")
        self.load_ms = (time.perf_counter() - started) * 1000
        self.params = params

    def close(self) -> None:
        self.lib.llama_free(self.ctx)
        self.lib.llama_model_free(self.model)


def task_dryrun(request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Simulate the load (no_alloc): llama.cpp logs the compute buffers it would reserve."""
    loaded = Loaded(EngineParams.from_dict(request["params"]), dry_run=True)
    loaded.close()
    return {"ok": True}


def task_load(request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Really load (allocating every buffer), then free: the log holds the actual sizes."""
    loaded = Loaded(EngineParams.from_dict(request["params"]))
    result = {"load_ms": loaded.load_ms}
    loaded.close()
    return result
