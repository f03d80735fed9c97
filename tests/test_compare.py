"""bench --compare: faster or slower only beyond both runs' noise, and --fail-slower as a CI gate."""

from __future__ import annotations

import json
import random

from records import bench_record


def _write(path, samples_by_test):
    path.write_text("".join(_write_line(test, samples) for test, samples in samples_by_test.items()))
    return str(path)


def _write_runs(path, test, run_means, rng):
    """Benches appended to one file: one record per run, its repetitions tight around the run's mean."""
    for mean in run_means:
        with open(path, "a") as f:
            f.write(_write_line(test, [rng.gauss(mean, mean * 0.01) for _ in range(5)]))
    return str(path)


def _write_line(test, samples, **changes):
    mean = sum(samples) / len(samples)
    record = bench_record(test=test, samples_ts=samples, avg_ts=mean, repetitions=len(samples), **changes)
    return json.dumps(record) + "\n"


def test_a_change_is_named_only_beyond_the_noise(cli, tmp_path):
    base = _write(tmp_path / "a.jsonl", {"tg4": [100.0, 101.0, 99.0, 100.0, 100.5], "pp32": [500.0, 505.0, 495.0, 500.0, 502.0]})
    new = _write(tmp_path / "b.jsonl", {"tg4": [120.0, 121.0, 119.0, 120.0, 120.5], "pp32": [480.0, 530.0, 470.0, 520.0, 500.0]})
    doc = json.loads(cli("bench", "--compare", base, "--compare", new, "--json").stdout)
    assert doc["schema"] == "gpusplit.bench-compare/4"
    rows = {r["test"]: r for r in doc["rows"]}
    assert rows["tg4"]["verdict"] == "faster" and 19 < rows["tg4"]["change_pct"] < 21
    assert rows["tg4"]["change_low_pct"] > 0  # the whole interval above: faster beyond the noise
    assert rows["pp32"]["verdict"] == "same"  # a 0.0 % change in means, its spread wide
    assert rows["pp32"]["change_low_pct"] < 0 < rows["pp32"]["change_high_pct"]
    table = cli("bench", "--compare", base, "--compare", new).stdout
    (tg_row,) = [line for line in table.splitlines() if "tg4" in line]
    (pp_row,) = [line for line in table.splitlines() if "pp32" in line]
    assert tg_row.startswith("|") and "faster" in tg_row and "the same within noise" in pp_row


def test_the_gate_fires_on_a_real_slowdown_and_never_on_noise(cli, tmp_path):
    rng = random.Random(11)
    base = _write(tmp_path / "a.jsonl", {"tg4": [rng.gauss(100, 4) for _ in range(5)]})
    fired = 0
    for trial in range(20):  # twenty runs of the same configuration: noise only
        same = _write(tmp_path / f"same{trial}.jsonl", {"tg4": [rng.gauss(100, 4) for _ in range(5)]})
        fired += cli("bench", "--compare", base, "--compare", same, "--fail-slower", "5").exit_code != 0
    assert fired == 0
    halved = _write(tmp_path / "half.jsonl", {"tg4": [rng.gauss(55, 3) for _ in range(5)]})  # half the threads
    result = cli("bench", "--compare", base, "--compare", halved, "--fail-slower", "5")
    assert result.exit_code == 4, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "over --fail-slower" in line]
    assert "tg4" in line and "slower" in line and "--fail-slower 5" in line
    assert "1 of 1 rows have one run on a side" in result.stderr  # and so cannot see drift
    # the same slowdown under a looser gate: not beyond 60 %
    assert cli("bench", "--compare", base, "--compare", halved, "--fail-slower", "60").exit_code == 0


def test_one_repetition_has_no_noise_to_go_by(cli, tmp_path):
    base = _write(tmp_path / "a.jsonl", {"tg4": [100.0]})
    new = _write(tmp_path / "b.jsonl", {"tg4": [50.0]})
    result = cli("bench", "--compare", base, "--compare", new, "--json", "--fail-slower", "5")
    (row,) = json.loads(result.stdout)["rows"]
    assert row["verdict"] == "same" and row["change_low_pct"] is None and result.exit_code == 0
    assert "1 of 1 rows have no interval to judge them by: one run of one repetition" in result.stderr
    assert "one run on a side" not in result.stderr  # a row that cannot fire is not said to fire on drift


def test_fail_slower_needs_a_comparison(cli, tmp_path):
    result = cli("bench", "--fail-slower", "5")
    assert result.exit_code == 2 and "--compare" in result.stderr


def test_several_runs_a_side_are_judged_over_their_runs_not_their_repetitions(cli, tmp_path):
    # Runs minutes apart drift by tens of percent while each run's repetitions agree within 1 %
    # (docs/busy.md): judged by one run's repetitions, run 2 against run 1 is a regression.
    rng = random.Random(5)
    drift = [100.0, 82.0, 118.0, 95.0]
    base = _write_runs(tmp_path / "a.jsonl", "tg4", drift, rng)
    same = _write_runs(tmp_path / "b.jsonl", "tg4", [84.0, 112.0, 99.0, 103.0], rng)
    first, second = (_write(tmp_path / f"run{i}.jsonl", {"tg4": [rng.gauss(m, m * 0.01) for _ in range(5)]})
                     for i, m in enumerate(drift[:2]))  # fmt: skip
    assert cli("bench", "--compare", first, "--compare", second, "--fail-slower", "5").exit_code == 4
    pooled = cli("bench", "--compare", base, "--compare", same, "--fail-slower", "5", "--json")
    (row,) = json.loads(pooled.stdout)["rows"]
    assert pooled.exit_code == 0 and row["verdict"] == "same", pooled.stderr
    assert row["a_runs"] == 4 and row["b_runs"] == 4
    assert abs(row["a_ts"] - sum(drift) / 4) < 2  # the mean of the runs' means
    assert row["change_low_pct"] < -10 and row["change_high_pct"] > 10  # the drift is in the interval
    assert "one run on a side" not in pooled.stderr
    halved = _write_runs(tmp_path / "half.jsonl", "tg4", [48.0, 55.0, 51.0], rng)
    gate = cli("bench", "--compare", base, "--compare", halved, "--fail-slower", "5")
    assert gate.exit_code == 4 and "tg4" in gate.stderr


def test_a_run_far_from_the_others_is_set_aside(cli, tmp_path):
    rng = random.Random(9)
    base = _write_runs(tmp_path / "a.jsonl", "pp32", [500.0, 505.0, 498.0, 502.0, 250.0], rng)  # one run halved
    new = _write_runs(tmp_path / "b.jsonl", "pp32", [501.0, 499.0, 503.0], rng)
    (row,) = json.loads(cli("bench", "--compare", base, "--compare", new, "--json").stdout)["rows"]
    assert row["a_runs"] == 5 and row["a_runs_aside"] == 1 and row["b_runs_aside"] == 0
    assert 495 < row["a_ts"] < 510 and row["verdict"] == "same"
    table = cli("bench", "--compare", base, "--compare", new).stdout
    (line,) = [line for line in table.splitlines() if "pp32" in line]
    assert "5/3" in line  # runs on each side


def test_runs_of_different_models_in_one_file_are_refused_not_pooled(cli, tmp_path):
    base = tmp_path / "a.jsonl"
    other = {"name": "big", "path": "big.gguf", "architecture": "llama", "file_type": None, "total_bytes": 9, "params": 9}
    base.write_text(_write_line("tg4", [10.0, 10.1, 9.9]) + _write_line("tg4", [5.0, 5.1, 4.9], model=other))
    new = _write(tmp_path / "b.jsonl", {"tg4": [10.0, 10.1, 9.9]})
    result = cli("bench", "--compare", str(base), "--compare", new, "--fail-slower", "5")
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert str(base) in line and "different setups" in line and "big" in line


def test_a_row_that_fails_every_run_in_b_fails_the_gate(cli, tmp_path):
    base = _write(tmp_path / "a.jsonl", {"tg4": [100.0, 101.0, 99.0], "pp32": [500.0, 505.0, 495.0]})
    new = tmp_path / "b.jsonl"
    failed = dict(status="failed", samples_ts=[], avg_ts=None, stddev_ts=None, mean_ts=None, interval_ts=None,
                  error="llama.cpp crashed")  # fmt: skip
    new.write_text(_write_line("pp32", [500.0, 505.0, 495.0]) + json.dumps(bench_record(test="tg4", **failed)) + "\n")
    gate = cli("bench", "--compare", base, "--compare", str(new), "--fail-slower", "5")
    assert gate.exit_code == 4
    assert "failed runs left out of the comparison: 0 in" in gate.stderr
    (lost,) = [line for line in gate.stderr.splitlines() if "failed every run" in line]
    assert "tg4" in lost and str(new) in lost
    assert cli("bench", "--compare", base, "--compare", str(new)).exit_code == 0  # said, but no gate asked for


def test_two_runs_far_apart_are_too_few_to_judge_and_say_so(cli, tmp_path):
    rng = random.Random(3)
    base = _write_runs(tmp_path / "a.jsonl", "tg4", [100.0, 80.0], rng)  # t = 12.7 over two runs: 0 .. 200
    new = _write_runs(tmp_path / "b.jsonl", "tg4", [50.0, 52.0], rng)
    gate = cli("bench", "--compare", base, "--compare", new, "--fail-slower", "5")
    assert gate.exit_code == 0
    assert "1 of 1 rows have no interval to judge them by" in gate.stderr and "3 runs or more a side" in gate.stderr
