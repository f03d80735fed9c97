"""Every measured figure says how far it can be trusted: bench, tune and run show the 95 % interval
of the mean (outliers set aside) and mark a figure measured while other work took the CPU time it
needed (contended), in their tables, their JSON and one warning; older records migrate with the
interval computed from their samples; the report draws the intervals as whiskers."""

from __future__ import annotations

import json
import math
import re
import statistics

import msgspec
import pytest
from records import bench_record

from gpusplit.base.contention import Contention
from gpusplit.documents.results import read_records

# [10, 11, 12, 13, 30]: Tukey's fences are 11 - 1.5 * 2 .. 13 + 1.5 * 2 = 8 .. 16, so 30 is set aside;
# the four kept have mean 11.5 and standard deviation sqrt(5/3), and Student's t at 3 degrees of
# freedom is 3.182 (worked out here by hand, not by base/stats.py)
SAMPLES = [10.0, 11.0, 12.0, 13.0, 30.0]
MEAN = 11.5
HALF = 3.182 * math.sqrt(5 / 3) / math.sqrt(4)
BUSY = Contention(seconds=2.0, others_cpu_s=3.0, steal_s=0.0, cpus=2, threads=2)  # 1.5 of 2 CPUs taken by others
QUIET = Contention(seconds=2.0, others_cpu_s=0.0, steal_s=0.0, cpus=2, threads=2)


def _rows(tiny_model, contention):
    """Two bench rows of the demo model built directly (no engine): pp with the samples above, tg
    with one sample; `contention` per test name."""
    import gpusplit
    from gpusplit.jobs.bench import BenchRow
    from gpusplit.jobs.matrix import Config, Test

    model = gpusplit.read_model(tiny_model("dense-f16"))
    config = Config("auto", "auto", None, None, "f16", False)
    return [
        BenchRow(model, config, Test("pp32", "pp", 32), samples=tuple(SAMPLES), repetitions=5, contention=contention.get("pp32")),
        BenchRow(model, config, Test("tg4", "tg", 4), samples=(20.0,), repetitions=1, contention=contention.get("tg4")),
    ]


def _records(rows):
    from gpusplit.documents.render import bench_records

    return json.loads(json.dumps(list(bench_records(rows))))


def test_a_record_carries_the_mean_interval_and_outliers_by_the_rule(tiny_model):
    pp, tg = _records(_rows(tiny_model, {}))
    assert pp["schema"] == "gpusplit.bench/3"
    assert pp["mean_ts"] == MEAN and pp["outliers_ts"] == [30.0]
    assert pp["interval_ts"] == pytest.approx([MEAN - HALF, MEAN + HALF], abs=2e-3)
    assert pp["avg_ts"] == pytest.approx(statistics.fmean(SAMPLES), abs=1e-3)  # llama-bench's, of every sample
    assert tg["mean_ts"] == 20.0 and tg["interval_ts"] is None and tg["outliers_ts"] == []  # one sample: no interval
    assert pp["contention"] is None and tg["contention"] is None  # not watched


def test_the_table_shows_the_interval_and_the_outliers(tiny_model, capsys):
    from gpusplit.cli.bench import _emit

    records = _records(_rows(tiny_model, {}))
    _emit(records, "md")
    table = capsys.readouterr().out
    (pp_line,) = [line for line in table.splitlines() if "pp32" in line]
    (tg_line,) = [line for line in table.splitlines() if "tg4" in line]
    assert f"{MEAN:.2f} ± {100 * HALF / MEAN:.1f} % (1 outlier set aside)" in pp_line
    assert "20.00 |" in tg_line and "±" not in tg_line and "busy" not in table
    _emit(records, "csv")
    import csv
    import io

    pp_csv = next(r for r in csv.DictReader(io.StringIO(capsys.readouterr().out)) if r["test"] == "pp32")
    assert float(pp_csv["mean_ts"]) == MEAN and pp_csv["outliers_ts"] == "30.0" and pp_csv["contended"] == ""
    assert float(pp_csv["interval_low_ts"]) == pytest.approx(MEAN - HALF, abs=2e-3)


def test_a_contended_row_is_marked_in_the_table_the_json_and_one_warning(tiny_model, capsys):
    from gpusplit.cli.bench import _emit, _warn_contended

    records = _records(_rows(tiny_model, {"pp32": BUSY, "tg4": QUIET}))
    pp, tg = records
    assert pp["contention"] == {"contended": True, "seconds": 2.0, "others_cpus": 1.5, "steal_pct": 0.0, "cpus": 2,
                                "threads": 2, "mhz": None}  # fmt: skip
    assert tg["contention"]["contended"] is False
    _emit(records, "md")
    _warn_contended(records)
    out, err = capsys.readouterr()
    (pp_line,) = [line for line in out.splitlines() if "pp32" in line]
    (tg_line,) = [line for line in out.splitlines() if "tg4" in line]
    assert "busy" in pp_line and "busy" not in tg_line
    (warning,) = err.strip().splitlines()
    assert warning.startswith("gpusplit: warning: 1 of 2 rows were measured while other work took CPU time")
    assert "other processes kept 1.50 of 2 CPUs busy" in warning
    assert "idle machine" in warning and "GPUSPLIT_CONTENTION=ignore" in warning
    _warn_contended(_records(_rows(tiny_model, {"pp32": QUIET, "tg4": QUIET})))
    assert capsys.readouterr().err == ""  # nothing disturbed: nothing said


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_compare_flags_a_contended_side_and_still_judges_it(cli, tmp_path):
    busy = {"contended": True, "seconds": 2.0, "others_cpus": 1.5, "steal_pct": 0.0, "cpus": 2, "threads": 2, "mhz": None}
    base = _write(tmp_path / "a.jsonl", [bench_record(test="tg4", samples_ts=[100.0, 101.0, 99.0, 100.0, 100.5], repetitions=5),
                                         bench_record(test="pp32", samples_ts=[500.0, 501.0, 499.0], repetitions=3)])  # fmt: skip
    new = _write(tmp_path / "b.jsonl", [bench_record(test="tg4", samples_ts=[50.0, 51.0, 49.0, 50.0, 50.5], repetitions=5,
                                                     contention=busy),
                                        bench_record(test="pp32", samples_ts=[500.0, 502.0, 498.0], repetitions=3)])  # fmt: skip
    doc = json.loads(cli("bench", "--compare", base, "--compare", new, "--json").stdout)
    rows = {r["test"]: r for r in doc["rows"]}
    assert rows["tg4"]["contended"] is True and rows["pp32"]["contended"] is False
    table = cli("bench", "--compare", base, "--compare", new)
    (tg_line,) = [line for line in table.stdout.splitlines() if "tg4" in line]
    (pp_line,) = [line for line in table.stdout.splitlines() if "pp32" in line]
    assert tg_line.rstrip().endswith("| busy |") and "busy" not in pp_line
    assert "1 of 2 compared rows were measured" in table.stderr
    gate = cli("bench", "--compare", base, "--compare", new, "--fail-slower", "5")
    assert gate.exit_code == 4  # judged all the same: a busy runner must not hide a slowdown
    (slower,) = [line for line in gate.stderr.splitlines() if "--fail-slower" in line]
    assert "tg4" in slower and "beside other work" in slower


def test_a_bench2_record_migrates_with_its_interval(tmp_path):
    old = {k: v for k, v in bench_record(test="pp32", samples_ts=SAMPLES, repetitions=5).items()
           if k not in ("mean_ts", "interval_ts", "outliers_ts", "contention")}  # fmt: skip
    one = {k: v for k, v in bench_record(test="tg4").items() if k not in ("mean_ts", "interval_ts", "outliers_ts", "contention")}
    failed = {**one, "test": "tg8", "status": "failed", "samples_ts": [], "avg_ts": None, "stddev_ts": None, "error": "x"}
    records = [{**r, "schema": "gpusplit.bench/2"} for r in (old, one, failed)]
    path = tmp_path / "old.jsonl"
    _write(path, records)
    pp, tg, bad = read_records(path)
    assert pp["mean_ts"] == MEAN and pp["outliers_ts"] == [30.0] and pp["contention"] is None
    assert pp["interval_ts"] == pytest.approx([MEAN - HALF, MEAN + HALF], abs=2e-3)
    assert tg["mean_ts"] == 10.0 and tg["interval_ts"] is None and tg["outliers_ts"] == []
    assert bad["mean_ts"] is None and bad["interval_ts"] is None and bad["outliers_ts"] == []
    assert pp["schema"] == "gpusplit.bench/3" and pp["avg_ts"] == old["avg_ts"]  # llama-bench's figure kept


def _run_result(plan_doc_path_model, contention, token_ms):
    import gpusplit
    from gpusplit.jobs.runner import RunResult, Timings

    plan = gpusplit.plan(plan_doc_path_model, gpusplit.detect_devices(gpus=["8GiB"]))
    timings = Timings(120.0, 8, 100.0, len(token_ms), 49.0, 30.0, token_ms=tuple(token_ms))
    return RunResult(plan, "text", timings, {}, contention=contention)


def test_run_json_and_table_carry_the_interval_and_contention(tiny_model, capsys):
    from gpusplit.cli.run import print_run
    from gpusplit.documents import models
    from gpusplit.documents.render import run_document

    # 60 ms is beyond the fences of the other four (19.5 .. 21: 18.5 .. 22.5); the four kept have
    # mean 20.25 ms and standard deviation sqrt(1.25 / 3)
    token_ms = [20.0, 21.0, 19.5, 20.5, 60.0]
    half = 3.182 * math.sqrt(1.25 / 3) / 2
    doc = json.loads(json.dumps(run_document(_run_result(str(tiny_model("dense-f16")), BUSY, token_ms))))
    assert doc["schema"] == "gpusplit.run/3"
    assert doc["contention"]["contended"] is True and doc["contention"]["others_cpus"] == 1.5
    assert doc["timings"]["gen_interval_tps"] == pytest.approx([1000 / (20.25 + half), 1000 / (20.25 - half)], abs=0.02)
    assert doc["timings"]["gen_outliers"] == 1
    print_run(msgspec.convert(doc, models.RunDoc))
    (row,) = [line for line in capsys.readouterr().out.splitlines() if "49.0" in line]
    assert "49.0 ± " in row and "(1 token set aside)" in row and "busy" in row
    quiet = json.loads(json.dumps(run_document(_run_result(str(tiny_model("dense-f16")), None, [20.0]))))
    assert quiet["contention"] is None and quiet["timings"]["gen_interval_tps"] is None  # unwatched; one token


def test_a_run2_document_migrates(tiny_model):
    from gpusplit.documents.read import read_any
    from gpusplit.documents.render import run_document

    doc = json.loads(json.dumps(run_document(_run_result(str(tiny_model("dense-f16")), BUSY, [20.0, 21.0]))))
    doc["schema"] = "gpusplit.run/2"
    del doc["contention"], doc["timings"]["gen_interval_tps"], doc["timings"]["gen_outliers"]
    migrated = read_any(json.dumps(doc).encode(), "run", "run.json", "files")
    assert migrated["schema"] == "gpusplit.run/3" and migrated["contention"] is None
    assert migrated["timings"]["gen_interval_tps"] is None and migrated["timings"]["gen_outliers"] == 0


def test_tune_trials_carry_their_interval_and_contention(tiny_model, tmp_path, capsys):
    import gpusplit
    from gpusplit.cli.tune import _print
    from gpusplit.devices.inventory import Inventory, host_device
    from gpusplit.documents.render import tune_document
    from gpusplit.documents.results import append_trial, read_trials
    from gpusplit.documents.schemas import schemas
    from gpusplit.jobs.tune import Measurement, tune

    def measure(plan, best_tg, limit_s):
        busy = bool(plan.request.flash_attn)  # the flash-attention trials ran beside a neighbour
        tg = 100.0 + (plan.request.n_threads or 0)
        return Measurement(tg, tg * 10, None, (tg - 5, tg + 5), None, BUSY if busy else QUIET)

    model = gpusplit.read_model(tiny_model("dense-f16"))
    result = tune(model, Inventory(devices=[], host=host_device()), gpusplit.Request(n_ctx=256), budget_s=60, measure=measure)
    (note,) = [n for n in result.notes if n.code == "contended"]
    busy = [t for t in result.trials if t.request.flash_attn and t.status == "ok"]
    assert busy and note.values["contended"] >= len(busy)
    doc = json.loads(json.dumps(tune_document(result, "tg", 60.0)))
    pytest.importorskip("jsonschema", reason="jsonschema (test extra) is not installed").validate(
        doc, schemas()["gpusplit.tune/3"]
    )
    for t in doc["trials"]:
        if t["status"] == "ok":
            assert t["measured_tg_interval"] == [t["measured_tg"] - 5, t["measured_tg"] + 5]
            assert t["contention"]["contended"] is t["request"]["flash_attn"]
    assert any(n["code"] == "contended" for n in doc["notes"])
    log = tmp_path / "trials.jsonl"
    for t in result.trials:
        append_trial(log, t)
    again = {t.key: t for t in read_trials(log, gpusplit.Request(n_ctx=256))}
    assert {k for k, t in again.items() if t.contended} == {t.key for t in result.trials if t.contended}
    assert all(again[t.key].tg_interval == t.tg_interval for t in result.trials)
    _print(doc)
    lines = capsys.readouterr().out.splitlines()
    assert any("± 5.0 %" in line or "± 4.9 %" in line for line in lines) and any("ok busy" in line for line in lines)


def test_a_trial2_line_still_resumes(tmp_path):
    import gpusplit
    from gpusplit.documents.results import read_trials, trial_record
    from gpusplit.jobs.tune import Trial

    line = trial_record(Trial(gpusplit.Request(split_mode="none"), measured_tg=60.0, score=60.0, samples=[60.0]))
    for name in ("measured_tg_interval", "measured_pp_interval", "contention"):
        del line[name]
    path = tmp_path / "trials.jsonl"
    path.write_text(json.dumps({**line, "schema": "gpusplit.trial/2"}) + "\n")
    (trial,) = read_trials(path)
    assert trial.measured_tg == 60.0 and trial.tg_interval is None and trial.contention is None


def _whiskers(page: str) -> int:
    """How many error bars the bench charts draw (matplotlib's errorbar: one LineCollection path each)."""
    groups = re.findall(r'<g id="LineCollection_\d+">(.*?)</g>', page, flags=re.S)
    return sum(group.count("<path") for group in groups)


def test_the_report_draws_each_interval_and_marks_a_busy_row(cli, tmp_path):
    pytest.importorskip("matplotlib", reason="the 'report' extra (matplotlib) is not installed")
    busy = {"contended": True, "seconds": 2.0, "others_cpus": 1.5, "steal_pct": 0.0, "cpus": 2, "threads": 2, "mhz": None}
    noisy = _write(tmp_path / "noisy.jsonl", [
        bench_record("mode=layer", "tg4", samples_ts=SAMPLES, repetitions=5, contention=busy),
        bench_record("mode=none", "tg4", samples_ts=[20.0, 21.0, 22.0], repetitions=3),
        bench_record("mode=row", "tg4"),  # one sample: no interval, no whisker
    ])  # fmt: skip
    single = _write(tmp_path / "single.jsonl", [bench_record("mode=layer", "tg4"), bench_record("mode=none", "tg4")])
    pages = {}
    for name, path in (("noisy", noisy), ("single", single)):
        out = tmp_path / f"{name}.html"
        result = cli("report", path, "-o", str(out))
        assert result.exit_code == 0, result.stderr
        pages[name] = out.read_text()
    assert _whiskers(pages["noisy"]) == 2 and _whiskers(pages["single"]) == 0
    table = pages["noisy"].split("<table>", 1)[1]
    assert f"{MEAN - HALF:,.2f} – {MEAN + HALF:,.2f}" in table
    (layer_row,) = [row for row in table.split("<tr>") if "mode=layer" in row]
    (none_row,) = [row for row in table.split("<tr>") if "mode=none" in row]
    assert "<td>busy</td>" in layer_row and "busy" not in none_row


@pytest.mark.engine
@pytest.mark.parametrize("watch", ["watch", "ignore"])
def test_bench_through_the_engine_says_its_noise(cli, tiny_model, monkeypatch, watch):
    """A real bench of the demo model: every record has its interval, and contention where it is
    watched (whether the machine was busy is the machine's: its type is what is checked)."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    if watch == "ignore":
        monkeypatch.setenv("GPUSPLIT_CONTENTION", "ignore")
    else:
        monkeypatch.delenv("GPUSPLIT_CONTENTION", raising=False)
    result = cli("bench", str(tiny_model("dense-f16")), "-r", "3", "-p", "16", "-n", "4", "--ctx", "256", "-o", "json")
    assert result.exit_code == 0, result.stderr
    for r in json.loads(result.stdout):
        assert r["status"] == "ok" and r["schema"] == "gpusplit.bench/3"
        low, high = r["interval_ts"]
        assert 0 <= low <= r["mean_ts"] <= high and isinstance(r["outliers_ts"], list)
        if watch == "ignore":
            assert r["contention"] is None
        else:
            c = r["contention"]
            assert isinstance(c["contended"], bool) and c["seconds"] > 0 and c["cpus"] >= 1 and c["others_cpus"] >= 0
    run = cli("run", str(tiny_model("dense-f16")), "-n", "8", "--json")
    assert run.exit_code == 0, run.stderr
    doc = json.loads(run.stdout)
    assert (doc["contention"] is None) is (watch == "ignore")
    assert doc["timings"]["gen_interval_tps"] is None or doc["timings"]["gen_interval_tps"][0] > 0
