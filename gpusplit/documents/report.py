"""`gpusplit report`: one self-contained HTML page from gpusplit's own outputs.

Reads any mix of `bench` JSONL (or `bench --json`), `tune --trials` JSONL (or `tune --json`),
`plan --json`, `run --json` and `devices --json` files, and draws each kind: tokens/s per
configuration with its 95 % interval and the prediction marked, a figure measured beside other
work (contended) hatched and marked busy; every tune trial in order,
failures marked, the winner and its flags; memory per device as stacked bars against free memory
(planned beside actual for a run); each probed device's rates by weight class. Every chart has its
numbers in a table below it.

The page opens offline: charts are inline SVG drawn by matplotlib (the `report` extra) with text
as paths (no fonts), no scripts, no external references. Every string from the files is escaped
(model names are untrusted) and loses its control characters; a command line is shown
shell-quoted, as `plan` prints it. A file that cannot be read (empty, unknown) is named in one line
through `on_warning`, a JSONL file's unusable lines (torn, another kind's) in a few, then counted;
the rest is still reported. The work is linear in the records and devices.
"""

from __future__ import annotations

import html
import io
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ..base.errors import InputError
from ..base.files import open_regular
from ..base.journal import ForeignFileError, is_torn
from ..base.jsonio import head, read_bounded
from ..base.text import sanitize_text
from ..base.units import format_bytes
from .models import BenchRecord, TrialRecord
from .read import decode_document, read_any, to_json, without_bom
from .render import memory_parts
from .results import BENCH_SCHEMAS, TRIAL_SCHEMAS, is_contended, is_trial_record, marked_trial

MAX_FILE_BYTES = 64 << 20  # a results file larger than this is not one of ours
LINE_WARNINGS = 3  # a JSONL file's unusable lines named one by one; the rest are counted in one line
KINDS = ("bench", "tune", "plan", "run", "devices")
SCHEMA_KIND = {
    **dict.fromkeys(BENCH_SCHEMAS, "bench"),
    **dict.fromkeys((*TRIAL_SCHEMAS, "gpusplit.tune/1", "gpusplit.tune/2", "gpusplit.tune/3"), "tune"),
    **dict.fromkeys(("gpusplit.plan/1", "gpusplit.plan/2"), "plan"),
    **dict.fromkeys(("gpusplit.run/1", "gpusplit.run/2", "gpusplit.run/3"), "run"),
    **dict.fromkeys(("gpusplit.devices/1", "gpusplit.devices/2"), "devices"),
}
COMPONENTS = (("weights", "#4e79a7"), ("KV", "#f28e2b"), ("compute", "#59a14f"), ("runtime", "#b07aa1"))
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")
BUSY = "busy"  # the mark of a figure measured while other work took CPU time it needed


PAGE_MARK = "<h1>gpusplit report</h1>"  # how check_replaceable knows a page this module wrote


class ReportError(InputError):
    """Nothing in the files could be reported."""


class MissingExtraError(InputError):
    """matplotlib (the `report` extra) is not installed: an install to do, as wrong input is."""


@dataclass
class Source:
    """One input file and what it held: bench records, tune trials (and the tune document), or one
    plan, run or devices document."""

    path: str
    kind: str
    records: list[dict[str, Any]] = field(default_factory=list)
    doc: dict[str, Any] | None = None


def clean(text: Any, limit: int = 200) -> str:
    """A string from a file, safe to show: control characters dropped, cut to `limit`."""
    value = sanitize_text(str(text))
    return value if len(value) <= limit else value[: limit - 1] + "…"


def esc(text: Any, limit: int = 200) -> str:
    return html.escape(clean(text, limit), quote=True)


def check_replaceable(path: Path, parameter: str = "out") -> None:
    """Raise ForeignFileError unless `path` is missing, empty or a page `report` wrote: a mistyped
    -o (a results file, a model) must not be replaced by a page."""
    if not path.exists():
        return
    if not path.is_file():
        raise ForeignFileError("{p} {path} is {kind}", "name a new file to write the page to", parameter=parameter,
                               path=str(path), kind="a directory" if path.is_dir() else "not a regular file")  # fmt: skip
    with open_regular(path, parameter) as f:
        head = f.read(4096)
    if head and not (head.startswith(b"<!DOCTYPE html>") and PAGE_MARK.encode() in head):
        raise ForeignFileError(
            "{p} {path} is not a page gpusplit report wrote, so it will not overwrite it",
            "name a new file, or a report page; this one was left untouched",
            parameter=parameter,
            path=str(path),
        )


# ---------------------------------------------------------------------------------------------
# Reading


def read_source(path: str | os.PathLike[str], on_warning: Callable[[str], None]) -> Source | None:
    """What one file holds, each document and record checked as any reader of gpusplit's checks it
    (one bad field of a file that says it is gpusplit's is an InputError naming it); None (said
    through `on_warning`) where nothing in the file is gpusplit's."""
    name = str(path)
    try:
        data = read_bounded(path, "files", MAX_FILE_BYTES)
    except InputError as exc:
        on_warning(f"{exc.message}: skipped")
        return None
    data = without_bom(data)
    if not data.strip():
        on_warning(f"{name}: empty: skipped")
        return None
    if _is_one_document(data):  # never read as lines, whatever it holds
        return _whole_document(name, data, on_warning)
    if _is_jsonl(data):
        return _read_lines(name, data, on_warning)
    schema = _schema(data)
    if schema in SCHEMA_KIND:
        return _document(name, data, schema)  # one of ours that is not JSON throughout: the decoder says where
    return _read_lines(name, data, on_warning)


def _schema(data: bytes) -> str | None:
    """The `schema` a document or line names: a string, or None where it names none; any other
    value (a list, an object) is kept as a word that names no kind of ours."""
    value = head(data)
    return value if value is None or isinstance(value, str) else "(not a string)"


def _is_one_document(data: bytes) -> bool:
    """The whole file is one JSON value (checked, not decoded)."""
    try:
        msgspec.json.decode(data, type=msgspec.Raw)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def _whole_document(name: str, data: bytes, on_warning: Callable[[str], None]) -> Source | None:
    """A file holding one JSON value: a document or record of gpusplit's, a `bench --json` array, a
    single unmarked trial, or (said in one line) none of them."""
    schema = _schema(data)
    if schema in SCHEMA_KIND:
        return _document(name, data, schema)
    if data.lstrip().startswith(b"["):
        return _bench_array(name, data, on_warning)
    if schema is None and _unmarked_trial(data):
        return Source(name, "tune", records=[_record(data, name, "tune")])
    what = f" (schema {clean(schema, 60)!r})" if schema is not None else ""
    on_warning(f"{name}: not a gpusplit bench, tune, plan, run or devices output{what}: skipped")
    return None


def _is_jsonl(data: bytes) -> bool:
    """One JSON object per line (bench or tune results), not one document: its first line is a
    whole object and more follows."""
    first, _, rest = data.lstrip().partition(b"\n")
    if not rest.strip():
        return False
    try:
        return isinstance(msgspec.json.decode(first), dict)
    except (msgspec.DecodeError, RecursionError):
        return False


def _document(name: str, data: bytes, schema: str) -> Source:
    """A file holding one document (or one record) of gpusplit's, checked."""
    kind = SCHEMA_KIND[schema]
    if kind == "bench":
        return Source(name, "bench", records=[_record(data, name, "bench")])
    if schema.startswith("gpusplit.trial/"):
        return Source(name, "tune", records=[_record(data, name, "tune")])
    doc = read_any(data, kind, name, "files")
    if kind == "tune":
        return Source(name, "tune", records=list(doc["trials"]), doc=doc)
    return Source(name, kind, doc=doc)


def _record(line: bytes, where: str, kind: str) -> dict[str, Any]:
    """A bench record or a tune trial, checked."""
    if kind == "bench":
        return to_json(decode_document(line, BenchRecord, where, "files", BENCH_SCHEMAS))
    if head(line) is None:
        line = marked_trial(line)  # a trial line written before trials were marked
    return to_json(decode_document(line, TrialRecord, where, "files", TRIAL_SCHEMAS))


def _bench_array(name: str, data: bytes, on_warning: Callable[[str], None]) -> Source | None:
    """`bench --json`: an array of records, each checked."""
    try:
        items = msgspec.json.decode(data, type=list[msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        on_warning(f"{name}: not a gpusplit bench, tune, plan, run or devices output: skipped")
        return None
    if not items or any(SCHEMA_KIND.get(_schema(bytes(item)) or "") != "bench" for item in items):
        on_warning(f"{name}: not an array of gpusplit bench records: skipped")
        return None
    return Source(name, "bench", records=[_record(bytes(item), f"{name}[{i}]", "bench") for i, item in enumerate(items)])


def _read_lines(name: str, data: bytes, on_warning: Callable[[str], None]) -> Source | None:
    """A JSONL file: bench records or tune trials, one kind per file; a line cut short (a run killed
    mid-write) or another kind's is skipped: the first few named, the rest counted."""
    records: list[dict[str, Any]] = []
    kinds: set[str] = set()
    skipped = 0

    def skip(where: str, why: str) -> None:
        nonlocal skipped
        skipped += 1
        if skipped <= LINE_WARNINGS:
            on_warning(f"{where}: {why}: skipped")

    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        if is_torn(line):
            skip(where, "not a complete JSON record (cut short?)")
            continue
        schema = _schema(line)
        kind = SCHEMA_KIND.get(schema) if schema is not None else ("tune" if _unmarked_trial(line) else None)
        if kind not in ("bench", "tune") or (schema is not None and kind == "tune" and not schema.startswith("gpusplit.trial/")):
            kind = None
        if kind is None or (kinds and kind not in kinds):
            skip(where, "not a gpusplit bench or tune record")
            continue
        kinds.add(kind)
        records.append(_record(line, where, kind))
    nothing = "no gpusplit bench, tune, plan, run or devices output in it"
    if skipped > LINE_WARNINGS:
        on_warning(
            f"{name}: and {skipped - LINE_WARNINGS:,} more lines like these: skipped" + ("" if records else f" ({nothing})")
        )
    elif not records:
        on_warning(f"{name}: {nothing}: skipped")
    if not records:
        return None
    return Source(name, kinds.pop(), records=records)


def _unmarked_trial(line: bytes) -> bool:
    try:
        record = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return False
    return isinstance(record, dict) and is_trial_record(record)


# ---------------------------------------------------------------------------------------------
# Charts (matplotlib, imported only here)


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError(
            "gpusplit report draws its charts with matplotlib, which is not installed",
            'install the report extra: pip install "gpusplit[report]"',
        ) from None
    matplotlib.rcParams.update(
        {
            "svg.fonttype": "path",  # text as shapes: the page needs no font
            "text.parse_math": False,  # a model name with $ in it is a name, not TeX
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    from matplotlib.figure import Figure

    return Figure


class _Charts:
    def __init__(self) -> None:
        self.Figure = _matplotlib()
        self.count = 0

    def figure(self, width: float, height: float) -> Any:
        return self.Figure(figsize=(width, height), layout="constrained")

    def svg(self, fig: Any) -> str:
        """The figure as inline SVG: its ids unique on the page, no metadata, no comments (which
        would carry the files' strings unescaped)."""
        import matplotlib

        self.count += 1
        matplotlib.rcParams["svg.hashsalt"] = f"gpusplit-chart-{self.count}"
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
        text = buffer.getvalue()
        text = text[text.index("<svg") :]
        text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
        text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
        return f'<div class="chart">{text}</div>'


# ---------------------------------------------------------------------------------------------
# Sections


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in right else ''}>{esc(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _interval(pair: Sequence[float] | None) -> str:
    return "-" if not pair else f"{pair[0]:,.2f} – {pair[1]:,.2f}"


def _bench_rows(sources: list[Source]) -> list[tuple[str, str, dict[str, Any]]]:
    """(file, label, record) for every record, in file order."""
    out = []
    for s in sources:
        for r in s.records:
            out.append((s.path, f"{clean(r.get('config_key', '?'), 60)} · {clean(r.get('test', '?'), 20)}", r))
    return out


def bench_section(sources: list[Source], charts: _Charts) -> str:
    parts = ["<h2>Benchmarks</h2>"]
    names = {r.get("model", {}).get("name", "?") for s in sources for r in s.records}
    parts.append(f"<p>Model{'s' if len(names) > 1 else ''}: {esc(', '.join(sorted(map(str, names))), 300)}. "
                 "Bars: mean tokens/s (outliers set aside); whiskers: its 95 % interval; ◆: predicted; hatched and "
                 f"marked {BUSY}: measured while other work took CPU time it needed.</p>")  # fmt: skip
    rows = _bench_rows(sources)
    files = [s.path for s in sources]
    for kind, title in (("pp", "Prompt processing"), ("tg", "Generation")):
        mine = [(f, label, r) for f, label, r in rows if r.get("test_kind") == kind]
        if not mine:
            continue
        labels = list(dict.fromkeys(label for _, label, _ in mine))
        fig = charts.figure(8.5, 0.9 + 0.32 * len(labels) * max(len(files), 1))
        ax = fig.subplots()
        height = 0.8 / len(files)
        by_file: dict[str, dict[str, dict[str, Any]]] = {path: {} for path in files}
        for f, label, record in mine:
            by_file[f][label] = record
        # one call per file and mark for all its records (a call per record is slow by the thousand)
        for fi, path in enumerate(files):
            color = PALETTE[fi % len(PALETTE)]
            ys: list[float] = []
            means: list[float] = []
            busy: list[bool] = []
            whiskers: list[tuple[float, float, float, float]] = []  # y, mean, below, above
            failed_ys: list[float] = []
            predicted: list[tuple[float, float]] = []
            for li, label in enumerate(labels):
                shown = by_file[path].get(label)
                if shown is None:
                    continue
                y = li + (fi - (len(files) - 1) / 2) * height
                mean = shown.get("mean_ts")
                if shown.get("status") != "ok" or not mean:
                    failed_ys.append(y)
                    continue
                ys.append(y)
                means.append(mean)
                busy.append(is_contended(shown))
                if shown.get("interval_ts"):  # one repetition has none: no whisker
                    low, high = shown["interval_ts"]
                    # a mean outside its interval (an edited file): no whisker on that side
                    whiskers.append((y, mean, max(mean - low, 0.0), max(high - mean, 0.0)))
                if shown.get("predicted_ts"):
                    predicted.append((shown["predicted_ts"], y))
            if ys:
                quiet = [(y, m) for y, m, b in zip(ys, means, busy) if not b]
                loud = [(y, m) for y, m, b in zip(ys, means, busy) if b]
                for drawn, hatch in ((quiet, None), (loud, "///")):  # a hatch per call: matplotlib < 3.10 takes one
                    if drawn:
                        ax.barh(*zip(*drawn), height=height * 0.9, color=color, hatch=hatch, edgecolor="#222" if hatch else color,
                                label=None if drawn is loud and quiet else clean(path, 60))  # fmt: skip
                if whiskers:
                    wy, wx, below, above = zip(*whiskers)
                    ax.errorbar(wx, wy, xerr=[below, above], fmt="none", ecolor="#222", capsize=4, lw=1.4)
                for y, b in zip(ys, busy):
                    if b:  # at the bar's base, on a light box: readable however short the bar
                        ax.annotate(BUSY, (0, y), xytext=(3, 0), textcoords="offset points", ha="left", va="center",
                                    color="#222", fontsize=7.5, bbox={"boxstyle": "round,pad=0.15", "fc": "white",
                                                                      "ec": "none", "alpha": 0.85})  # fmt: skip
            if predicted:
                ax.plot(*zip(*predicted), linestyle="none", marker="D", color="#222", markersize=5)
            if failed_ys:
                ax.plot([0] * len(failed_ys), failed_ys, linestyle="none", marker="x", color="#e15759", markersize=8)
                for y in failed_ys:
                    ax.annotate("failed", (0, y), xytext=(6, -3), textcoords="offset points", color="#e15759")
        ax.set_yticks(range(len(labels)), [clean(label, 60) for label in labels])
        ax.invert_yaxis()
        ax.set_xlabel("tokens/s")
        ax.set_title(f"{title} (tokens/s)")
        if len(files) > 1:
            ax.legend(loc="lower right", fontsize=8)
        parts.append(f"<h3>{title}</h3>")
        parts.append(charts.svg(fig))
        parts.append(
            _table(
                ["file", "configuration", "test", "status", "mean t/s", "95 % interval", "outliers", "slowest", "fastest",
                 "predicted t/s", "error %", "measured"],
                (
                    (
                        f, r.get("config_key", "?"), r.get("test", "?"), r.get("status", "?"), _num(r.get("mean_ts")),
                        _interval(r.get("interval_ts")), len(r.get("outliers_ts") or []) or "",
                        _num(min(r["samples_ts"]) if r.get("samples_ts") else None),
                        _num(max(r["samples_ts"]) if r.get("samples_ts") else None),
                        _num(r.get("predicted_ts")), _num(r.get("prediction_error_pct"), 1),
                        BUSY if is_contended(r) else "",
                    )
                    for f, _, r in mine
                ),
                right=(4, 5, 6, 7, 8, 9, 10),
            )
        )  # fmt: skip
        failed = [(f, r) for f, _, r in mine if r.get("status") != "ok"]
        for f, r in failed:
            parts.append(
                f"<p class=fail>{esc(f)}: {esc(r.get('config_key'))} {esc(r.get('test'))} failed: {esc(r.get('error'), 400)}</p>"
            )
    parts.append(users_section(rows, charts))
    return "\n".join(parts)


def _parallel(record: dict[str, Any]) -> int:
    value = record.get("parallel", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def users_section(rows: list[tuple[str, str, dict[str, Any]]], charts: _Charts) -> str:
    """Generation against the number of sequences decoded together (bench --parallel): all of them
    together and each one's share, measured and predicted, one line per (file, configuration,
    test length and depth) measured at two or more counts. Empty where there is none."""
    groups: dict[tuple[str, str, Any, Any], list[dict[str, Any]]] = {}
    for f, _, r in rows:
        if r.get("test_kind") == "tg" and r.get("status") == "ok" and r.get("mean_ts"):
            groups.setdefault((f, clean(r.get("config_key", "?"), 60), r.get("n_tokens"), r.get("depth")), []).append(r)
    lines = {k: sorted(v, key=_parallel) for k, v in groups.items() if len({_parallel(r) for r in v}) >= 2}
    if not lines:
        return ""
    fig = charts.figure(8.5, 3.8 + 0.18 * len(lines))
    together, each = fig.subplots(1, 2)
    for index, ((f, config, n, depth), records) in enumerate(lines.items()):
        color = PALETTE[index % len(PALETTE)]
        counts = [_parallel(r) for r in records]
        label = clean(f"{Path(f).name} · {config} · tg{n}" + (f" @ d{depth}" if depth else ""), 80)
        together.plot(counts, [r["mean_ts"] for r in records], marker="o", color=color, label=label)
        each.plot(counts, [r["mean_ts"] / c for r, c in zip(records, counts)], marker="o", color=color)
        predicted = [(c, r["predicted_ts"]) for r, c in zip(records, counts) if r.get("predicted_ts")]
        if predicted:
            xs, ys = zip(*predicted)
            together.plot(xs, ys, linestyle="--", marker="D", markersize=4, color=color)
            each.plot(xs, [y / x for x, y in zip(xs, ys)], linestyle="--", marker="D", markersize=4, color=color)
    counts = sorted({_parallel(r) for records in lines.values() for r in records})
    for ax, title in ((together, "All sequences together"), (each, "Each sequence (a user)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(c) for c in counts])  # plain numbers: the SVG shows no mathtext
        ax.minorticks_off()
        ax.set_xlabel("sequences decoded together")
        ax.set_ylabel("tokens/s")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
    fig.legend(*together.get_legend_handles_labels(), loc="outside lower center", fontsize=7)
    table = _table(
        ["file", "configuration", "test", "sequences", "together t/s", "each t/s", "predicted together", "predicted each"],
        (
            (f, config, r.get("test", "?"), _parallel(r), _num(r["mean_ts"]), _num(r["mean_ts"] / _parallel(r)),
             _num(r.get("predicted_ts")), _num(r["predicted_ts"] / _parallel(r) if r.get("predicted_ts") else None))
            for (f, config, _, _), records in lines.items()
            for r in records
        ),
        right=(3, 4, 5, 6, 7),
    )  # fmt: skip
    return (
        "<h3>Serving several users</h3><p>Generation with N sequences decoded together (bench --parallel): solid, "
        "measured; dashed with ◆, predicted.</p>" + charts.svg(fig) + table
    )


def tune_section(source: Source, charts: _Charts) -> str:
    trials = source.records
    doc = source.doc or {}
    best = doc.get("best")
    if best is None:
        scored = [t for t in trials if t.get("status") == "ok" and t.get("score")]
        best = max(scored, key=lambda t: t["score"]) if scored else None
    parts = [f"<h2>Tune: {esc(source.path)}</h2>"]
    fig = charts.figure(8.5, 3.6)
    ax = fig.subplots()
    elapsed, xs, ys, colors = 0.0, [], [], []
    for t in trials:
        elapsed += float(t.get("seconds") or 0.0)
        xs.append(elapsed)
        ys.append(t.get("score") or t.get("measured_tg") or 0.0)
        colors.append({"ok": "#4e79a7", "skipped": "#bab0ac", "failed": "#e15759"}.get(str(t.get("status")), "#bab0ac"))
    ok = [(x, y) for x, y, t in zip(xs, ys, trials) if t.get("status") == "ok"]
    if ok:
        ax.plot(*zip(*ok), color="#4e79a7", lw=0.8, alpha=0.5)
    for status, marker, color in (("ok", "o", "#4e79a7"), ("skipped", "s", "#bab0ac"), ("failed", "x", "#e15759")):
        points = [(x, y) for x, y, t in zip(xs, ys, trials) if t.get("status") == status]
        if points:
            ax.scatter(*zip(*points), marker=marker, color=color, label=status, zorder=3)
    if best is not None:
        # the winner's best measurement (the final rounds measure it again, under the same key)
        same = [i for i, t in enumerate(trials) if t.get("key") == best.get("key")]
        index = max(same, key=lambda i: ys[i]) if same else None
        if index is not None:
            ax.scatter([xs[index]], [ys[index]], marker="*", s=220, color="#edc948", edgecolor="#333", zorder=4, label="winner")
    ax.set_xlabel("seconds into the search")
    ax.set_ylabel(f"score ({esc(doc.get('objective', 'tokens/s'))})")
    ax.set_title("Every trial, in order")
    ax.legend(loc="lower right", fontsize=8)
    parts.append(charts.svg(fig))
    if best is not None:
        flags = doc.get("plan", {}).get("llama_args")
        # the winner's llama-server flags where the tune document gives them (a trials file has its key)
        shown = f"<pre>{esc(shlex.join(['llama-server', *map(str, flags)]), 2000)}</pre>" if flags else ""
        parts.append(f"<p>Winner: <b>{esc(best.get('key'))}</b>, {_num(best.get('score'))} "
                     f"(measured tg {_num(best.get('measured_tg'))} t/s, pp {_num(best.get('measured_pp'))} t/s)."
                     f"{' ' + esc(doc.get('chosen')) + '.' if doc.get('chosen') else ''}</p>{shown}")  # fmt: skip
    parts.append(
        _table(
            ["#", "configuration", "status", "score", "measured tg", "measured pp", "predicted tg", "seconds", "error"],
            (
                (i + 1, t.get("key"), f"{t.get('status')}{' ' + BUSY if is_contended(t) else ''}", _num(t.get("score")),
                 _num(t.get("measured_tg")),
                 _num(t.get("measured_pp")), _num(t.get("predicted_tg")), _num(t.get("seconds"), 1), t.get("error") or "")
                for i, t in enumerate(trials)
            ),
            right=(0, 3, 4, 5, 6, 7),
        )
    )  # fmt: skip
    return "\n".join(parts)


def _plan_devices(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in [*plan.get("devices", []), plan.get("host", {})] if d]


def memory_section(source: Source, charts: _Charts) -> str:
    """A plan's (or a run's: planned beside actual) memory per device, stacked, against free memory."""
    doc = source.doc or {}
    run = doc if source.kind == "run" else None
    plan = doc.get("plan", {}) if run else doc
    devices = _plan_devices(plan)
    model = plan.get("model", {}).get("name", "?")
    title = "Run" if run else "Plan"
    parts = [f"<h2>{title}: {esc(model)} ({esc(plan.get('strategy', '?'))}) — {esc(source.path)}</h2>"]
    actual = {d.get("name"): d for d in (run or {}).get("devices", [])}
    bars: list[tuple[str, Mapping[str, float], float | None]] = []  # label, component -> bytes, free
    for d in devices:
        bars.append((f"{d.get('name')} planned" if run else str(d.get("name")), memory_parts(d), d.get("free_bytes")))
        measured = actual.get(d.get("name"))
        if measured and measured.get("actual"):
            a = measured["actual"]
            bars.append((f"{d.get('name')} actual",
                         {"weights": a.get("weights", 0), "KV": a.get("kv", 0), "compute": a.get("compute", 0) + a.get("output", 0),
                          "runtime": a.get("runtime", 0)}, d.get("free_bytes")))  # fmt: skip
    gib = 2**30
    fig = charts.figure(8.5, 1.0 + 0.45 * len(bars))
    ax = fig.subplots()
    # one call per component for every bar (a call, or a legend lookup, per bar is quadratic work)
    lefts = [0.0] * len(bars)
    for component, color in COMPONENTS:
        values = [float(parts_bytes.get(component) or 0) / gib for _, parts_bytes, _ in bars]
        drawn = [i for i, value in enumerate(values) if value]
        if drawn:
            ax.barh(drawn, [values[i] for i in drawn], left=[lefts[i] for i in drawn], color=color, label=component)
        lefts = [left + value for left, value in zip(lefts, values)]
    frees = [(i, free / gib) for i, (_, _, free) in enumerate(bars) if free]
    if frees:
        ax.vlines([x for _, x in frees], [i - 0.42 for i, _ in frees], [i + 0.42 for i, _ in frees], color="#e15759", lw=2,
                  label="free")  # fmt: skip
    ax.set_yticks(range(len(bars)), [clean(b[0], 40) for b in bars])
    ax.invert_yaxis()
    ax.set_xlabel("GiB")
    ax.set_title("Memory per device (red: free before loading)")
    ax.legend(loc="lower right", fontsize=8)
    parts.append(charts.svg(fig))
    parts.append(
        _table(
            ["device", "weights", "KV", "compute", "runtime", "total", "free"],
            ((label, *(format_bytes(int(b.get(c) or 0)) for c, _ in COMPONENTS), format_bytes(int(sum(float(v or 0) for v in b.values()))),
              format_bytes(int(free)) if free else "-") for label, b, free in bars),
            right=(1, 2, 3, 4, 5, 6),
        )
    )  # fmt: skip
    if run:
        t = run.get("timings", {})
        p = run.get("predicted", {})
        parts.append(
            _table(
                ["", "load ms", "prompt t/s", "generation t/s"],
                [("measured", _num(t.get("load_ms"), 0), _num(t.get("prompt_tps"), 1), _num(t.get("gen_tps"), 1)),
                 ("predicted", _num((p.get("load_s") or 0) * 1000, 0) if p.get("load_s") else "-", _num(p.get("prompt_tps"), 1),
                  _num(p.get("gen_tps"), 1))],
                right=(1, 2, 3),
            )
        )  # fmt: skip
        if run.get("text"):
            parts.append(f"<p>Generated: <q>{esc(run['text'], 600)}</q></p>")
    return "\n".join(parts)


def probe_section(source: Source, charts: _Charts) -> str:
    doc = source.doc or {}
    measured = [d for d in [*doc.get("devices", []), doc.get("host") or {}] if d and d.get("speed")]
    parts = [f"<h2>Devices: {esc(source.path)}</h2>"]
    if not measured:
        parts.append("<p>No device here was probed (gpusplit devices --probe measures them).</p>")
        return "\n".join(parts)
    classes = list(dict.fromkeys(c for d in measured for c in d["speed"].get("bandwidth", {})))
    fig = charts.figure(8.5, 3.4)
    ax = fig.subplots()
    width = 0.8 / len(measured)
    for di, d in enumerate(measured):
        rates = d["speed"].get("bandwidth", {})
        xs = [ci + (di - (len(measured) - 1) / 2) * width for ci in range(len(classes))]
        ax.bar(xs, [float(rates.get(c) or 0) / 1e9 for c in classes], width=width * 0.9, color=PALETTE[di % len(PALETTE)],
               label=clean(d.get("name"), 40))  # fmt: skip
    ax.set_xticks(range(len(classes)), [clean(c, 20) for c in classes], rotation=30, ha="right")
    ax.set_ylabel("GB/s")
    ax.set_title("Weights read per second, by weight class (devices --probe)")
    ax.legend(fontsize=8)
    parts.append(charts.svg(fig))
    parts.append(
        _table(
            ["device", *classes, "token overhead ms", "round trip ms"],
            ((d.get("name"), *(_num(float(d["speed"]["bandwidth"].get(c) or 0) / 1e9, 1) for c in classes),
              _num(d["speed"].get("token_overhead_s", 0) * 1e3, 3),
              _num(d["speed"]["rtt_s"] * 1e3, 3) if d["speed"].get("rtt_s") else "-") for d in measured),
            right=tuple(range(1, len(classes) + 3)),
        )
    )  # fmt: skip
    return "\n".join(parts)


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 62em; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; } .chart svg { max-width: 100%; height: auto; } .fail, .warn { color: #b3261e; }
pre { background: #f6f6f6; padding: .6em; white-space: pre-wrap; word-break: break-all; } .meta { color: #666; font-size: 12px; }
"""


def render(sources: list[Source], warnings: Sequence[str] = (), generated_by: str = "") -> str:
    """The report page for these sources."""
    charts = _Charts()
    sections = []
    bench = [s for s in sources if s.kind == "bench"]
    if bench:
        sections.append(bench_section(bench, charts))
    for s in sources:
        if s.kind == "tune":
            sections.append(tune_section(s, charts))
    for s in sources:
        if s.kind in ("plan", "run"):
            sections.append(memory_section(s, charts))
    for s in sources:
        if s.kind == "devices":
            sections.append(probe_section(s, charts))
    files = "".join(
        f"<li>{esc(s.path, 300)}: {esc(s.kind)}{f' ({len(s.records)} records)' if s.records else ''}</li>" for s in sources
    )
    notes = "".join(f'<li class="warn">{esc(w, 400)}</li>' for w in warnings)
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>gpusplit report</title><style>{STYLE}</style></head><body>"
        f"{PAGE_MARK}<p class=meta>{esc(generated_by, 400)}</p><ul>{files}</ul>"
        + (f"<ul>{notes}</ul>" if notes else "")
        + "\n".join(sections)
        + "</body></html>\n"
    )


def report(
    paths: Sequence[str | os.PathLike[str]], on_warning: Callable[[str], None] = lambda text: None, generated_by: str = ""
) -> str:
    """The page for these files. A file that cannot be read is said through `on_warning` and left
    out; ReportError when none can be; MissingExtraError without matplotlib."""
    warnings: list[str] = []

    def warn(text: str) -> None:
        warnings.append(text)
        on_warning(text)

    sources = [s for s in (read_source(p, warn) for p in paths) if s is not None]
    if not sources:
        raise ReportError(
            "nothing to report: none of the files is a gpusplit bench, tune, plan, run or devices output",
            "give files gpusplit wrote: bench results, tune trials, or plan, run and devices documents",
        )
    return render(sources, warnings, generated_by)
