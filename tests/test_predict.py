"""Speed you can trust: the predictor's equations, their inverse (the probe fit), the figures'
provenance, the cache of measurements, and predicted vs measured on every run and bench row."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gpusplit.base.contention import Contention
from gpusplit.base.reasons import Reason
from gpusplit.devices.device import Device
from gpusplit.devices.speed import WEIGHT_CLASSES, DeviceSpeed, GroupSpeed, identity_of, load, save, weight_class
from gpusplit.planning.predict import ProbePoint, Work, batch_seconds, fit_speed, placement_work, token_seconds
from gpusplit.planning.request import Request

GB = 1e9
MIB = 2**20
# Every class from its probe model; on this CPU Q4_0 is copied (CPU_REPACK), so its default run
# measures the copies and a --no-repack run the plain kernels.
LARGE = {
    "float": "f16", "q8": "q8_0", "q6k": "q6_k", "q5k": "q5_k_m", "kquant": "q4_k_m", "legacy": "q4_0:plain",
    "legacy+copy": "q4_0", "q4_1": "q4_1", "q5_0": "q5_0", "iq4": "iq4_xs",
}  # fmt: skip
PLAIN_LARGE = {**{k: v for k, v in LARGE.items() if k != "legacy+copy"}, "legacy": "q4_0"}  # no copies


def _speed(**changes) -> DeviceSpeed:
    base = DeviceSpeed(
        token_overhead_s=80e-6,
        layer_overhead_s=35e-6,
        bandwidth={
            "float": 40 * GB,
            "q8": 33 * GB,
            "q6k": 31 * GB,
            "q5k": 29 * GB,
            "kquant": 30 * GB,
            "legacy": 28 * GB,
            "legacy+copy": 36 * GB,
            "q4_1": 20 * GB,
            "q5_0": 22 * GB,
            "iq4": 26 * GB,
        },
        cache_bandwidth=90 * GB,
        cache_bytes=32 * MIB,
        batch_overhead_s=0.4e-3,
        batch_layer_overhead_s=2e-3,
        flops={
            "float": 350 * GB,
            "q8": 250 * GB,
            "q6k": 380 * GB,
            "q5k": 360 * GB,
            "kquant": 450 * GB,
            "legacy": 300 * GB,
            "legacy+copy": 700 * GB,
            "q4_1": 150 * GB,
            "q5_0": 170 * GB,
            "iq4": 320 * GB,
        },
    )
    return replace(base, **changes)


def _work(blocks: int, nbytes: float, cls: str = "float", row_bytes: float = 3072) -> Work:
    """`nbytes` of weights in rows of `row_bytes` (1536 f16 elements by default)."""
    w = Work(blocks=blocks, weight_bytes=nbytes, rows={"float" if cls == "float" else "quant": nbytes / row_bytes})
    w.bytes[cls] = nbytes
    w.flops[cls] = nbytes  # f16: 2 FLOP per 2-byte weight
    return w


def test_weight_classes():
    types = ("F16", "BF16", "F32", "Q8_0", "Q4_K", "Q6_K", "Q5_K", "IQ4_XS", "MXFP4", "Q4_1", "Q5_0", "Q3_K")
    assert [weight_class(t) for t in types] == [
        "float", "float", "float", "q8", "kquant", "q6k", "q5k", "iq4", "legacy", "q4_1", "q5_0", "kquant",
    ]  # fmt: skip
    assert weight_class("Q4_0", copied=True) == "legacy+copy"


def test_a_class_not_measured_reads_at_the_nearest_measured_one():
    from gpusplit.devices.speed import rate_of

    rates = {"float": 40.0, "legacy": 30.0, "legacy+copy": 50.0, "kquant": 25.0}
    assert rate_of(rates, "legacy+copy") == 50.0  # measured as such
    assert rate_of(rates, "kquant+copy") == 25.0  # copies not measured: its plain rate
    assert rate_of(rates, "q4_1") == 30.0 and rate_of(rates, "iq4") == 25.0  # the nearest class
    assert rate_of(rates, "q5k") == 40.0  # q6k not measured either: float


def _dense_probe_works(copies: bool = False) -> dict[str, Work]:
    """The small and large probe models' work, as the fit tests use them; with `copies`, the CPU
    copies Q4_0 (its default run reads the copies, a --no-repack run the plain weights)."""
    works = {
        "rows": _work(1, 128 * MIB, row_bytes=512),  # 262,144 rows of 256 f16 elements
        "rows-q8_0": _work(1, 68 * MIB, "q8", row_bytes=272),  # the same in q8_0
        "l1": _work(1, 1.6 * MIB),
        "l12": _work(12, 13 * MIB),
        "wide2": _work(2, 25 * MIB),
        "f16": _work(8, 390 * MIB, "float"),
        "q8_0": _work(8, 207 * MIB, "q8"),
        "q6_k": _work(8, 160 * MIB, "q6k"),
        "q5_k_m": _mixed(_work(8, 110 * MIB, "q5k"), q6k=30 * MIB),
        "q4_k_m": _mixed(_work(8, 90 * MIB, "kquant"), q6k=30 * MIB),  # Q4_K_M keeps some tensors in Q6_K
        "q4_0": _work(8, 110 * MIB, "legacy+copy" if copies else "legacy"),
        "q4_1": _work(8, 122 * MIB, "q4_1"),
        "q5_0": _work(8, 134 * MIB, "q5_0"),
        "iq4_xs": _mixed(_work(8, 100 * MIB, "iq4"), q6k=10 * MIB),
    }
    if copies:
        works["q4_0:plain"] = _work(8, 110 * MIB, "legacy")
    return works


def _probe_works() -> dict[str, Work]:
    """Every probe model's work: the dense ones and the four mixtures of experts."""
    works = {**_dense_probe_works(), "moe": _work(2, 40 * MIB), "moe8": _work(8, 160 * MIB)}
    return works | {"moe-q4_k_m": _work(2, 12 * MIB, "kquant"), "moe8-q4_k_m": _work(8, 48 * MIB, "kquant")}


def _fake_cpu_probe(monkeypatch, works: dict[str, Work], truth: DeviceSpeed, fake_time_runs) -> tuple[Device, dict]:
    """The probe of a host CPU with its runs timed by `fake_time_runs`, each probe model's work
    from `works` and the CPU's cache `truth`'s (not this machine's): the host and the models' paths."""
    from pathlib import Path

    from gpusplit.jobs import probe

    monkeypatch.setattr(probe, "_time_runs", fake_time_runs)
    monkeypatch.setattr(probe, "_work", lambda path, copies=(), level="none": works[Path(path).stem])
    monkeypatch.setattr(probe.speed_cache, "cpu_cache_bytes", lambda: truth.cache_bytes)
    host = Device("CPU", "CPU", "CPU", "cpu", 2**34, 2**33, source="host")
    return host, {name: Path(f"{name}.gguf") for name in works}


def _mixed(work: Work, **more: float) -> Work:
    for cls, nbytes in more.items():
        work.add("bytes", cls, nbytes)
        work.add("flops", cls, nbytes)
        work.weight_bytes += nbytes
    return work


def _probe_points(
    truth: DeviceSpeed,
    works: dict[str, Work],
    extra_batch_s: dict[str, float] | None = None,
    depths: dict[str, int] | None = None,
) -> dict:
    """Probe timings made by the predictor's own equations from `truth` (plus any extra batch time),
    each prompt batch after `depths[name]` tokens of context."""
    points = {}
    for name, work in works.items():
        depth = (depths or {}).get(name, 0)
        token = truth.token_overhead_s + token_seconds(truth, work)
        batch = truth.batch_overhead_s + batch_seconds(truth, work, 512, depth) + (extra_batch_s or {}).get(name, 0.0)
        points[name] = ProbePoint(name, work, token, batch, 512, depth)
    return points


def test_the_fit_inverts_the_equations():
    """Probe timings made by the predictor's own equations from known figures give those figures back."""
    truth = _speed(expert_batch_factor=2.0, row_overhead_s={"float": 3e-9, "quant": 6e-9})
    moe = _work(2, 80 * MIB)
    moe.expert_flops["float"] = 0.75 * moe.flops["float"]
    points = _probe_points(truth, {**_dense_probe_works(copies=True), "moe": moe})
    fitted = fit_speed(
        points, truth.cache_bytes, ("l1", "l12", "wide2"), LARGE, "moe", rows={"float": "rows", "quant": "rows-q8_0"}
    )
    assert fitted.row_overhead_s["float"] == pytest.approx(3e-9, rel=0.05)
    assert fitted.row_overhead_s["quant"] == pytest.approx(6e-9, rel=0.05)
    assert fitted.expert_batch_factor == pytest.approx(2.0, rel=0.03)
    assert fitted.token_overhead_s == pytest.approx(truth.token_overhead_s, rel=0.02)
    assert fitted.layer_overhead_s == pytest.approx(truth.layer_overhead_s, rel=0.02)
    assert fitted.cache_bandwidth == pytest.approx(truth.cache_bandwidth, rel=0.02)
    for cls in [*WEIGHT_CLASSES, "legacy+copy"]:
        assert fitted.bandwidth[cls] == pytest.approx(truth.bandwidth[cls], rel=0.02), cls
        assert fitted.flops[cls] == pytest.approx(truth.flops[cls], rel=0.03), cls
    assert fitted.batch_layer_overhead_s == pytest.approx(truth.batch_layer_overhead_s, rel=0.05)


def test_attention_cost_per_score_from_a_deeper_context():
    """A prompt batch's attention costs per score (head x token x KV cell) besides its FLOPs: the
    small model's batch timed again after 1536 tokens of context gives that cost, and the per-layer
    cost is then what is left. Folded into the per-layer cost instead (as before), a model with
    four times the heads had its prompt predicted too fast (on this CPU +34 % for 16 heads)."""
    truth = _speed(attention_score_s=2e-9, batch_layer_overhead_s=0.3e-3)
    works = _dense_probe_works()
    for name, work in works.items():
        heads = 8 * work.blocks if name in ("l1", "l12") else 12 * work.blocks
        work.heads, work.head_width = heads, heads * (32 if name in ("l1", "l12") else 128)
    works["deep"] = works["l12"]
    points = _probe_points(truth, works, depths={"deep": 1536})
    fitted = fit_speed(points, truth.cache_bytes, ("l1", "l12", "wide2"), PLAIN_LARGE, deep=("l12", "deep"))
    assert fitted.attention_score_s == pytest.approx(2e-9, rel=0.03)
    assert fitted.batch_layer_overhead_s == pytest.approx(0.3e-3, rel=0.05)
    assert fitted.flops["float"] == pytest.approx(truth.flops["float"], rel=0.03)
    folded = fit_speed(points, truth.cache_bytes, ("l1", "l12", "wide2"), PLAIN_LARGE)
    assert folded.attention_score_s == 0.0 and folded.batch_layer_overhead_s > 5 * truth.batch_layer_overhead_s
    many_heads = _work(12, 100 * MIB)
    many_heads.heads, many_heads.head_width = 12 * 32, 12 * 32 * 64
    actual = batch_seconds(truth, many_heads, 512)
    assert batch_seconds(fitted, many_heads, 512) == pytest.approx(actual, rel=0.03)
    assert batch_seconds(folded, many_heads, 512) < 0.8 * actual


def test_attention_follows_the_layers_and_the_shares(tiny_model):
    """Each device attends with the heads of the layers it holds (its share of every layer's heads
    in row/tensor modes); the CPU keeps the heads of the layers left on it."""
    from gpusplit.gguf.model import read_model
    from gpusplit.planning.memory import Placement, Settings, plan_memory

    model = read_model(tiny_model("dense-f16"))
    heads = sum(model.n_head)
    layer = plan_memory(model, ["a", "b"], ["a", "b"], [2**40] * 2, Settings(n_ctx=256), Placement("layer", 4, (0.5, 0.5), 0))
    works = placement_work(model, layer)
    assert works[None].heads + works[0].heads + works[1].heads == heads
    on_cpu = [il for il in range(model.n_layer) if layer.layer_device[il] is None]
    assert on_cpu and works[None].heads == sum(model.n_head[il] for il in on_cpu)  # the layers not offloaded
    assert works[0].head_width == works[0].heads * model.head_dim_k
    tensor = plan_memory(model, ["a", "b"], ["a", "b"], [2**40] * 2, Settings(n_ctx=256), Placement("row", -1, (0.25, 0.75), 0))
    shared = placement_work(model, tensor)
    assert shared[0].heads == pytest.approx(0.25 * heads) and shared[1].heads == pytest.approx(0.75 * heads)


def test_expert_factor_from_two_moe_models_ignores_fixed_costs():
    """With a 2- and an 8-layer MoE model the factor comes from what the six extra layers add: a
    fixed cost the equations do not know (here 30 ms a batch on the small model) drops out, where
    the one-model fit folds it into the factor."""
    truth = _speed(expert_batch_factor=2.0, expert_batch_factor_quant=1.3)
    moes = {}
    for name, blocks, cls, size in (
        ("moe", 2, "float", 40),
        ("moe8", 8, "float", 40),
        ("moe-q", 2, "kquant", 12),
        ("moe8-q", 8, "kquant", 12),
    ):
        moes[name] = _work(blocks, size * MIB * blocks, cls)
        moes[name].expert_flops[cls] = 0.75 * moes[name].flops[cls]
    points = _probe_points(truth, {**_dense_probe_works(), **moes}, dict.fromkeys(moes, 0.03))
    two = fit_speed(points, truth.cache_bytes, ("l1", "l12", "wide2"), PLAIN_LARGE, "moe", "moe8", ("moe-q", "moe8-q"))
    one = fit_speed(points, truth.cache_bytes, ("l1", "l12", "wide2"), PLAIN_LARGE, "moe")
    assert two.expert_batch_factor == pytest.approx(2.0, rel=0.03)
    assert two.expert_batch_factor_quant == pytest.approx(1.3, rel=0.03)  # quantized experts, their own pair
    assert one.expert_batch_factor > 2.3  # the fixed cost read as slower experts
    assert one.expert_batch_factor_quant == one.expert_batch_factor  # without a quantized pair, the f16 one


def test_a_negative_overhead_is_never_fitted():
    """Timings no line explains (noise) give overheads of zero or more, not negative ones."""
    points = {
        "l1": ProbePoint("l1", _work(1, 1.6 * MIB), 50e-6, 1e-3, 512),
        "l12": ProbePoint("l12", _work(12, 13 * MIB), 40e-6, 1e-3, 512),  # faster with more layers: noise
        "wide2": ProbePoint("wide2", _work(2, 25 * MIB), 60e-6, 1e-3, 512),
        "f16": ProbePoint("f16", _work(8, 390 * MIB), 9e-3, 1.0, 512),
        "q8_0": ProbePoint("q8_0", _work(8, 207 * MIB, "q8"), 6e-3, 0.8, 512),
        "q6_k": ProbePoint("q6_k", _work(8, 160 * MIB, "q6k"), 5e-3, 0.7, 512),
        "q4_k_m": ProbePoint("q4_k_m", _work(8, 117 * MIB, "kquant"), 3e-3, 0.5, 512),
        "q4_0": ProbePoint("q4_0", _work(8, 110 * MIB, "legacy"), 3e-3, 0.6, 512),
    }
    fitted = fit_speed(points, 32 * MIB, ("l1", "l12", "wide2"), PLAIN_LARGE)
    assert fitted.token_overhead_s >= 0 and fitted.layer_overhead_s >= 0 and fitted.batch_overhead_s >= 0
    assert all(v > 0 for v in fitted.bandwidth.values()) and all(v > 0 for v in fitted.flops.values())


def test_cache_round_trip_and_identity(tmp_path):
    host = Device("CPU", "AMD EPYC, 2 threads", "CPU", "cpu", 2**34, 2**33, source="host")
    worker = Device("RPC0", "127.0.0.1:50052", "RPC", "gpu", 2**34, 2**33, index=0, source="rpc", endpoint="127.0.0.1:50052")
    ids = {identity_of(host, 2, "b1"), identity_of(host, 1, "b1"), identity_of(host, 2, "b2"), identity_of(worker, 2, "b1")}
    assert len(ids) == 4  # threads, the build and the device all tell measurements apart
    speed = _speed(identity=identity_of(host, 2, "b1"), source="measured")
    save(tmp_path, speed.identity, speed)
    assert load(tmp_path, speed.identity) == speed
    assert load(tmp_path, identity_of(host, 1, "b1")) is None
    # The same worker listed second (RPC1) and then alone (RPC0) is the same measurement.
    alone = Device("RPC0", "127.0.0.1:50053", "RPC", "gpu", 2**34, 2**33, index=0, source="rpc", endpoint="127.0.0.1:50053")
    assert identity_of(replace(alone, name="RPC1", index=1), None, "b1") == identity_of(alone, None, "b1")
    assert identity_of(alone, None, "b1") != identity_of(worker, None, "b1")
    group = GroupSpeed(1.4e-3, 2e-3, "group|x")
    save(tmp_path, group.identity, group)
    assert load(tmp_path, group.identity) == group


def test_attached_speeds_are_the_measured_figures(tmp_path):
    from gpusplit.devices.inventory import Inventory, attach_speeds

    host = Device("CPU", "AMD EPYC, 2 threads", "CPU", "cpu", 2**34, 2**33, source="host")
    gpu = Device("CUDA0", "GPU", "CUDA", "gpu", 2**34, 2**33, index=0, pci_bus_id="0000:01:00.0", bandwidth_bytes_per_s=900 * GB)
    speed = _speed(source="measured", identity=identity_of(gpu, 2, "b"))
    save(tmp_path, speed.identity, speed)
    inventory = attach_speeds(Inventory(devices=[gpu], host=host), 2, "b", tmp_path)
    measured = inventory.devices[0]
    assert measured.speed == speed and measured.bandwidth_source == "measured"
    assert measured.bandwidth_bytes_per_s == speed.bandwidth["float"]  # no longer NVML's theoretical 900 GB/s
    assert inventory.host.speed is None


def _plan(model, devices, host, **request):
    from gpusplit.planning.memory import Settings
    from gpusplit.planning.planner import PlanInputs, make_plan

    return make_plan(model, devices, host, PlanInputs(settings=Settings(n_ctx=512), **request))


def test_prediction_basis_and_the_bandwidth_bound(header_only_model):
    """Measured devices give a measured basis; a catalog card a catalog one; an unprobed CPU an
    assumed one with a hint. No figure is above what the bandwidth it came from allows."""
    from gpusplit.gguf.model import read_model

    model = read_model(header_only_model("llama-3.1-8b"))
    host = Device("CPU", "CPU", "CPU", "cpu", 2**36, 2**36, source="host")
    card = Device("GPU0", "RTX 4090", "CUDA", "gpu", 24 * 2**30, 24 * 2**30, index=0, source="catalog",
                  bandwidth_bytes_per_s=1008 * GB, bandwidth_source="catalog")  # fmt: skip
    catalog = _plan(model, [card], host).best.prediction
    assert catalog.basis == "catalog" and catalog.tg_tokens_per_s < 1008 * GB / model.total_bytes
    measured_card = card.with_(speed=_speed(bandwidth=dict.fromkeys(WEIGHT_CLASSES, 800 * GB), source="measured"))
    measured_host = host.with_(speed=_speed(source="measured"))
    measured = _plan(model, [measured_card], measured_host).best.prediction
    assert measured.basis == "measured"
    assert measured.tg_tokens_per_s < 800 * GB / model.total_bytes  # the physical bound
    lo, hi = measured.tg_range
    assert lo < measured.tg_tokens_per_s < hi
    cpu_only = _plan(model, [], host).best.prediction
    assert cpu_only.basis == "assumed" and "speed-assumed" in [a.code for a in cpu_only.assumptions]


def test_ranking_prefers_the_faster_worker(tiny_model):
    """Two workers of equal memory, one measured twice as fast: a single-device plan uses it."""
    from gpusplit.gguf.model import read_model

    model = read_model(tiny_model("dense-large-f16"))
    host = Device("CPU", "CPU", "CPU", "cpu", 2**36, 2**36, source="host", speed=_speed(source="measured"))
    slow = _speed(bandwidth=dict.fromkeys(WEIGHT_CLASSES, 10 * GB), source="measured", rtt_s=50e-6, link_bytes_per_s=GB)
    fast = replace(slow, bandwidth=dict.fromkeys(WEIGHT_CLASSES, 30 * GB))
    workers = [
        Device(f"RPC{i}", f"127.0.0.1:{5000 + i}", "RPC", "gpu", 2**34, 2**33, index=i, source="rpc",
               endpoint=f"127.0.0.1:{5000 + i}", speed=s, bandwidth_source="measured")
        for i, s in enumerate((slow, fast))
    ]  # fmt: skip
    plan = _plan(model, workers, host, mode="none")
    assert plan.best.placement.main_gpu == 1
    ranked = [plan.best, *plan.alternatives]
    speeds = [c.prediction.tg_tokens_per_s for c in ranked if c.fits]
    assert speeds[0] == max(speeds)


def test_devices_on_this_machine_share_its_cache(tiny_model):
    """Two loopback workers serving this machine's CPU (they report its memory), each holding half a
    model that fits the cache only by halves: a token streams through both halves on one machine,
    so neither reads from cache (as if there were none). The same two on two other machines each
    keep their half in their own cache; so do two loopback workers serving GPUs (their own memory)."""
    from gpusplit.gguf.model import read_model

    model = read_model(tiny_model("dense-large-f16"))
    cache = int(0.7 * model.total_bytes)
    ram = 2**36
    host = Device("CPU", "CPU", "CPU", "cpu", ram, ram, source="host", speed=_speed(source="measured"))
    worker = _speed(cache_bytes=cache, source="measured", rtt_s=50e-6, link_bytes_per_s=GB)

    def tg(hosts: tuple[str, str], speed: DeviceSpeed, total: int = ram) -> float:
        workers = [
            Device(f"RPC{i}", f"{h}:50052", "RPC", "gpu", total, 2**33, index=i, source="rpc",
                   endpoint=f"{h}:50052", speed=speed, bandwidth_source="measured")
            for i, h in enumerate(hosts)
        ]  # fmt: skip
        return _plan(model, workers, host, mode="layer", split=(0.5, 0.5)).best.prediction.tg_tokens_per_s

    loopback, apart = ("127.0.0.1", "localhost"), ("10.0.0.5", "10.0.0.6")
    here = tg(loopback, worker)
    assert here == pytest.approx(tg(loopback, replace(worker, cache_bytes=0)))
    assert tg(apart, worker) > 1.2 * here
    assert tg(apart, worker) == pytest.approx(tg(apart, replace(worker, cache_bytes=model.total_bytes)))
    assert tg(loopback, worker, total=80 * 2**30) == pytest.approx(tg(apart, worker))  # GPUs behind them


def test_placement_work_counts_experts_at_their_used_share(tiny_model):
    from gpusplit.gguf.model import read_model
    from gpusplit.planning.memory import Placement, Settings, plan_memory

    model = read_model(tiny_model("moe-f16"))
    memory = plan_memory(model, ["d"], ["d"], [2**40], Settings(n_ctx=256), Placement("none", -1, (), 0))
    work = placement_work(model, memory)[0]
    experts = sum(t.n_bytes for b in model.blocks for t in b.tensors if "_exps" in t.name)
    dense = sum(g.n_bytes for g in model.blocks) + model.output.n_bytes - experts
    assert work.read_bytes == pytest.approx(dense + experts * model.n_expert_used / model.n_expert)
    assert work.blocks == model.n_layer
    offloaded = placement_work(model, memory, n_cpu_moe=2)
    assert offloaded[None].bytes["float"] > 0 and offloaded[0].read_bytes < work.read_bytes


def test_devices_document_carries_speeds_and_a_devices_file_keeps_them(cli, tmp_path, header_only_model):
    from gpusplit.devices.inventory import Inventory
    from gpusplit.documents.render import devices_document

    speed = _speed(source="measured", identity="x")
    gpu = Device("CUDA0", "GPU", "CUDA", "gpu", 24 * 2**30, 24 * 2**30, index=0, speed=speed,
                 bandwidth_bytes_per_s=speed.bandwidth["float"], bandwidth_source="measured")  # fmt: skip
    host = Device("CPU", "CPU", "CPU", "cpu", 2**36, 2**36, source="host", speed=_speed(source="measured", identity="h"))
    doc = devices_document(Inventory(devices=[gpu], host=host, group_speed=None))
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(doc))
    plan = json.loads(cli("plan", "--json", str(header_only_model("llama-3.1-8b")), "--devices-file", str(path)).stdout)
    assert plan["predicted"]["basis"] == "measured"
    assert plan["devices"][0]["bandwidth_bytes_per_s"] == speed.bandwidth["float"]


def test_plan_text_says_where_speed_figures_come_from(cli, header_only_model, monkeypatch, tmp_path):
    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(tmp_path))  # nothing measured here
    result = cli("plan", str(header_only_model("llama-3.1-8b")), "--gpu", "RTX 4090", "--ram", "64GiB")
    assert "tokens/s generation (" in result.stdout and "from catalog figures" in result.stdout
    assert "catalog bandwidth" in result.stdout


@pytest.mark.engine
def test_probe_measures_the_cpu_and_plans_use_it(cli, monkeypatch, tmp_path):
    """`devices --probe` on this machine (the CPU only): figures cached, shown, and used by plan.
    One thread: two on a 2-core runner beside any other process wait out time slices at every
    barrier (this probe ran over 6 minutes beside a CPU hog at two)."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(tmp_path))
    before = json.loads(cli("devices", "--json").stdout)
    assert before["host"]["speed"] is None
    probed = cli("devices", "--probe", "--json", "--threads", "1")
    assert probed.exit_code == 0, probed.stderr
    host = json.loads(probed.stdout)["host"]
    assert host["speed"]["source"] == "measured" and host["speed"]["threads"] == 1
    assert host["bandwidth_source"] == "measured" and host["bandwidth_bytes_per_s"] > 1e9
    assert "probing [" in probed.stderr  # progress, one line per step off a terminal
    table = cli("devices", "--threads", "1")
    assert table.exit_code == 0, table.stderr
    assert "measured by gpusplit devices --probe" in table.stdout and "weights read per second" in table.stdout
    assert all(name in table.stdout for name in ("Q6_K", "Q4_K", "Q4_1", "IQ4_XS"))  # each type apart
    again = json.loads(cli("devices", "--json", "--threads", "1").stdout)["host"]
    assert again["speed"] == host["speed"]  # from the cache
    assert json.loads(cli("devices", "--json", "--threads", "2").stdout)["host"]["speed"] is None  # another thread count
    plan = json.loads(cli("plan", "--json", "--threads", "1").stdout)
    assert plan["predicted"]["basis"] == "measured"
    run = json.loads(cli("run", "--json", "-n", "16", "--threads", "1").stdout)
    p = run["predicted"]
    assert p["basis"] == "measured" and p["gen_tps"] > 0 and p["gen_error_pct"] is not None
    # (relative: the printed speeds are rounded to 0.01, which matters when a busy machine runs slowly)
    assert p["gen_error_pct"] == pytest.approx(
        100 * (p["gen_tps"] - run["timings"]["gen_tps"]) / run["timings"]["gen_tps"], rel=0.01, abs=0.2
    )
    table = cli("bench", "-p", "64", "-n", "16", "-r", "1", "--threads", "1").stdout
    assert "| error |" in table.replace("error | memory", "error |")
    records = json.loads(cli("bench", "-p", "64", "-n", "16", "-r", "1", "--threads", "1", "-o", "json").stdout)
    assert all(r["predicted_basis"] == "measured" and r["prediction_error_pct"] is not None for r in records)


def test_probe_targets_place_the_model_wholly_on_each_device():
    """The CPU at the run's threads, each local GPU by its index among local GPUs, each worker's
    k-th device by k (only that worker is registered when it is probed)."""
    from gpusplit.devices.inventory import EngineInfo, Inventory
    from gpusplit.jobs.probe import LARGE as LARGE_PROBE
    from gpusplit.jobs.probe import SMALL, step_count, targets

    host = Device("CPU", "CPU", "CPU", "cpu", 2**34, 2**33, source="host")
    devices = [
        Device("RPC0", "10.0.0.2:50052 device 0", "RPC", "gpu", 2**34, 2**33, index=0, source="rpc", endpoint="10.0.0.2:50052"),
        Device("RPC1", "10.0.0.2:50052 device 1", "RPC", "gpu", 2**34, 2**33, index=1, source="rpc", endpoint="10.0.0.2:50052"),
        Device("CUDA0", "GPU", "CUDA", "gpu", 2**34, 2**33, index=2, pci_bus_id="0000:01:00.0"),
        Device("CUDA1", "GPU", "CUDA", "gpu", 2**34, 2**33, index=3, pci_bus_id="0000:02:00.0"),
    ]
    found = targets(Inventory(devices=devices, host=host), 4, "b")
    assert [(t.device.name, t.rpc, t.main_gpu, t.on_cpu) for t in found] == [
        ("CPU", (), 0, True),
        ("RPC0", ("10.0.0.2:50052",), 0, False),
        ("RPC1", ("10.0.0.2:50052",), 1, False),
        ("CUDA0", (), 0, False),
        ("CUDA1", (), 1, False),
    ]
    assert len({t.identity for t in found}) == 5
    # Local GPUs are timed on the 1.75 GB set (a GPU reads 195 MB faster than its fixed costs per
    # token); the CPU and RPC workers on the 195 MB one.
    assert [t.large["float"] for t in found] == ["f16", "f16", "f16", "gpu-f16", "gpu-f16"]
    assert (
        step_count(Inventory(devices=devices, host=host)) == (2 * len(SMALL) + 4 + 2 * len(LARGE_PROBE) + 4) * 5 + 1 + 2
    )  # + the tensor-parallel run, each local GPU's upload
    assert step_count(Inventory(devices=[], host=host)) == 32  # 3 small, 2 rows and 9 big models twice, 4 MoE
    # A CPU that copies some classes' weights (CPU_REPACK, AMX) times those models once more, plain.
    repack = Inventory(devices=[], host=host, engine=EngineInfo(True, cpu_extra_buffers=("CPU_REPACK",), cpu_repack="avx512"))
    (cpu,) = targets(repack, 2, "b")
    assert cpu.copied_classes == ("kquant", "legacy")  # Q4_K and Q4_0 on x86
    assert cpu.fit_classes()["legacy"] == "q4_0:plain" and cpu.fit_classes()["legacy+copy"] == "q4_0"
    assert step_count(repack) == 34 and step_count(repack, no_repack=True) == 32
    amx = Inventory(devices=[], host=host, engine=EngineInfo(True, cpu_extra_buffers=("AMX", "CPU_REPACK"), cpu_repack="avx512"))
    assert "q5_0" not in targets(amx, 2, "b")[0].copied_classes  # no AMX kernel, not repacked on x86
    assert len(targets(amx, 2, "b")[0].copied_classes) == 8
    # A loopback worker with the host's memory serves this CPU: it is given this CPU's cache.
    here = Device(
        "RPC0", "127.0.0.1:50052", "RPC", "gpu", host.total_bytes, 2**33, index=0, source="rpc", endpoint="127.0.0.1:50052"
    )
    gpu_here = here.with_(total_bytes=80 * 2**30)
    assert [t.this_cpu for t in targets(Inventory(devices=[here], host=host), 4, "b")] == [False, True]
    assert [t.this_cpu for t in targets(Inventory(devices=[gpu_here], host=host), 4, "b")] == [False, False]


def test_gpu_probe_model_is_big_enough_for_a_gpu():
    """The GPU probe set: Llama-8B-wide layers, f16 big enough that an H200 at ~4.8 TB/s spends
    hundreds of microseconds per token reading it, and not written unless a GPU is probed."""
    from gpusplit.jobs.probe import LARGE, LARGE_GPU, _specs
    from gpusplit.synthetic import tiny_model_size

    specs = _specs()
    gpu = specs[LARGE_GPU["float"]]
    assert (gpu.n_embd, gpu.n_ff, gpu.n_head // gpu.n_head_kv) == (4096, 14336, 4)
    assert 1.5e9 < tiny_model_size(gpu) < 2.0e9
    assert tiny_model_size(gpu) / 4.8e12 > 300e-6
    assert 150e6 < tiny_model_size(specs[LARGE["float"]]) < 250e6


def test_big_batches_of_host_weights_run_on_the_gpu(header_only_model):
    """With a CUDA-like GPU, llama.cpp uploads host-resident weights for a prompt batch and runs
    their matmuls on the GPU (offload_op): prompt speed is then bound by the upload, not by the
    CPU's FLOP/s. Over an RPC worker (no offload_op) the CPU computes its share itself."""
    from gpusplit.gguf.model import read_model

    model = read_model(header_only_model("mixtral-8x7b"))
    host = Device("CPU", "CPU", "CPU", "cpu", 2**37, 2**37, source="host")
    card = Device("GPU0", "RTX 4090", "CUDA", "gpu", 24 * 2**30, 24 * 2**30, index=0, source="catalog",
                  bandwidth_bytes_per_s=1008 * GB, bandwidth_source="catalog", link_bytes_per_s=25 * GB)  # fmt: skip
    worker = card.with_(name="RPC0", backend="RPC", endpoint="10.0.0.2:50052", source="rpc")
    on_gpu = _plan(model, [card], host, n_cpu_moe=4).best.prediction
    on_rpc = _plan(model, [worker], host, n_cpu_moe=4).best.prediction
    assert on_gpu.pp_tokens_per_s > 10 * on_rpc.pp_tokens_per_s
    assert on_gpu.tg_tokens_per_s == pytest.approx(on_rpc.tg_tokens_per_s, rel=0.2)  # one token at a time: no offload


def test_offload_rate_is_what_host_weights_add_to_a_batch():
    """A local GPU's link is timed as llama.cpp uses it: the extra time of a prompt batch whose
    blocks stay in host memory (uploaded per batch), per byte of those blocks. Seen on an H200:
    bench pp512 of Llama-8B with 17 blocks on the CPU took 542 ms where all on the GPU took 62."""
    from gpusplit.jobs.probe import offload_rate

    assert offload_rate(2_220_000_000, 0.542, 0.062) == pytest.approx(4.625e9, rel=0.01)
    assert offload_rate(2_220_000_000, 0.05, 0.062) is None  # not slower: nothing to tell
    assert offload_rate(0, 0.5, 0.1) is None


def test_cpu_is_timed_on_the_big_set_beside_a_gpu(monkeypatch):
    from gpusplit.devices.inventory import Inventory
    from gpusplit.jobs.probe import LARGE, LARGE_GPU, targets

    host = Device("CPU", "CPU", "CPU", "cpu", 2**34, 2**33, source="host")
    gpu = Device("CUDA0", "GPU", "CUDA", "gpu", 2**34, 2**33, index=0, pci_bus_id="0000:01:00.0")
    found = targets(Inventory(devices=[gpu], host=host), 4, "b")
    assert [t.large for t in found] == [LARGE, LARGE_GPU]
    from dataclasses import replace

    assert replace(found[0], big=True).large is LARGE_GPU


def _contended(others_cpus: float = 0.9) -> Contention:
    """A second of measurement during which other processes kept `others_cpus` of 2 CPUs busy."""
    return Contention(1.0, others_cpus, 0.0, 2, 2)


def test_the_small_and_big_models_count_at_their_faster_round(monkeypatch):
    """The small probe models are timed first and last, the big ones' generation too; a busy moment
    during one round (here the 1-layer and the f16 model three times slower) sets neither the fixed
    costs nor the memory rate. The progress bar counts every step."""

    from gpusplit.devices.inventory import Inventory
    from gpusplit.jobs import probe

    works = _probe_works()
    truth = _speed()
    rounds: dict[str, int] = {}

    def fake_time_runs(runs, on_step=None, notes=None, failures=None):
        timings = []
        for run in runs:
            on_step(run.label, True)
            rounds[run.name] = rounds.get(run.name, 0) + 1
            work = works[run.name]
            token = truth.token_overhead_s + token_seconds(truth, work)
            if run.name in ("l1", "f16") and rounds[run.name] == 1:
                token *= 3  # busy
            batch = truth.batch_overhead_s + batch_seconds(truth, work, 512)
            timings.append(probe.Timing(token, batch if run.prompt else None, 0.01, batch * 1.5 if run.deep else None))
        return timings

    host, paths = _fake_cpu_probe(monkeypatch, works, truth, fake_time_runs)
    steps = []
    fitted = probe.probe_device(probe.Target(host, "id", on_cpu=True), paths, 2, lambda text, measured: steps.append(text))
    assert rounds["l1"] == 2 and rounds["f16"] == 2 and rounds["moe8"] == 1
    assert len(steps) == probe.step_count(Inventory(devices=[], host=host)) and "CPU: f16 again" in steps
    assert fitted.probe["l1"]["again"]["token_s"] < fitted.probe["l1"]["token_s"] / 2
    assert "batch_s" not in fitted.probe["f16"]["again"]  # the big models' second round: generation only
    assert fitted.bandwidth["float"] == pytest.approx(truth.bandwidth["float"], rel=0.05)
    assert fitted.token_overhead_s == pytest.approx(truth.token_overhead_s, rel=0.05)
    assert fitted.layer_overhead_s == pytest.approx(truth.layer_overhead_s, rel=0.05)


def test_a_disturbed_run_is_made_again_and_only_the_quiet_one_counts(monkeypatch):
    """A probe model whose run other work disturbed (the others' CPU time, not a guess from its
    speed) runs again in full and its disturbed run is dropped, not averaged: the 1-layer model's
    first round and the 8-layer MoE model's only one, three times slower. The progress bar counts
    the extra run; a note with the code `probe-remeasured` says what disturbed them."""

    from gpusplit.devices.inventory import Inventory
    from gpusplit.jobs import probe

    works = _probe_works()
    truth = _speed()
    rounds: dict[str, int] = {}
    shown: list[probe.ProbeRun] = []

    def fake_time_runs(runs, on_step=None, notes=None, failures=None):
        timings = []
        for run in runs:
            on_step(run.label, True)
            shown.append(run)
            rounds[run.name] = rounds.get(run.name, 0) + 1
            token = truth.token_overhead_s + token_seconds(truth, works[run.name])
            batch = truth.batch_overhead_s + batch_seconds(truth, works[run.name], 512)
            seen = None
            if run.name in ("l1", "moe8") and rounds[run.name] == 1:
                token, batch, seen = token * 3, batch * 3, _contended()
            timings.append(probe.Timing(token, batch if run.prompt else None, 0.01, batch * 1.5 if run.deep else None,
                                        contention=seen))  # fmt: skip
        return timings

    host, paths = _fake_cpu_probe(monkeypatch, works, truth, fake_time_runs)
    steps: list[str] = []
    more: list[int] = []
    fitted = probe.probe_device(
        probe.Target(host, "id", on_cpu=True), paths, 2, lambda text, measured: steps.append(text), more.append
    )
    assert rounds["l1"] == 2 and rounds["moe8"] == 2 and rounds["moe"] == 1
    assert more == [1] and len(steps) == probe.step_count(Inventory(devices=[], host=host)) + 1
    assert [run.prompt for run in shown if run.name == "moe8"] == [True, True]  # all its tests again
    # the disturbed runs dropped: the quiet ones' figures, not a mean with a run three times slower
    assert fitted.probe["l1"]["token_s"] == pytest.approx(truth.token_overhead_s + token_seconds(truth, works["l1"]), rel=1e-3)
    assert "again" not in fitted.probe["l1"]
    assert fitted.token_overhead_s == pytest.approx(truth.token_overhead_s, rel=0.05)
    assert fitted.expert_batch_factor == pytest.approx(truth.expert_batch_factor, rel=0.05)
    (remeasured,) = [n for n in fitted.probe["notes"] if n["code"] == "probe-remeasured"]
    assert remeasured["values"]["runs"] == 2 and "0.90 of 2 CPUs" in remeasured["text"]


def _disturbing(works, truth, model: str, disturbed: range):
    """A fake _time_runs whose `model` runs 3x slow beside other work in its runs numbered `disturbed` (from 1)."""
    from gpusplit.jobs import probe

    seen_runs: dict[str, int] = {}

    def fake_time_runs(runs, on_step=None, notes=None, failures=None):
        out = []
        for run in runs:
            seen_runs[run.name] = seen_runs.get(run.name, 0) + 1
            token = truth.token_overhead_s + token_seconds(truth, works[run.name])
            batch = truth.batch_overhead_s + batch_seconds(truth, works[run.name], 512)
            seen = None
            if run.name == model and seen_runs[run.name] in disturbed:
                token, batch, seen = token * 3, batch * 3, _contended(1.2)
            out.append(probe.Timing(token, batch if run.prompt else None, 0.01, batch * 1.5 if run.deep else None,
                                    contention=seen))  # fmt: skip
        return out

    return fake_time_runs, seen_runs


def test_a_model_disturbed_in_both_rounds_gets_a_last_try(monkeypatch):
    from gpusplit.jobs import probe

    works, truth = _probe_works(), _speed()
    fake_time_runs, seen_runs = _disturbing(works, truth, "l12", range(1, 3))
    host, paths = _fake_cpu_probe(monkeypatch, works, truth, fake_time_runs)
    more: list[int] = []
    fitted = probe.probe_device(probe.Target(host, "id", on_cpu=True), paths, 2, None, more.append)
    assert seen_runs["l12"] == 3 and more == [1]  # the third run, announced
    quiet = truth.token_overhead_s + token_seconds(truth, works["l12"])
    assert fitted.probe["l12"]["token_s"] == pytest.approx(quiet, rel=1e-3)  # the quiet run's, not 3x
    assert fitted.layer_overhead_s == pytest.approx(truth.layer_overhead_s, rel=0.05)


def test_a_model_with_one_quiet_run_keeps_it_however_its_others_went(monkeypatch):
    from gpusplit.jobs import probe

    works, truth = _probe_works(), _speed()
    fake_time_runs, seen_runs = _disturbing(works, truth, "l12", range(2, 100))  # quiet first, busy after
    host, paths = _fake_cpu_probe(monkeypatch, works, truth, fake_time_runs)
    more: list[int] = []
    fitted = probe.probe_device(probe.Target(host, "id", on_cpu=True), paths, 2, None, more.append)
    assert seen_runs["l12"] == 2 and more == []  # its second round, and no third: it has a quiet run
    quiet = truth.token_overhead_s + token_seconds(truth, works["l12"])
    assert fitted.probe["l12"]["token_s"] == pytest.approx(quiet, rel=1e-3) and "again" not in fitted.probe["l12"]


def test_a_device_disturbed_every_time_is_not_kept(monkeypatch, tmp_path):
    """A model disturbed in all three of its runs: the device's figures are not cached, and the
    inventory says what disturbed it by the code `probe-contended`; when it was the only device,
    the probe fails saying so."""

    from gpusplit.devices.inventory import Inventory
    from gpusplit.jobs import probe

    works, truth = _probe_works(), _speed()
    fake_time_runs, seen_runs = _disturbing(works, truth, "l12", range(1, 100))
    host, paths = _fake_cpu_probe(monkeypatch, works, truth, fake_time_runs)
    with pytest.raises(probe.ProbeContended, match="1.20 of 2 CPUs"):
        probe.probe_device(probe.Target(host, "id", on_cpu=True), paths, 2)
    assert seen_runs["l12"] == 3
    monkeypatch.setattr(probe, "probe_models", lambda on_step=None, gpu=False: paths)
    saved = []
    monkeypatch.setattr(probe.speed_cache, "save", lambda *args: saved.append(args))
    with pytest.raises(probe.ProbeError, match="not kept") as raised:
        probe.run_probe(Inventory(devices=[], host=host), 2, "b", tmp_path)
    assert "idle" in raised.value.render()[1] and saved == []


def test_a_worker_over_a_slow_link_is_fitted_without_its_logits_and_with_its_load_parts(monkeypatch):
    """Over 100 Mbit/s, every token a worker runs sends its logits back: a 262,144-entry vocabulary's
    megabyte takes 84 ms, which a fit read as the rows model's rows (5x their cost, and every
    prediction over the link 25-61 % slow). The probe measures the link first, takes each model's
    logits download out of its timings, and fits the loads: a fixed part, the plain bytes at the
    rate the loads ran, what a byte of a tensor over 10 MiB costs on a first load and from the
    worker's cache, and the vocabulary's part."""
    from pathlib import Path

    from gpusplit.jobs import probe

    works = _probe_works()
    vocab = {name: (262144 if name.startswith("rows") else 512) for name in works}
    # The float models' matrices go by hash (the real f16 probe model: 74 % of its bytes), the rows
    # models' output matrix (99 %); the quantized ones hold nothing over 10 MiB.
    share = {"f16": 0.74, "rows": 0.99, "rows-q8_0": 0.99, "moe": 0.9, "moe8": 0.92}
    sent = {
        name: probe.Sent(int(w.weight_bytes), int(w.weight_bytes * share.get(name, 0)), 12 if name in share else 0)
        for name, w in works.items()
    }
    truth = _speed(row_overhead_s={"float": 2e-9, "quant": 3e-9}, cache_bytes=0)
    down, up, rtt = 12.5e6, 11e6, 0.02
    load_fixed, per_vocab, host_hash, store, read, disk = 0.3, 2e-6, 1e-9, 4e-9, 0.7e-9, 200e6
    worker = {"caches": True, "held": False, "cold": False}

    seen: set[str] = set()  # the models the worker has loaded (its cache, the file's pages) in this fit

    def fake_time_runs(runs, on_step=None, notes=None, failures=None):
        out = []
        for run in runs:
            work, logits, s = works[run.name], vocab[run.name] * 4 / down, sent[run.name]
            token = rtt + truth.token_overhead_s + token_seconds(truth, work) + logits
            batch = rtt + truth.batch_overhead_s + batch_seconds(truth, work, 512) + logits
            if worker["held"] or (worker["caches"] and run.name in seen):
                hashed = host_hash + read  # from the worker's cache
            else:
                hashed = host_hash + 1 / up + (store if worker["caches"] else 0.0)
            load = load_fixed + vocab[run.name] * per_vocab + s.n_hashed * rtt + s.plain / up + s.hashed * hashed
            if worker["cold"] and run.name not in seen:
                load += s.total / disk  # the model file read from disk the first time
            seen.add(run.name)
            out.append(probe.Timing(token, batch if run.prompt else None, load, batch * 1.5 if run.deep else None))
        return out

    monkeypatch.setattr(probe, "_time_runs", fake_time_runs)
    monkeypatch.setattr(probe, "_work", lambda path, copies=(), level="none": works[Path(path).stem])
    monkeypatch.setattr(probe, "_vocab", lambda path: vocab[Path(path).stem])
    monkeypatch.setattr(probe, "_sent", lambda path: sent[Path(path).stem])
    monkeypatch.setattr(probe, "_round_trip", lambda endpoint: rtt)
    monkeypatch.setattr(probe, "_link_rates", lambda endpoint, raw: (up, down))
    device = Device("RPC0", "worker", "RPC", "gpu", 2**34, 2**33, index=0, source="rpc", endpoint="10.0.0.7:50052")
    paths = {name: Path(f"{name}.gguf") for name in works}

    def fit():
        seen.clear()
        return probe.probe_device(probe.Target(device, "id", rpc=("10.0.0.7:50052",)), paths, 1)

    # A worker with a weight cache, empty at the start: its second round's large tensors came from it.
    fitted = fit()
    assert fitted.rtt_s == rtt and fitted.download_bytes_per_s == down
    # the rows' own cost, not the logits' download (which alone would read as 84 ms / 262,144 = 320 ns a row)
    assert fitted.row_overhead_s["float"] == pytest.approx(2e-9, abs=1e-9)
    assert fitted.token_overhead_s == pytest.approx(rtt + truth.token_overhead_s, rel=0.05)
    assert fitted.link_bytes_per_s == pytest.approx(up, rel=0.01)
    assert fitted.load_fixed_s == pytest.approx(load_fixed + 512 * per_vocab, rel=0.01)
    assert fitted.load_per_vocab_s == pytest.approx(per_vocab, rel=0.01)
    assert fitted.load_hashed_s_per_byte == pytest.approx(1 / up + host_hash + store, rel=0.01)
    assert fitted.load_cached_s_per_byte == pytest.approx(host_hash + read, rel=0.01)
    # One whose cache held the models before the probe: large tensors faster than the link can carry
    # them; a first load then at the link's rate (its store not seen), said in a note.
    worker["held"] = True
    held = fit()
    assert held.link_bytes_per_s == pytest.approx(up, rel=0.01)
    assert held.load_cached_s_per_byte == pytest.approx(host_hash + read, rel=0.01)
    assert held.load_hashed_s_per_byte == pytest.approx(1 / up + host_hash + read, rel=0.01)
    assert [note["code"] for note in held.probe["notes"]] == ["cache-warm"]
    # No cache, and each model's first load read its file cold: the cold read is no cache's store;
    # a load from a cache (were one started) is the host's hash and a disk read.
    worker.update(caches=False, held=False, cold=True)
    cold = fit()
    assert cold.link_bytes_per_s == pytest.approx(up, rel=0.01)
    assert cold.load_fixed_s == pytest.approx(load_fixed + 512 * per_vocab, rel=0.01)
    assert cold.load_hashed_s_per_byte == pytest.approx(1 / up + host_hash, rel=0.02)
    assert cold.load_cached_s_per_byte == pytest.approx(host_hash + 1 / 1.5e9, rel=0.02)
    assert "cache-warm" not in [note["code"] for note in cold.probe.get("notes", [])]


def test_the_probe_measures_a_device_from_what_ran(monkeypatch):
    """A probe model that fails (llama.cpp crashed on it, even with --no-repack) leaves its weight
    class unmeasured, taken at the float rates and said so; the rest is fitted as usual. Without the
    small or the float models a device cannot be measured: that device is left out, the others go on."""
    from pathlib import Path

    from gpusplit.devices.inventory import Inventory
    from gpusplit.jobs import probe

    works = _probe_works()
    truth = _speed()
    failing = {"q8_0", "moe8"}

    def fake_time_runs(runs, on_step=None, notes=None, failures=None):
        out = []
        for run in runs:
            if run.name in failing:
                failure = f"{run.label}: not measured (the llama.cpp engine process failed: it crashed)"
                notes.append(Reason("run-failed", failure, {"run": run.label, "model": run.name}))
                failures.append(failure)
                out.append(None)
                continue
            work = works[run.name]
            token = truth.token_overhead_s + token_seconds(truth, work)
            batch = truth.batch_overhead_s + batch_seconds(truth, work, 512)
            out.append(probe.Timing(token, batch if run.prompt else None, 0.01, batch * 1.5 if run.deep else None))
        return out

    host, paths = _fake_cpu_probe(monkeypatch, works, truth, fake_time_runs)
    fitted = probe.probe_device(probe.Target(host, "id", on_cpu=True), paths, 2)
    assert fitted.unmeasured == ["q8"]
    from gpusplit.devices.speed import rate_of

    assert "q8" not in fitted.bandwidth  # read at the nearest measured class's rates: float's
    assert rate_of(fitted.bandwidth, "q8") == fitted.bandwidth["float"] and rate_of(fitted.flops, "q8") == fitted.flops["float"]
    assert fitted.bandwidth["kquant"] == pytest.approx(truth.bandwidth["kquant"], rel=0.05)  # measured as ever
    assert "q8_0" in [note["values"]["model"] for note in fitted.probe["notes"] if note["code"] == "run-failed"]
    failing.add("f16")
    with pytest.raises(probe.ProbeError, match="could not be measured"):
        probe.probe_device(probe.Target(host, "id", on_cpu=True), paths, 2)

    # run_probe: the device that cannot be measured is left out and named; the others are measured
    worker = Device("RPC0", "worker", "RPC", "gpu", 2**34, 2**33, index=0, endpoint="127.0.0.1:1")
    measured = []

    def fake_probe_device(target, paths, threads, on_step=None, on_more=None):
        if target.on_cpu:
            raise probe.ProbeError("CPU could not be measured: CPU: f16: not measured")
        measured.append(target.device.name)
        return truth

    monkeypatch.setattr(probe, "probe_device", fake_probe_device)
    monkeypatch.setattr(probe, "probe_models", lambda on_step=None, gpu=False: paths)
    monkeypatch.setattr(probe, "probe_group", lambda *args: None)
    monkeypatch.setattr(probe.speed_cache, "save", lambda *args: None)
    monkeypatch.setattr("gpusplit.engine.detect.attach_speeds", lambda inventory, *args: inventory)
    inventory = probe.run_probe(Inventory(devices=[worker], host=host), 2, "b", Path("."))
    assert measured == ["RPC0"] and [n.code for n in inventory.notes if n.code == "probe"] == [
        "probe",
        "probe",
    ]  # failed, then done
    with pytest.raises(probe.ProbeError, match="CPU could not be measured"):  # nothing measured: a failure (exit 1)
        probe.run_probe(Inventory(devices=[], host=host), 2, "b", Path("."))


def test_a_tied_output_is_read_per_token_and_the_parts_add_up(header_only_model):
    """Gemma-3-270M's tied embeddings (170 MiB of Q8_0) are its output matrix: read for every
    generated token, once per prompt batch. The prediction's parts add up to its seconds per token,
    and say that the output, not the layers, is where Gemma's token goes."""
    import gpusplit
    from gpusplit.devices.inventory import Inventory, host_device
    from gpusplit.planning.memory import Placement, Settings, plan_memory

    path = header_only_model("gemma-3-270m")
    model = gpusplit.read_model(path)
    memory = plan_memory(model, [], [], [], Settings(n_ctx=512), Placement(n_gpu_layers=0))
    work = placement_work(model, memory)[None]
    (embd,) = [t for t in model.input.tensors if t.name == "token_embd.weight"]
    assert sum(work.once_bytes.values()) == embd.n_bytes and embd.n_bytes > 160 * MIB
    assert work.read_bytes > embd.n_bytes  # the layers' weights besides
    p = gpusplit.plan(path, Inventory(devices=[], host=host_device()), Request(n_ctx=512)).best.prediction
    cpu = p.parts["devices"]["CPU"]
    assert p.parts["fixed"] + p.parts["links"] + p.parts["sync"] + sum(cpu.values()) == pytest.approx(p.seconds_per_token)
    assert cpu["output"] > cpu["weights"]


def test_run_predicts_its_sampling_beside_the_decode(header_only_model):
    """`run` samples every generated token greedily over the vocabulary on the host: the probe's
    figures (a fixed part and one per entry) price it, on top of the decode llama-bench's tg times."""
    import gpusplit
    from gpusplit.devices.inventory import Inventory, host_device
    from gpusplit.documents.render import run_document
    from gpusplit.jobs.runner import RunResult, Timings

    host = host_device().with_(speed=_speed(sample_fixed_s=2e-6, sample_per_vocab_s=1e-9))
    plan = gpusplit.plan(header_only_model("gemma-3-270m"), Inventory(devices=[], host=host), Request(n_ctx=512))
    p = plan.best.prediction
    assert p.sample_s == pytest.approx(2e-6 + 262144 * 1e-9)
    doc = run_document(RunResult(plan, "", Timings(1.0, 4, 100.0, 8, 50.0, 1.0), {}))
    assert doc["predicted"]["gen_tps"] == pytest.approx(1 / (1 / p.tg_tokens_per_s + p.sample_s), rel=1e-3)


def test_a_load_over_a_link_is_its_fixed_part_and_its_bytes(header_only_model):
    """Loading sends each RPC worker the weights it holds: the worker's measured fixed part of a load
    (allocations and graph reservation over the link) plus the bytes at the link's rate, one worker
    after another; a local device receives nothing over a link."""
    import gpusplit
    from gpusplit.devices.inventory import Inventory, host_device

    def worker(name: str, index: int, endpoint: str, fixed: float, rate: float) -> Device:
        return Device(name, endpoint, "RPC", "gpu", 64 * 2**30, 64 * 2**30, index=index, source="rpc", endpoint=endpoint,
                      speed=_speed(load_fixed_s=fixed, link_bytes_per_s=rate, rtt_s=0.02))  # fmt: skip

    devices = [worker("RPC0", 0, "10.0.0.7:50052", 0.8, 12.5e6), worker("RPC1", 1, "10.0.0.8:50052", 0.3, 125e6)]
    path = header_only_model("llama-3.1-8b")
    plan = gpusplit.plan(path, Inventory(devices=devices, host=host_device()), Request(tensor_split=(1.0, 1.0)))
    load = plan.best.prediction.load
    model = gpusplit.read_model(path)
    for device, memory in zip(devices, plan.best.memory.devices):
        nbytes, seconds = load[device.name]
        assert nbytes == memory.weights_bytes > 0
        # each tensor over 10 MiB is first offered by hash: a round trip (the FFN's 3 of a Q4_K_M
        # Llama-3.1-8B block's 9; attn_q's 9.4 MB go without)
        held = [il for il, dev in enumerate(plan.best.memory.layer_device[:-1]) if dev == device.index]
        hashed = sum(1 for il in held for t in model.blocks[il].tensors if t.n_bytes > 10 * 2**20)
        hashed += sum(1 for t in model.output.tensors if t.n_bytes > 10 * 2**20) if device.index == 1 else 0
        assert hashed == 3 * len(held) + (device.index == 1)
        assert seconds == pytest.approx(device.speed.load_fixed_s + hashed * 0.02 + nbytes / device.speed.link_bytes_per_s)
    # The vocabulary's part of a load (the host's tokenizer, the logits buffers) goes to the worker
    # holding the output: the last one.
    from dataclasses import replace

    vocab_priced = [d.with_(speed=replace(d.speed, load_per_vocab_s=2e-6)) for d in devices]
    priced = gpusplit.plan(
        path, Inventory(devices=vocab_priced, host=host_device()), Request(tensor_split=(1.0, 1.0))
    ).best.prediction.load
    assert priced["RPC0"] == load["RPC0"]
    assert priced["RPC1"][1] == pytest.approx(load["RPC1"][1] + 128256 * 2e-6)
    assert plan.best.prediction.load_s == pytest.approx(sum(s for _, s in load.values()))
    # Where the probe timed a large tensor's byte (hashed here, sent, stored by a caching worker;
    # and from its cache), those bytes cost that instead of the link's rate, the rest as before.
    timed = [d.with_(speed=replace(d.speed, load_hashed_s_per_byte=2e-7, load_cached_s_per_byte=3e-9)) for d in devices]
    hashed_plan = gpusplit.plan(
        path, Inventory(devices=timed, host=host_device()), Request(tensor_split=(1.0, 1.0))
    ).best.prediction
    for device, memory in zip(devices, plan.best.memory.devices):
        held = [il for il, dev in enumerate(plan.best.memory.layer_device[:-1]) if dev == device.index]
        tensors = [t.n_bytes for il in held for t in model.blocks[il].tensors]
        tensors += [t.n_bytes for t in model.output.tensors] if device.index == 1 else []
        big = sum(n for n in tensors if n > 10 * 2**20) / sum(tensors) * memory.weights_bytes
        rest = load[device.name][1] - memory.weights_bytes / device.speed.link_bytes_per_s
        plain = (memory.weights_bytes - big) / device.speed.link_bytes_per_s
        assert hashed_plan.load[device.name][1] == pytest.approx(rest + plain + big * 2e-7)
        assert hashed_plan.load_cached[device.name] == pytest.approx(rest + plain + big * 3e-9)


def test_a_split_over_a_slow_link_is_ranked_with_its_link_and_the_reason_says_so(header_only_model):
    """A worker 20 ms and 100 Mbit/s away: every token pays the round trip and its logits over the
    link. The CPU here is ranked first on that prediction, and the plan says what the worker would
    have cost; a plan put on the worker says what share of its token the link takes."""
    import gpusplit
    from gpusplit.devices.inventory import Inventory, host_device

    link = {"rtt_s": 0.02, "link_bytes_per_s": 12.5e6, "download_bytes_per_s": 12.5e6}
    fast = _speed(token_overhead_s=0.02 + 80e-6, **link)  # the same machine's speed, over the link
    worker = Device("RPC0", "10.0.0.7:50052", "RPC", "gpu", 64 * 2**30, 64 * 2**30, index=0, source="rpc",
                    endpoint="10.0.0.7:50052", speed=fast)  # fmt: skip
    inventory = Inventory(devices=[worker], host=host_device().with_(speed=_speed()))
    path = header_only_model("smollm2-135m")
    plan = gpusplit.plan(path, inventory, Request(n_ctx=512))
    assert plan.best.strategy == "cpu-only"
    over = next(c for c in plan.alternatives if c.strategy == "single-gpu")
    logits_s = 49152 * 4 / 12.5e6
    assert 1 / over.prediction.tg_tokens_per_s > 0.02 + logits_s  # the round trip and the logits, at least
    # the round trip, the logits back and the token's activations out (576 floats: 0.2 ms)
    link_ms = (0.02 + logits_s + 576 * 4 / 12.5e6) * 1e3
    (reason,) = [r for r in plan.reasons if r.code == "link-avoided"]
    assert reason.values["workers"] == ["RPC0"] and reason.values["link_s"] * 1e3 == pytest.approx(link_ms, abs=0.05)
    forced = gpusplit.plan(path, inventory, Request(n_ctx=512, split_mode="none"))
    (reason,) = [r for r in forced.reasons if r.code == "link-cost"]
    assert reason.values["link_s"] * 1e3 == pytest.approx(link_ms, abs=0.05)
    assert reason.values["token_s"] == pytest.approx(1 / forced.best.prediction.tg_tokens_per_s, rel=1e-6)


def test_tensor_parallelism_over_a_slow_link_is_never_first(header_only_model):
    """Two workers across a 1 GbE link: tensor parallelism would pay two all-reduces per layer over
    it. The planner does not offer it unless asked, and asked for, its prediction pays for them."""
    import gpusplit
    from gpusplit.devices.inventory import Inventory, host_device

    link = {"rtt_s": 3e-4, "link_bytes_per_s": 117e6, "download_bytes_per_s": 117e6}
    workers = [
        Device(f"RPC{i}", f"10.0.0.{7 + i}:50052", "RPC", "gpu", 64 * 2**30, 64 * 2**30, index=i, source="rpc",
               endpoint=f"10.0.0.{7 + i}:50052", speed=_speed(token_overhead_s=3e-4 + 80e-6, **link))
        for i in range(2)
    ]  # fmt: skip
    inventory = Inventory(devices=workers, host=host_device().with_(speed=_speed()))
    path = header_only_model("llama-3.2-1b")
    plan = gpusplit.plan(path, inventory, Request(n_ctx=2048))
    assert all(c.strategy != "tensor-split" for c in [plan.best, *plan.alternatives])
    tensor = gpusplit.plan(path, inventory, Request(n_ctx=2048, split_mode="tensor"))
    layer = gpusplit.plan(path, inventory, Request(n_ctx=2048, split_mode="layer"))
    assert tensor.best.prediction.parts["sync"] > 16 * 2 * 3e-4  # 16 layers, two round trips each at least
    assert tensor.best.prediction.tg_tokens_per_s < layer.best.prediction.tg_tokens_per_s
