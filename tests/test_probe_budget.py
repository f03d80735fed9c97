"""The probe's budget (issue 36: the CPU and two workers in a minute): a test stops repeating once
its figure is tight, and a CPU times its quantized classes on 128-token batches (a GPU on 512)."""

from __future__ import annotations

from gpusplit.devices.device import Device
from gpusplit.engine.tasks import _tight
from gpusplit.jobs import probe

TIGHT = {"min_repetitions": 3, "tight_pct": 3.0}


def test_a_test_stops_once_its_interval_is_tight_and_not_before_its_minimum():
    agreeing = [100.0, 100.5, 99.8]
    assert _tight(TIGHT, agreeing, 5)  # three within half a percent: enough
    assert not _tight(TIGHT, agreeing[:2], 5)  # two: below the minimum, however close
    assert not _tight(TIGHT, [100.0, 112.0, 95.0], 5)  # 17 % apart: its interval is wide
    assert not _tight({}, agreeing, 5)  # a test that does not ask: all its repetitions
    assert not _tight(TIGHT, agreeing, 3)  # the last one runs anyway: nothing to stop


def test_the_rule_rides_on_the_small_models_generation_only():
    host = Device("CPU", "CPU", "CPU", "cpu", 2**34, 2**33, source="host")
    target = probe.Target(host, "id", on_cpu=True)
    paths = {name: probe.model_folder() / f"{name}.gguf" for name in ("l12", "f16")}
    small = probe._probe_run(target, paths, 2, "l12").tests()
    big = probe._probe_run(target, paths, 2, "f16").tests()
    assert small[0]["tight_pct"] == probe.TIGHT_PCT and "tight_pct" not in small[1]  # tg, not pp
    assert "tight_pct" not in big[0]  # two repetitions: nothing to cut


def test_a_cpu_times_its_quantized_classes_on_shorter_batches():
    host = Device("CPU", "CPU", "CPU", "cpu", 2**34, 2**33, source="host")
    cpu = probe.Target(host, "id", on_cpu=True)
    assert cpu.batch_tokens("q4_k_m") == cpu.batch_tokens("q4_0:plain") == probe.QUANT_BATCH_TOKENS == 128
    assert cpu.batch_tokens("f16") == cpu.batch_tokens("l12") == cpu.batch_tokens("wide2") == 512
    assert cpu.batch_tokens("moe") == cpu.batch_tokens("moe8-q4_k_m") == probe.MOE_BATCH_TOKENS == 256
    worker = Device("RPC0", "worker", "RPC", "cpu", 2**34, 2**33, index=0, endpoint="127.0.0.1:1")
    assert probe.Target(worker, "id", rpc=("127.0.0.1:1",)).batch_tokens("q6_k") == 128
    gpu = Device("CUDA0", "GPU", "CUDA", "gpu", 2**34, 2**33, index=0, pci_bus_id="0000:01:00.0")
    on_gpu = probe.Target(gpu, "id")
    assert on_gpu.batch_tokens(on_gpu.large["kquant"]) == 512  # a GPU's kernels fill up on big batches
    remote_gpu = probe.Target(worker, "id", rpc=("127.0.0.1:1",), big=True)
    assert remote_gpu.batch_tokens(remote_gpu.large["kquant"]) == 512


def test_a_second_round_samples_a_moment_and_a_disturbed_run_is_made_again_in_full():
    host = Device("CPU", "CPU", "CPU", "cpu", 2**34, 2**33, source="host")
    target = probe.Target(host, "id", on_cpu=True)
    paths = {name: probe.model_folder() / f"{name}.gguf" for name in ("l12", "f16")}
    first, second = (probe._probe_run(target, paths, 2, "f16", again=again) for again in (False, True))
    redo = probe._probe_run(target, paths, 2, "f16", again=True, full=True)
    assert (first.repetitions, second.repetitions, redo.repetitions) == (2, 1, 2)
    assert first.prompt and not second.prompt and redo.prompt  # a batch is compute: timed once
    assert not probe._probe_run(target, paths, 2, "l12", again=True).prompt
    assert "rows" not in probe._run_twice(target) and "l12" in probe._run_twice(target)
