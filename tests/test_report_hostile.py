"""Hostile inputs to `gpusplit report` and to the devices a plan is made for: a junk file's lines
summarised in a few warnings and a count, a document saved with a byte-order mark read as that
document, a tune winner's command shown shell-quoted, work linear in the devices and records, and
a devices file of a thousand (or a hundred thousand) devices refused at once, naming llama.cpp's
limit of 16."""

from __future__ import annotations

import html
import json
import shlex
import subprocess
import sys

import pytest
from records import bench_record

from gpusplit.base.errors import InputError
from gpusplit.planning.refusals import MAX_DEVICES

HOSTILE_ARG = "x; curl x | sh"


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line]


@pytest.fixture
def plan_json(cli, tiny_model, tmp_path):
    """`plan --json` of a real model on two hypothetical cards, as a file."""
    result = cli("plan", "--json", str(tiny_model("dense-f16")), "--gpu", "2x24GiB")
    assert result.exit_code == 0, result.stderr
    path = tmp_path / "plan.json"
    path.write_text(result.stdout)
    return path


# ---------------------------------------------------------------------------------------------
# Warnings that summarise


def test_a_junk_file_of_20000_lines_is_a_few_warnings_and_a_count(cli, tmp_path):
    pytest.importorskip("matplotlib", reason="the 'report' extra (matplotlib) is not installed")
    junk = tmp_path / "junk.jsonl"
    # lines of every unusable sort: torn records, another program's objects, text
    kinds = ('{"torn": ', '{"someone": "else"}', "not json at all")
    junk.write_text("".join(kinds[i % 3] + "\n" for i in range(20_000)))
    result = cli("report", str(junk), "-o", str(tmp_path / "page.html"))
    assert result.exit_code == 2 and "nothing to report" in result.stderr  # no file held anything to report
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 5, lines
    warnings = _warnings(result.stderr)
    assert warnings[-1].endswith(f"and {20_000 - 3:,} more lines like these: skipped "
                                 "(no gpusplit bench, tune, plan, run or devices output in it)")  # fmt: skip
    assert [f"{junk} line {n}:" in w for n, w in zip((1, 2, 3), warnings)] == [True, True, True]


def test_bad_lines_among_good_records_are_counted_and_the_records_reported(cli, tmp_path):
    pytest.importorskip("matplotlib", reason="the 'report' extra (matplotlib) is not installed")
    mixed = tmp_path / "mixed.jsonl"
    good = [json.dumps(bench_record(f"mode=layer{i}", avg_ts=100.0 + i, samples_ts=[100.0 + i])) for i in range(3)]
    mixed.write_text("\n".join([*good, *(['{"cut short'] * 500)]) + "\n")
    result = cli("report", str(mixed), "-o", str(tmp_path / "page.html"))
    assert result.exit_code == 0, result.stderr
    warnings = _warnings(result.stderr)
    assert len(warnings) == 4 and warnings[-1].endswith("and 497 more lines like these: skipped")
    page = (tmp_path / "page.html").read_text()
    assert all(f"{100.0 + i:,.2f}" in page for i in range(3))


def test_a_plan_saved_with_a_byte_order_mark_is_the_plan(cli, plan_json, tmp_path):
    pytest.importorskip("matplotlib", reason="the 'report' extra (matplotlib) is not installed")
    marked = tmp_path / "marked.json"
    marked.write_bytes(b"\xef\xbb\xbf" + plan_json.read_bytes())
    result = cli("report", str(marked), "-o", str(tmp_path / "page.html"))
    assert result.exit_code == 0, result.stderr
    assert _warnings(result.stderr) == [] and "cut short" not in result.stderr
    page = (tmp_path / "page.html").read_text()
    assert "<h2>Plan:" in page and "<td>GPU0</td>" in page and "<td>GPU1</td>" in page


def test_a_document_of_many_lines_is_never_read_as_lines(cli, plan_json, tmp_path):
    """A foreign document, pretty-printed over many lines, is one warning naming its schema, not
    one per line."""
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"schema": "someone.else/3", "rows": [{"n": i} for i in range(300)]}, indent=2))
    result = cli("report", str(foreign), str(plan_json), "-o", str(tmp_path / "page.html"))
    assert result.exit_code == 0, result.stderr
    assert _warnings(result.stderr) == [
        f"gpusplit: warning: {foreign}: not a gpusplit bench, tune, plan, run or devices output (schema 'someone.else/3'): skipped"
    ]


# ---------------------------------------------------------------------------------------------
# Command lines shell-quoted


def test_a_tune_winners_command_is_shown_shell_quoted(cli, tiny_model, tmp_path):
    pytest.importorskip("matplotlib", reason="the 'report' extra (matplotlib) is not installed")
    result = cli("tune", "--json", str(tiny_model("dense-f16")), "--gpu", "RTX 4090", "--gpu", "RTX 3090",
                 "--trials", str(tmp_path / "t.jsonl"))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["best"] is not None
    doc["plan"]["llama_args"] += ["--alias", HOSTILE_ARG]
    tune = tmp_path / "tune.json"
    tune.write_text(json.dumps(doc))
    shown = cli("report", str(tune), "-o", str(tmp_path / "page.html"))
    assert shown.exit_code == 0, shown.stderr
    page = (tmp_path / "page.html").read_text()
    assert html.escape(shlex.quote(HOSTILE_ARG)) in page
    assert html.escape(f"--alias {HOSTILE_ARG}") not in page and html.escape("; curl x | sh") not in page.replace(
        html.escape(shlex.quote(HOSTILE_ARG)), ""
    )
    assert html.escape(shlex.join(["llama-server", *doc["plan"]["llama_args"]])) in page


# ---------------------------------------------------------------------------------------------
# Linear work


class _Calls:
    """How often the report calls the matplotlib methods that drew a bar, or looked the legend up,
    once per bar."""

    def __init__(self, monkeypatch):
        from matplotlib.axes import Axes

        self.counts = {"barh": 0, "get_legend_handles_labels": 0, "errorbar": 0}
        for name in self.counts:
            original = getattr(Axes, name)

            def counted(*args, _name=name, _original=original, **kwargs):
                self.counts[_name] += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(Axes, name, counted)

    def during(self, draw) -> dict[str, int]:
        before = dict(self.counts)
        draw()
        return {name: self.counts[name] - before[name] for name in self.counts}


def test_the_memory_chart_is_drawn_in_calls_that_do_not_grow_with_the_devices(monkeypatch, plan_json, tmp_path):
    pytest.importorskip("matplotlib", reason="the 'report' extra (matplotlib) is not installed")
    from gpusplit.documents.report import report

    doc = json.loads(plan_json.read_text())
    files = {}
    for n in (2, 60):
        many = dict(doc, devices=[dict(doc["devices"][0], name=f"GPU{i}", index=i) for i in range(n)])
        files[n] = tmp_path / f"plan{n}.json"
        files[n].write_text(json.dumps(many))
    calls = _Calls(monkeypatch)
    pages = {}
    counts = {n: calls.during(lambda n=n: pages.__setitem__(n, report([files[n]]))) for n in files}
    assert all(f"<td>GPU{i}</td>" in pages[60] for i in range(60))
    assert counts[2]["barh"] >= 1 and counts[60] == counts[2]


def test_the_bench_chart_is_drawn_in_calls_that_do_not_grow_with_the_records(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib", reason="the 'report' extra (matplotlib) is not installed")
    from gpusplit.documents.report import report

    files = {}
    for n in (2, 200):
        files[n] = tmp_path / f"bench{n}.jsonl"
        files[n].write_text(
            "".join(
                json.dumps(bench_record(f"mode=layer{i}", samples_ts=[9.0, 11.0], predicted_ts=12.0)) + "\n" for i in range(n)
            )
        )
    calls = _Calls(monkeypatch)
    counts = {n: calls.during(lambda n=n: report([files[n]])) for n in files}
    assert counts[2]["barh"] == 1 and counts[2]["errorbar"] == 1 and counts[200] == counts[2]


# ---------------------------------------------------------------------------------------------
# The 16-device limit, before any work


@pytest.mark.parametrize("n", [1_000, 100_000])
def test_a_devices_file_of_too_many_devices_is_refused_at_once(cli, tiny_model, tmp_path, n):
    listed = json.loads(cli("devices", "--json", "--gpu", "24GiB").stdout)
    card = listed["devices"][0]
    listed["devices"] = [dict(card, name=f"GPU{i}", index=i) for i in range(n)]
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(listed))
    # a generous limit: only a hang (planning for each device first) would reach it
    done = subprocess.run([sys.executable, "-m", "gpusplit", "plan", str(tiny_model("dense-f16")), "--devices-file", str(path)],
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"--devices-file {path}: {n:,} devices, but llama.cpp takes at most {MAX_DEVICES}" in lines[0]


def test_too_many_devices_are_refused_before_the_request_is_resolved(monkeypatch, tiny_model):
    import gpusplit
    from gpusplit.planning import prepare

    def resolve(*args, **kwargs):
        raise AssertionError("the request was resolved for devices llama.cpp refuses")

    monkeypatch.setattr(prepare, "resolve", resolve)
    devices = gpusplit.detect_devices(gpus=[f"{MAX_DEVICES + 1}x24GiB"])
    with pytest.raises(InputError, match=f"{MAX_DEVICES + 1} devices, but llama.cpp takes at most {MAX_DEVICES}"):
        gpusplit.plan(tiny_model("dense-f16"), devices)


@pytest.mark.parametrize("schema", ["[]", '{"a": 1}', "1"])
def test_a_schema_that_is_no_string_names_no_kind(cli, tmp_path, schema):
    """Found by benchmarks/fuzz_documents.py: a list as `schema` was looked up in a dict (TypeError)."""
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text(f'{{"schema": {schema}}}\n' * 2)
    one = tmp_path / "y.json"
    one.write_text(f'{{"schema": {schema}}}')
    for path in (jsonl, one):
        result = cli("report", str(path), "-o", str(tmp_path / "r.html"))
        assert result.exit_code == 2 and "internal error" not in result.stderr, result.stderr
        assert "nothing to report" in result.stderr.strip().splitlines()[-1]
