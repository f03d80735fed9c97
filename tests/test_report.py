"""`gpusplit report`: one offline HTML page from real bench, tune, plan and run outputs of the demo
model, whose charts carry the files' numbers, whose strings are escaped, and which names every file
it could not use."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib", reason="the 'report' extra (matplotlib) is not installed")

HOSTILE = '<script>alert("x")</script> --> $\\frac{1}{2}$ & <img src=http://evil.example/x.png>'


def _gpusplit(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gpusplit", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Real outputs of the built-in demo model: bench JSONL, tune trials JSONL and its --json
    document, plan --json and run --json."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    folder = tmp_path_factory.mktemp("report")
    files = {name: folder / name for name in ("bench.jsonl", "trials.jsonl", "tune.json", "plan.json", "run.json")}
    _gpusplit("bench", "-p", "32", "-n", "8", "-r", "3", "--ctx", "512", "--output", str(files["bench.jsonl"]))
    files["tune.json"].write_text(
        _gpusplit("tune", "--json", "--budget", "8s", "--ctx", "512", "--trials", str(files["trials.jsonl"]))
    )
    files["plan.json"].write_text(_gpusplit("plan", "--json"))
    files["run.json"].write_text(_gpusplit("run", "--json", "-n", "8"))
    return files


def _report(cli, tmp_path, *files):
    out = tmp_path / "report.html"
    result = cli("report", *map(str, files), "-o", str(out))
    return result, (out.read_text() if out.exists() else "")


def _fetchable(page: str) -> list[str]:
    """Every reference a browser would fetch, from the page's real tags and styles (not its text):
    src/href/xlink:href to anything but a fragment, url(...) and @import in styles, and the tags
    that load or run things."""
    from html.parser import HTMLParser

    found: list[str] = []
    styles: list[str] = []

    class Parser(HTMLParser):
        in_style = False

        def handle_starttag(self, tag, attrs):
            if tag in ("script", "link", "iframe", "object", "embed", "img", "image", "use", "a"):
                found.extend(
                    f"{tag} {name}={value}"
                    for name, value in attrs
                    if name in ("src", "href", "xlink:href") and value and not value.startswith("#")
                )
            if tag in ("script", "iframe", "object", "embed", "link"):
                found.append(f"<{tag}>")
            styles.extend(value for name, value in attrs if name == "style" and value)
            self.in_style = tag == "style"

        def handle_startendtag(self, tag, attrs):
            self.handle_starttag(tag, attrs)

        def handle_data(self, data):
            if self.in_style:
                styles.append(data)

        def handle_endtag(self, tag):
            self.in_style = False

    Parser().feed(page)
    for style in styles:
        found += re.findall(r"url\([^)]*\)|@import[^;]*", style)
    return found


def test_a_report_of_real_outputs_draws_each_with_its_numbers(cli, outputs, tmp_path):
    result, page = _report(cli, tmp_path, *outputs.values())
    assert result.exit_code == 0, result.stderr
    assert "report written to" in result.stderr
    # charts: prompt and generation, the tune trials (from the JSONL and from the document), the plan's
    # memory, the run's planned and actual memory
    assert page.count("<svg") == 6
    assert _fetchable(page) == []
    assert "<script" not in page
    for namespace in re.findall(r"http[^\"' ]*", page):
        assert namespace in ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink")
    # the bench records' numbers: every mean, and the prediction, in the tables
    records = [json.loads(line) for line in outputs["bench.jsonl"].read_text().splitlines()]
    assert {r["test"] for r in records} == {"pp32", "tg8"}
    for r in records:
        assert f"{r['avg_ts']:,.2f}" in page and f"{r['predicted_ts']:,.2f}" in page
        assert f"{min(r['samples_ts']):,.2f}" in page and f"{max(r['samples_ts']):,.2f}" in page
    # every trial, and the winner with its flags
    tune = json.loads(outputs["tune.json"].read_text())
    trials = [json.loads(line) for line in outputs["trials.jsonl"].read_text().splitlines()]
    assert len(trials) >= len(tune["trials"]) >= 1
    assert html.escape(" ".join(map(str, tune["plan"]["llama_args"]))) in page
    for t in tune["trials"]:
        assert html.escape(t["key"]) in page
    # memory: the plan's weights per device, the run's planned beside actual, its text
    plan = json.loads(outputs["plan.json"].read_text())
    from gpusplit.base.units import format_bytes

    for d in [*plan["devices"], plan["host"]]:
        if d["weights_bytes"]:
            assert format_bytes(d["weights_bytes"]) in page
    run = json.loads(outputs["run.json"].read_text())
    assert "CPU actual" in page and html.escape(run["text"].strip()[:40]) in page


def test_a_hostile_model_name_is_escaped_everywhere(cli, outputs, tmp_path):
    records = [json.loads(line) for line in outputs["bench.jsonl"].read_text().splitlines()]
    for r in records:
        r["model"]["name"] = HOSTILE
        r["config_key"] = HOSTILE + "\x1b[31m"
    hostile = tmp_path / "hostile.jsonl"
    hostile.write_text("".join(json.dumps(r) + "\n" for r in records))
    plan = json.loads(outputs["plan.json"].read_text())
    plan["model"]["name"] = HOSTILE
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    result, page = _report(cli, tmp_path, hostile, tmp_path / "plan.json")
    assert result.exit_code == 0, result.stderr
    assert "<script" not in page and "<img" not in page and "\x1b" not in page
    assert _fetchable(page) == []
    assert html.escape(HOSTILE, quote=True)[:60] in page  # shown, as text


def test_bad_files_are_named_one_line_each_and_the_rest_reported(cli, outputs, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"schema": "someone.else/3", "rows": []}))
    torn = tmp_path / "torn.jsonl"
    lines = outputs["bench.jsonl"].read_text().splitlines()
    torn.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2] + "\n")
    result, page = _report(cli, tmp_path, empty, foreign, torn, outputs["plan.json"])
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 3
    assert any(str(empty) in w and "empty" in w for w in warnings)
    assert any(str(foreign) in w and "someone.else/3" in w for w in warnings)
    assert any(f"{torn} line 2" in w for w in warnings)
    # the torn file's whole first record (a chart of its test's kind) and the plan's memory
    assert page.count("<svg") == 2
    assert f"{json.loads(lines[0])['avg_ts']:,.2f}" in page
    assert "Traceback" not in result.stderr
    nothing = cli("report", str(empty), str(foreign), "-o", str(tmp_path / "none.html"))
    assert nothing.exit_code == 2 and "nothing to report" in nothing.stderr
    assert not (tmp_path / "none.html").exists()


def test_a_page_replaces_only_an_earlier_page(cli, outputs, tmp_path):
    """-o names where the page goes: an earlier report page there is replaced, but a file gpusplit
    report did not write (a results file named by mistake) is left as it was: exit 2, one line."""
    results = tmp_path / "bench.jsonl"
    results.write_text(outputs["bench.jsonl"].read_text())
    before = results.read_bytes()
    refused = cli("report", str(outputs["plan.json"]), "-o", str(results))
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert str(results) in refused.stderr and "will not overwrite" in refused.stderr
    assert results.read_bytes() == before
    folder = cli("report", str(outputs["plan.json"]), "-o", str(tmp_path))
    assert folder.exit_code == 2 and "is a directory" in folder.stderr
    page = tmp_path / "page.html"
    assert cli("report", str(outputs["plan.json"]), "-o", str(page)).exit_code == 0
    first = page.read_text()
    again = cli("report", str(outputs["plan.json"]), str(outputs["bench.jsonl"]), "-o", str(page))
    assert again.exit_code == 0, again.stderr
    assert page.read_text() != first and str(outputs["bench.jsonl"]) in page.read_text()


def test_without_matplotlib_the_command_names_the_extra(cli, tmp_path, monkeypatch, outputs):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    result = cli("report", str(outputs["plan.json"]), "-o", str(tmp_path / "r.html"))
    assert result.exit_code == 2
    assert 'pip install "gpusplit[report]"' in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium (Debian's chromium package) is not installed")
def test_the_page_renders_in_headless_chromium(cli, outputs, tmp_path):
    """Chromium, offline, draws the page: a screenshot of it is an image with the charts' colours."""
    result, _ = _report(cli, tmp_path, *outputs.values())
    assert result.exit_code == 0, result.stderr
    shot = tmp_path / "shot.png"
    subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=1200,1600", (tmp_path / "report.html").as_uri()],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 20_000
    from matplotlib.image import imread

    pixels = imread(str(shot))
    # the bars' blue (#4e79a7) is on the page
    blue = (
        (abs(pixels[..., 0] - 0x4E / 255) < 0.03)
        & (abs(pixels[..., 1] - 0x79 / 255) < 0.03)
        & (abs(pixels[..., 2] - 0xA7 / 255) < 0.03)
    )
    assert blue.sum() > 2000


def test_probed_devices_are_drawn_by_weight_class(cli, tmp_path):
    """A devices --json file whose devices were probed: each device's read rate per weight class,
    charted and in the table (GB/s), with its fixed cost per token and its link's round trip."""
    from gpusplit.devices.speed import DeviceSpeed

    doc = json.loads(cli("devices", "--json").stdout)
    rates = {"float": 21.5e9, "q8": 30.25e9, "kquant": 41.0e9}
    speed = DeviceSpeed(0.00125, 2e-5, rates, 90e9, 0, 1e-3, 1e-4, {"float": 1e12}, rtt_s=None)
    doc["host"]["speed"] = speed.as_dict()
    worker = {**doc["host"], "name": "RPC0", "speed": {**speed.as_dict(), "bandwidth": {"float": 9.75e9}, "rtt_s": 0.0205}}
    doc["devices"] = [worker]
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(doc))
    result, page = _report(cli, tmp_path, path)
    assert result.exit_code == 0, result.stderr
    assert page.count("<svg") == 1
    for value in ("21.5", "30.2", "41.0", "9.8", "1.250", "20.500"):
        assert f"<td class=num>{value}</td>" in page, value
    unprobed = tmp_path / "plain.json"
    plain = json.loads(cli("devices", "--json").stdout)
    for d in [*plain["devices"], plain["host"]]:
        d.pop("speed", None)
    unprobed.write_text(json.dumps(plain))
    result, page = _report(cli, tmp_path, unprobed)
    assert page.count("<svg") == 0 and "No device here was probed" in page


def test_a_bench_at_several_parallel_counts_charts_users_together_and_each(cli, tmp_path):
    """bench --parallel 1/2/4 (issue 38 item 5): generation against the sequences decoded together,
    all of them and each one's share, measured and predicted, in a chart and a table; a count
    measured once alone draws no line."""
    from records import bench_record

    rows = [
        bench_record(test=f"tg4 x{n}" if n > 1 else "tg4", parallel=n, samples_ts=[together], avg_ts=together,
                     predicted_ts=predicted)
        for n, together, predicted in ((1, 100.0, 110.0), (2, 180.0, 200.0), (4, 300.0, 320.0))
    ]  # fmt: skip
    rows.append(bench_record(config_key="mode=layer", test="tg4 x8", parallel=8, samples_ts=[50.0], avg_ts=50.0))
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result, page = _report(cli, tmp_path, path)
    assert result.exit_code == 0, result.stderr
    section = page[page.index("Serving several users") :]
    assert section.count("<svg") == 1
    for together, each in (("100.00", "100.00"), ("180.00", "90.00"), ("300.00", "75.00")):
        assert f"<td class=num>{together}</td><td class=num>{each}</td>" in section
    assert "<td class=num>80.00</td>" in section  # predicted each at 4: 320 / 4
    assert "mode=layer" not in section  # one count alone: no line
