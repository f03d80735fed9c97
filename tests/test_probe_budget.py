"""The probe's budget (issue 36: the CPU and two workers in a minute): a test stops repeating once
its figure is tight, and a CPU times its quantized classes on 128-token batches (a GPU on 512)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpusplit.devices.device import Device
from gpusplit.devices.speed import COPIED, DeviceSpeed
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
    assert (first.repetitions, second.repetitions, redo.repetitions) == (2, 2, 2)  # generation: both rounds alike
    assert first.prompt and not second.prompt and redo.prompt  # a batch is compute: timed once
    assert not probe._probe_run(target, paths, 2, "l12", again=True).prompt
    assert "rows" not in probe._run_twice(target) and "l12" in probe._run_twice(target)


def _cpu_target(extra_buffers: tuple[str, ...] = ()) -> probe.Target:
    host = Device("CPU", "CPU", "CPU", "cpu", 2**34, 2**33, source="host")
    return probe.Target(host, "id", on_cpu=True, extra_buffers=extra_buffers, repack_level="avx2" if extra_buffers else "none")


def test_the_q4_k_m_batch_on_a_cpu_is_timed_at_full_size_too_warmed_by_a_short_one():
    target = _cpu_target()
    paths = {name: probe.model_folder() / f"{name}.gguf" for name in ("q4_k_m", "q4_0", "f16")}
    tests = {t["name"]: t for t in probe._probe_run(target, paths, 2, "q4_k_m").tests()}
    assert tests["pp"]["n"] == probe.QUANT_BATCH_TOKENS
    assert tests["pp_full"]["n"] == probe.BATCH_TOKENS and tests["pp_full"]["warm_up_n"] == probe.QUANT_BATCH_TOKENS
    # a disturbed run made again in full times it again; a second round (generation) does not
    assert "pp_full" in {t["name"] for t in probe._probe_run(target, paths, 2, "q4_k_m", again=True, full=True).tests()}
    assert {t["name"] for t in probe._probe_run(target, paths, 2, "q4_k_m", again=True).tests()} == {"tg"}
    # the other classes, and the float model already at full size, do not
    assert "pp_full" not in {t["name"] for t in probe._probe_run(target, paths, 2, "q4_0").tests()}
    assert "pp_full" not in {t["name"] for t in probe._probe_run(target, paths, 2, "f16").tests()}
    gpu = Device("CUDA0", "GPU", "CUDA", "gpu", 2**34, 2**33, index=0, pci_bus_id="0000:01:00.0")
    on_gpu = probe.Target(gpu, "id")
    name = on_gpu.large["kquant"]
    assert "pp_full" not in {t["name"] for t in probe._probe_run(on_gpu, {name: paths["q4_k_m"]}, 2, name).tests()}


def _speed(flops: dict[str, float]) -> DeviceSpeed:
    return DeviceSpeed(1e-3, 1e-4, {"float": 1e10}, 4e10, 2**25, 1e-3, 1e-4, flops)


def test_classes_timed_on_short_batches_are_scaled_by_what_the_q4_k_m_model_ran_at_full_size():
    target = _cpu_target()
    short = _speed({"float": 100e9, "kquant": 80e9, "legacy": 60e9, "q8": 90e9})
    full = _speed({"float": 100e9, "kquant": 72e9, "legacy": 61e9, "q8": 91e9})  # kquant 10 % slower at 512
    raw: dict = {}
    scaled = probe.scaled_to_full_batches(target, short, full, raw)
    assert raw["full_batch_scale"] == 0.9
    assert scaled.flops["kquant"] == 72e9
    assert scaled.flops["legacy"] == 54e9 and scaled.flops["q8"] == 81e9  # scaled by the same, not taken from `full`
    assert scaled.flops["float"] == 100e9  # timed at full size: as it was


def test_where_the_cpu_copies_q4_k_m_the_copies_class_sets_the_ratio_and_plain_runs_are_scaled_too():
    target = _cpu_target(("CPU_REPACK",))
    classes = target.fit_classes()
    assert classes.get("kquant" + COPIED) == "q4_k_m" and classes["kquant"] == "q4_k_m" + probe.PLAIN
    short = _speed({"float": 100e9, "kquant" + COPIED: 120e9, "kquant": 80e9, "legacy": 60e9})
    full = _speed({"float": 100e9, "kquant" + COPIED: 108e9, "kquant": 80e9, "legacy": 60e9})
    scaled = probe.scaled_to_full_batches(target, short, full, {})
    assert scaled.flops["kquant" + COPIED] == 108e9 and scaled.flops["kquant"] == 72e9


def test_a_ratio_out_of_bounds_is_held_at_the_bound_and_no_full_batch_changes_nothing():
    target = _cpu_target()
    short = _speed({"float": 100e9, "kquant": 80e9, "legacy": 60e9})
    raw: dict = {}
    scaled = probe.scaled_to_full_batches(target, short, _speed({"float": 100e9, "kquant": 8e9, "legacy": 60e9}), raw)
    assert raw["full_batch_scale"] == probe.FULL_BATCH_SCALE[0] and scaled.flops["legacy"] == 30e9
    assert probe.scaled_to_full_batches(target, short, _speed({"float": 100e9}), {}) is short


def test_the_model_timed_at_two_sizes_times_each_batch_twice():
    target = _cpu_target()
    paths = {name: probe.model_folder() / f"{name}.gguf" for name in ("q4_k_m", "q4_0")}
    tests = {t["name"]: t for t in probe._probe_run(target, paths, 2, "q4_k_m").tests()}
    assert tests["pp"]["repetitions"] == tests["pp_full"]["repetitions"] == 2
    assert probe._probe_run(target, paths, 2, "q4_0").tests()[1]["repetitions"] == 1


def test_the_q4_k_m_model_is_loaded_once_more_for_sequences_decoded_together():
    target = _cpu_target()
    name = "q4_k_m" + probe.PARALLEL
    assert name in probe._first_names(target)
    run = probe._probe_run(target, {"q4_k_m": probe.model_folder() / "q4_k_m.gguf"}, 2, name)
    assert run.params.n_seq_max == max(probe.PARALLEL_SEQS) and not run.prompt
    tests = {t["name"]: t for t in run.tests()}
    assert set(tests) == {"tg", "tg_par4", "tg_par8"}  # one sequence's tokens beside them: the same moment
    assert tests["tg_par8"]["parallel"] == 8 and tests["tg_par4"]["n"] == probe.PARALLEL_STEPS


def test_what_a_sequence_adds_is_a_share_of_the_tokens_compute_less_each_ones_logits(monkeypatch):
    target = _cpu_target()
    monkeypatch.setattr(probe, "_work", lambda *args, **kwargs: None)
    monkeypatch.setattr(probe, "token_parts", lambda *args: {"weights": 0.006, "output": 0.001, "rows": 0.001, "kv": 0.0})
    monkeypatch.setattr(probe, "_vocab", lambda path: 1000)
    name = "q4_k_m" + probe.PARALLEL
    run = probe._probe_run(target, {"q4_k_m": Path("q4_k_m.gguf")}, 2, name)
    timed = probe.Timing(0.010, None, 0.1, parallel_step_s={4: 0.034, 8: 0.054})
    raw: dict = {}
    fitted = _speed({"float": 1e11})
    share = probe._seq_extra_share(target, [run], [timed], fitted, {"q4_k_m": Path("q4_k_m.gguf")}, None, raw)
    assert share == pytest.approx(((0.034 - 0.010) / (3 * 0.008), (0.054 - 0.034) / (4 * 0.008)))
    assert raw["parallel"]["share"] == [1.0, 0.625]
    # over a link each sequence's logits come back: 4,000 bytes at 1 MB/s, 4 ms each, not the step's compute
    worker = probe._seq_extra_share(target, [run], [timed], fitted, {"q4_k_m": Path("q4_k_m.gguf")}, 1e6, {})
    assert worker == pytest.approx(((0.034 - 0.016 - 0.006) / (3 * 0.008), (0.054 - 0.032 - 0.018) / (4 * 0.008)))
    # a parallel run that failed, or timed one count only: not measured
    assert probe._seq_extra_share(target, [run], [None], fitted, {}, None, {}) is None
    half = probe.Timing(0.010, None, 0.1, parallel_step_s={4: 0.034})
    assert probe._seq_extra_share(target, [run], [half], fitted, {}, None, {}) is None
