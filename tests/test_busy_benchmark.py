"""benchmarks/busy.py's figures and verdicts, from fixed numbers worked by hand (the script itself
runs gpusplit for minutes; its lead runs it)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from records import bench_record
from test_docs import PROVENANCE

from gpusplit.base.contention import ENV

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "busy.py"
_spec = importlib.util.spec_from_file_location("busy_benchmark", _PATH)
assert _spec is not None and _spec.loader is not None
busy = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = busy  # its dataclasses look their module up
_spec.loader.exec_module(busy)


def test_spread_is_fastest_over_slowest_and_the_coefficient_of_variation():
    s = busy.spread([100.0, 110.0, 105.0])  # mean 105, stdev 5
    assert (s["low"], s["high"], s["n"]) == (100.0, 110.0, 3)
    assert s["spread_pct"] == pytest.approx(10.0)
    assert s["cv_pct"] == pytest.approx(100 * 5 / 105)
    assert busy.spread([100.0]) is None


def test_twenty_gates_split_ten_runs_into_disjoint_halves_the_same_way_every_time():
    splits = busy.gate_splits(10)
    assert len(splits) == 20 and len(set(splits)) == 20
    assert all(len(a) == len(b) == 5 and not set(a) & set(b) for a, b in splits)
    assert splits == busy.gate_splits(10)  # a rerun judges the same splits
    # four runs, two a side: A={0,1} has one B={2,3}, and so on: 6 ordered splits, all taken
    assert sorted(busy.gate_splits(4, per_side=2)) == [
        ((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2)), ((1, 2), (0, 3)), ((1, 3), (0, 2)), ((2, 3), (0, 1))]  # fmt: skip


def test_the_sweep_fires_only_where_every_run_of_b_is_slower(tmp_path):
    files = []
    for i, mean in enumerate([100.0, 100.0, 50.0, 50.0]):  # runs 3 and 4 at half the speed
        samples = [mean * 0.99, mean, mean * 1.01]
        path = tmp_path / f"run{i}.jsonl"
        path.write_text(json.dumps(bench_record(test="tg4", samples_ts=samples, avg_ts=mean, repetitions=3)) + "\n")
        files.append(path)
    swept = busy.sweep(files, pcts=(5.0, 60.0), per_side=2)
    # of the six splits only {1,2} -> {3,4} is slower beyond its noise (the mixed sides span 50..100)
    assert swept == {"splits": 6, "fired": [{"pct": 5.0, "fired": 1}, {"pct": 60.0, "fired": 0}]}


def test_contention_is_found_anywhere_and_absent_fields_say_so():
    quiet = {"test": "tg16", "contention": {"contended": False, "others_cpus": 0.1}}
    busy_one = {"test": "pp64", "contention": {"contended": True, "others_cpus": 0.9}}
    seen = busy.seen_in([[quiet, busy_one]])
    assert seen.present and seen.noticed and seen.others_cpus == 0.9
    assert not busy.seen_in([quiet]).noticed
    missing = busy.seen_in([{"test": "tg16", "samples_ts": [1.0]}])
    assert not missing.present and not missing.noticed
    probe = busy.seen_in([{"notes": [{"code": "probe"}, {"code": "probe-remeasured", "text": "..."}]}])
    assert probe.noticed and probe.codes == ["probe-remeasured"]


def test_a_record_without_the_new_fields_gets_its_mean_from_the_samples_and_not_found():
    old = {"status": "ok", "test": "tg16", "samples_ts": [10.0, 20.0, 30.0]}
    f = busy.run_figures([old])["tg16"]
    assert f["mean"] == 20.0 and f["mean_from"] == "samples_ts"
    assert f["interval"] == f["outliers"] == f["contended"] == busy.NOT_FOUND
    new = dict(old, mean_ts=21.0, interval_ts=[15.0, 27.0], outliers_ts=[], contention=None)
    f = busy.run_figures([new])["tg16"]
    assert (f["mean"], f["interval"], f["outliers"], f["contended"]) == (21.0, [15.0, 27.0], 0, False)


def _gate(fired: bool) -> dict:
    return {"a_runs": [1, 2], "b_runs": [3, 4], "rc": 4 if fired else 0, "fired": fired, "rows": []}


def test_the_gates_verdict_needs_no_identical_gate_and_every_half_thread_gate_to_fire():
    section = {"pct": 10.0, "per_side": 5, "threads": 2, "half_threads": 1}
    half = {"bench_exits": [0] * 10}
    good = dict(section, identical=[_gate(False)] * 20, half=[{**half, **_gate(True)}] * 3)
    assert busy.render_gates(good)[1].startswith("gates met: 0 of 20")
    one_fired = dict(good, identical=[_gate(True)] + [_gate(False)] * 19)
    assert busy.render_gates(one_fired)[1].startswith("gates NOT met: 1 of 20")
    missed = dict(good, half=[{**half, **_gate(True)}, {**half, **_gate(False)}])
    assert "NOT met" in busy.render_gates(missed)[1]


def test_the_probe_verdict_holds_every_run_with_workers_to_sixty_seconds():
    def section(*seconds: float) -> dict:
        return {"cpu": [], "workers": [{"seconds": s, "rc": 0} for s in seconds], "untimed_first": True, "target_s": 60.0}

    assert busy.render_probe(section(41.0, 59.5))[1].startswith("probe time met")
    assert busy.render_probe(section(41.0, 61.0))[1].startswith("probe time NOT met")


def test_a_probe_that_refused_its_figures_counts_as_noticing(tmp_path):
    log = tmp_path / "p.log"
    log.write_text(f"gpusplit: probing [3/20] CPU\ngpusplit: error: CPU: not kept (set {ENV}=ignore to keep such figures)\n")
    assert busy.probe_refused(busy.Ran(1, 9.0, tmp_path / "p.out", log))
    assert not busy.probe_refused(busy.Ran(0, 9.0, tmp_path / "p.out", log))
    log.write_text("gpusplit: error: CPU could not be measured: q4_0 failed\n")
    assert not busy.probe_refused(busy.Ran(1, 9.0, tmp_path / "p.out", log))


def test_the_doc_opens_with_the_provenance_line_the_docs_check_reads():
    head = {"command": "python benchmarks/busy.py", "commit": "d5b3058+changes", "date": "2026-12-07 12:00 UTC",
            "machine": {"cpu": "AMD EPYC", "cores": 2, "amx_int8": False}, "model": "demo", "quick": False}  # fmt: skip
    probe = {"cpu": [], "workers": [{"seconds": 50.0, "rc": 0}], "untimed_first": True, "target_s": 60.0}
    text = busy.render({"head": head, "probe": {**probe, **{k: head[k] for k in ("command", "commit", "date")}}})
    match = PROVENANCE.search(" ".join(text.splitlines()[:12]))
    assert match and match["command"] == "python benchmarks/busy.py" and match["machine"] == "AMD"
    assert "- probe time met" in text and "Measured on" not in text  # measured by the doc's own command
    earlier = {**probe, "command": "python benchmarks/busy.py --only probe", "commit": "d5b3058", "date": "2026-12-06"}
    assert "Measured on 2026-12-06 by `python benchmarks/busy.py --only probe`" in busy.render({"head": head, "probe": earlier})


def test_spread_of_equal_means_is_zero_not_a_division_error():
    s = busy.spread([50.0, 50.0])
    assert s["spread_pct"] == 0.0 and s["cv_pct"] == 0.0 and not math.isnan(s["cv_pct"])


def test_a_side_joins_its_runs_without_the_line_a_killed_bench_cut_short(tmp_path):
    whole, killed = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    whole.write_text('{"run": 1}\n')
    killed.write_text('{"run": 2}\n{"run": 2, "cut')  # a timeout killed it mid-line
    side = busy.joined([killed, whole], tmp_path / "side.jsonl")
    assert side.read_text() == '{"run": 2}\n{"run": 1}\n'
