"""The planner on the real shapes of big models and hypothetical hardware (pure, no engine)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpusplit.base.reasons import codes
from gpusplit.devices.device import Device
from gpusplit.devices.hypothetical import hypothetical_devices
from gpusplit.gguf import read_model
from gpusplit.planning.memory import CTX_PAD, Settings
from gpusplit.planning.planner import PlanError, PlanInputs, evaluate, make_plan

GIB = 2**30
HOST = Device("CPU", "test host", "CPU", "cpu", 128 * GIB, 128 * GIB, source="host")


@pytest.fixture(scope="module")
def llama70b(header_only_model):
    return read_model(header_only_model("llama-3.1-70b"))


@pytest.fixture(scope="module")
def llama8b(header_only_model):
    return read_model(header_only_model("llama-3.1-8b"))


@pytest.fixture(scope="module")
def mixtral(header_only_model):
    return read_model(header_only_model("mixtral-8x7b"))


def test_one_gpu_when_the_model_fits_the_best_gpu(llama8b):
    devices = hypothetical_devices(["8GiB", "RTX 4090"])
    plan = make_plan(llama8b, devices, HOST, PlanInputs(settings=Settings(n_ctx=8192)))
    assert plan.best.strategy == "single-gpu"
    assert plan.best.llama_mode == "none"
    assert plan.best.placement.main_gpu == 1  # the 24 GiB card, not index 0
    assert plan.best.fits and plan.best.all_on_gpu
    assert plan.best.memory.devices[0].planned_bytes == 0


def test_layer_split_leaves_even_headroom(llama70b):
    devices = hypothetical_devices(["RTX 4090", "RTX 3090"])
    plan = make_plan(llama70b, devices, HOST, PlanInputs(settings=Settings(n_ctx=8192)))
    best = plan.best
    assert best.strategy == "layer-split" and best.fits and best.all_on_gpu
    h0, h1 = best.headroom
    # Within one layer's bytes of each other (layers are indivisible).
    layer = llama70b.blocks[0].n_bytes + best.memory.devices[0].kv_bytes // len(best.memory.devices[0].layers)
    assert abs(h0 - h1) <= layer


def test_even_headroom_beats_free_memory_proportions(llama70b):
    # 24 GiB + 20 GiB for a ~41 GiB load: llama.cpp's default split by free memory (24:20) leaves
    # the larger card nearly full because it also carries the bigger compute buffer.
    devices = hypothetical_devices(["24GiB@1000GB/s", "20GiB@1000GB/s"])
    ours = make_plan(llama70b, devices, HOST, PlanInputs(settings=Settings(n_ctx=4096))).best
    default = evaluate(
        llama70b,
        devices,
        HOST,
        PlanInputs(settings=Settings(n_ctx=4096)),
        replace(ours.placement, tensor_split=(24.0, 20.0)),
        "x",
    )
    assert min(ours.headroom) >= min(default.headroom)


def test_partial_offload_is_the_largest_ngl_that_fits(llama70b):
    devices = hypothetical_devices(["RTX 4090"])
    request = PlanInputs(settings=Settings(n_ctx=4096))
    plan = make_plan(llama70b, devices, HOST, request)
    best = plan.best
    assert best.strategy == "partial-offload" and best.fits and not best.all_on_gpu
    ngl = best.placement.n_gpu_layers
    assert 0 < ngl < llama70b.n_layer + 1
    more = evaluate(llama70b, devices, HOST, request, replace(best.placement, n_gpu_layers=ngl + 1), "x")
    assert more.headroom[0] < 0


def test_moe_experts_go_to_the_cpu_first(mixtral):
    devices = hypothetical_devices(["RTX 4090"])
    plan = make_plan(mixtral, devices, HOST, PlanInputs(settings=Settings(n_ctx=4096)))
    strategies = [plan.best.strategy] + [c.strategy for c in plan.alternatives]
    assert "expert-offload" in strategies
    moe = next(c for c in [plan.best, *plan.alternatives] if c.strategy == "expert-offload")
    assert moe.fits and 0 < moe.placement.n_cpu_moe < mixtral.n_layer
    # Every block's attention stays on the GPU; only expert tensors moved.
    assert all(d is not None for d in moe.memory.layer_device)
    fewer = evaluate(
        mixtral,
        devices,
        HOST,
        PlanInputs(settings=Settings(n_ctx=4096)),
        replace(moe.placement, n_cpu_moe=moe.placement.n_cpu_moe - 1),
        "x",
    )
    assert not fewer.fits


def test_alike_gpus_on_nvlink_get_tensor_parallelism(llama70b):
    devices = hypothetical_devices(["2xH100 SXM"])
    plan = make_plan(llama70b, devices, HOST, PlanInputs(settings=Settings(n_ctx=8192), spread=True))
    tensor = next(c for c in [plan.best, *plan.alternatives] if c.strategy == "tensor-split")
    # No backend here has split buffers: row mode runs as llama.cpp's tensor mode, with flash attention.
    assert tensor.llama_mode == "tensor"
    assert tensor.settings.flash_attn
    shares = [m.weights_bytes for m in tensor.memory.devices]
    assert shares[0] == pytest.approx(shares[1], rel=0.01)


def test_no_gpu_means_cpu_only(llama8b):
    plan = make_plan(llama8b, [], HOST, PlanInputs(settings=Settings(n_ctx=4096)))
    assert plan.best.strategy == "cpu-only"
    assert plan.best.placement.n_gpu_layers == 0
    # The whole file stays mapped, and the Q4_K matrices the CPU multiplies are also repacked (AVX2).
    q4k = sum(t.n_bytes for b in llama8b.blocks for t in b.tensors if t.ggml_type.name == "Q4_K" and len(t.shape) == 2)
    q4k += sum(t.n_bytes for t in llama8b.output.tensors if t.ggml_type.name == "Q4_K")
    assert plan.best.memory.host.repack_bytes == q4k > 0
    assert plan.best.memory.host.weights_bytes == llama8b.total_bytes + q4k


def test_a_given_split_is_evaluated_as_given(llama70b):
    devices = hypothetical_devices(["RTX 4090", "RTX 3090"])
    plan = make_plan(llama70b, devices, HOST, PlanInputs(settings=Settings(n_ctx=4096), split=(0.9, 0.1)))
    assert plan.best.strategy == "as-given"
    assert plan.best.placement.tensor_split == (0.9, 0.1)
    assert not plan.best.fits  # 90 % of a 40 GiB model does not fit a 24 GiB card, and it is not changed


def test_best_context_is_the_largest_that_fits(llama70b):
    devices = hypothetical_devices(["A100-80GB"])
    request = PlanInputs(settings=Settings(n_ctx=4096))
    plan = make_plan(llama70b, devices, HOST, request)
    ctx = plan.best_ctx
    assert ctx % CTX_PAD == 0 and ctx > 4096
    at = evaluate(llama70b, devices, HOST, request, plan.best.placement, "x", replace(request.settings, n_ctx=ctx))
    above = evaluate(llama70b, devices, HOST, request, plan.best.placement, "x", replace(request.settings, n_ctx=ctx + CTX_PAD))
    assert at.fits and not above.fits


def test_score_is_zero_when_nothing_fits_and_higher_for_better_fits(llama70b):
    tiny = make_plan(
        llama70b, hypothetical_devices(["1GiB"]), HOST.with_(free_bytes=GIB), PlanInputs(settings=Settings(n_ctx=4096))
    )
    assert tiny.score == 0.0 and not tiny.best.fits
    big = make_plan(llama70b, hypothetical_devices(["A100-80GB"]), HOST, PlanInputs(settings=Settings(n_ctx=4096)))
    partial = make_plan(llama70b, hypothetical_devices(["RTX 4090"]), HOST, PlanInputs(settings=Settings(n_ctx=4096)))
    assert 0 < partial.score < big.score <= 1


def test_predicted_speed_is_bandwidth_bound(llama8b):
    fast = make_plan(llama8b, hypothetical_devices(["24GiB@1000GB/s"]), HOST, PlanInputs(settings=Settings(n_ctx=4096)))
    slow = make_plan(llama8b, hypothetical_devices(["24GiB@500GB/s"]), HOST, PlanInputs(settings=Settings(n_ctx=4096)))
    f, s = fast.best.prediction, slow.best.prediction
    # Reads per token: the weights but the input layer (one row of it), and the KV cache in use.
    weights = llama8b.total_bytes - llama8b.input.n_bytes
    assert weights < f.bytes_per_token < weights * 1.02
    # Doubling the bandwidth saves exactly the reading time it halves (the fixed costs stay): a
    # catalog card is read at 80 % of its figure.
    saved = s.seconds_per_token - f.seconds_per_token
    assert saved == pytest.approx(f.bytes_per_token / (0.8 * 500e9) - f.bytes_per_token / (0.8 * 1000e9), rel=0.02)
    assert f.tg_tokens_per_s < 0.8 * 1000e9 / f.bytes_per_token  # never above the bandwidth's bound
    assert f.basis == s.basis == "catalog"
    # A card faster than the H200 whose kernels were measured is read no faster than those kernels
    # read it (Q4_K at 1.28 TB/s where the H200 has 4.8): more bandwidth alone does not help.
    h200 = make_plan(llama8b, hypothetical_devices(["141GiB@4800GB/s"]), HOST, PlanInputs(settings=Settings(n_ctx=4096)))
    faster = make_plan(llama8b, hypothetical_devices(["141GiB@9600GB/s"]), HOST, PlanInputs(settings=Settings(n_ctx=4096)))
    assert faster.best.prediction.tg_tokens_per_s == pytest.approx(h200.best.prediction.tg_tokens_per_s, rel=0.01)
    unknown = make_plan(llama8b, hypothetical_devices(["24GiB"]), HOST, PlanInputs(settings=Settings(n_ctx=4096)))
    assert unknown.best.prediction.basis == "assumed"
    assert "speed-assumed" in codes(unknown.best.prediction.assumptions)


@pytest.mark.parametrize(
    ("request_", "parameter"),
    [
        (PlanInputs(split=(1.0, 2.0, 3.0)), "tensor_split"),
        (PlanInputs(split=(0.0, 0.0)), "tensor_split"),
        (PlanInputs(split=(-1.0, 2.0)), "tensor_split"),
        (PlanInputs(main_gpu=5), "main_gpu"),
        (PlanInputs(settings=Settings(n_ctx=0)), "n_ctx"),
        (PlanInputs(settings=Settings(n_ubatch=1024, n_batch=512)), "n_ubatch"),
    ],
)
def test_impossible_requests(llama8b, request_, parameter):
    with pytest.raises(PlanError) as caught:
        make_plan(llama8b, hypothetical_devices(["24GiB", "8GiB"]), HOST, request_)
    assert caught.value.parameter == parameter


def test_one_gpu_is_preferred_to_a_split_not_to_the_cpu_alone():
    """The seed's preference: one GPU unless a split is more than 5 % faster. The CPU alone moves
    nothing between devices either: where both were measured, a device predicted a little slower
    does not go first (a loopback worker predicted 4 % behind the CPU ran 11 % behind it); on
    assumed figures the GPU does."""
    from types import SimpleNamespace

    from gpusplit.planning.planner import rank

    def candidate(strategy: str, tg: float, basis: str = "measured") -> SimpleNamespace:
        memory = SimpleNamespace(devices=[], host=SimpleNamespace(model_weights_bytes=1, kv_bytes=0))
        prediction = SimpleNamespace(tg_tokens_per_s=tg, basis=basis)
        return SimpleNamespace(fits=True, strategy=strategy, prediction=prediction, memory=memory)

    assert rank([candidate("cpu-only", 100), candidate("single-gpu", 97)])[0].strategy == "cpu-only"
    assumed = [candidate("cpu-only", 100, "assumed"), candidate("single-gpu", 97, "assumed")]
    assert rank(assumed)[0].strategy == "single-gpu"
    assert rank([candidate("layer-split", 100), candidate("single-gpu", 97)])[0].strategy == "single-gpu"
    assert rank([candidate("tensor-split", 110), candidate("single-gpu", 97)])[0].strategy == "tensor-split"


def test_the_cpu_alone_beats_workers_that_serve_this_cpu(monkeypatch, tmp_path):
    """A worker serving this machine's CPU computes on the cores the CPU alone would use: the CPU
    alone comes first whatever the workers' predicted lead. A worker on this machine serving a
    GPU, or one on another machine, is ranked by its prediction. The worker's own note says what
    it serves; without one (llama.cpp's rpc-server) a loopback device with the host's RAM is the CPU."""
    from types import SimpleNamespace

    from gpusplit.devices.rpc import write_worker_note
    from gpusplit.planning.planner import rank

    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(tmp_path))

    def candidate(strategy: str, tg: float) -> SimpleNamespace:
        on_worker = [SimpleNamespace(index=0, weights_bytes=1, kv_bytes=0)] if strategy != "cpu-only" else []
        memory = SimpleNamespace(devices=on_worker, host=SimpleNamespace(model_weights_bytes=1, kv_bytes=0))
        return SimpleNamespace(
            fits=True, strategy=strategy, prediction=SimpleNamespace(tg_tokens_per_s=tg, basis="measured"), memory=memory
        )

    host = Device("CPU", "AMD EPYC", "CPU", "cpu", 2**35, 2**34, source="host")

    def worker(endpoint: str, total: int = 2**34) -> list[Device]:
        return [Device("RPC0", endpoint, "RPC", "gpu", total, 2**33, index=0, source="rpc", endpoint=endpoint)]

    def first(devices: list[Device], worker_tg: float) -> str:
        return rank([candidate("single-gpu", worker_tg), candidate("cpu-only", 100)], devices, host)[0].strategy

    write_worker_note("127.0.0.1:50052", [{"name": "CPU", "description": "AMD EPYC", "type": "cpu"}], 2)
    write_worker_note("127.0.0.1:50053", [{"name": "CUDA0", "description": "RTX 4090", "type": "gpu"}], 2)
    assert first(worker("127.0.0.1:50052"), 150) == "cpu-only"  # this CPU, however fast it looks
    assert first(worker("127.0.0.1:50053"), 105) == "single-gpu"  # a GPU behind a loopback worker
    assert first(worker("10.0.0.7:50052"), 105) == "single-gpu"  # another machine
    # no note (llama.cpp's rpc-server): the host's RAM marks this CPU, other memory a GPU
    assert first(worker("127.0.0.1:50054", total=host.total_bytes), 150) == "cpu-only"
    assert first(worker("127.0.0.1:50054", total=2**34), 105) == "single-gpu"
    assert first(worker("127.0.0.1:50052"), 99) == "cpu-only"  # and of course when it is slower
