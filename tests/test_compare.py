"""bench --compare: faster or slower only beyond both runs' noise, and --fail-slower as a CI gate."""

from __future__ import annotations

import json
import random

from records import bench_record


def _write(path, samples_by_test):
    lines = []
    for test, samples in samples_by_test.items():
        mean = sum(samples) / len(samples)
        record = bench_record(test=test, samples_ts=samples, avg_ts=mean, repetitions=len(samples))
        lines.append(json.dumps(record) + "\n")
    path.write_text("".join(lines))
    return str(path)


def test_a_change_is_named_only_beyond_the_noise(cli, tmp_path):
    base = _write(tmp_path / "a.jsonl", {"tg4": [100.0, 101.0, 99.0, 100.0, 100.5], "pp32": [500.0, 505.0, 495.0, 500.0, 502.0]})
    new = _write(tmp_path / "b.jsonl", {"tg4": [120.0, 121.0, 119.0, 120.0, 120.5], "pp32": [480.0, 530.0, 470.0, 520.0, 500.0]})
    doc = json.loads(cli("bench", "--compare", base, "--compare", new, "--json").stdout)
    assert doc["schema"] == "gpusplit.bench-compare/3"
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
    (line,) = result.stderr.strip().splitlines()
    assert "tg4" in line and "slower" in line and "--fail-slower 5" in line
    # the same slowdown under a looser gate: not beyond 60 %
    assert cli("bench", "--compare", base, "--compare", halved, "--fail-slower", "60").exit_code == 0


def test_one_repetition_has_no_noise_to_go_by(cli, tmp_path):
    base = _write(tmp_path / "a.jsonl", {"tg4": [100.0]})
    new = _write(tmp_path / "b.jsonl", {"tg4": [50.0]})
    result = cli("bench", "--compare", base, "--compare", new, "--json", "--fail-slower", "5")
    (row,) = json.loads(result.stdout)["rows"]
    assert row["verdict"] == "same" and row["change_low_pct"] is None and result.exit_code == 0
    assert "1 of 1 rows have one repetition" in result.stderr


def test_fail_slower_needs_a_comparison(cli, tmp_path):
    result = cli("bench", "--fail-slower", "5")
    assert result.exit_code == 2 and "--compare" in result.stderr
