"""Results files: the JSONL that `bench --output` and `tune --trials` append to as each result
comes (base/journal.py keeps them whole and refuses files that are not ours), read back to resume,
compare and report."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..base import journal
from ..base.contention import Contention
from ..base.errors import InputError
from ..base.jsonio import head
from ..base.stats import Summary, change, summarize
from ..jobs.runner import Recovery
from ..jobs.tune import Trial, most_disturbed
from ..planning.request import DEFAULT, Request
from .models import BenchRecord, TrialRecord
from .read import decode_document, to_json
from .render import BENCH_SCHEMA, TRIAL_VALUES, trial_document

# ---------------------------------------------------------------------------------------------
# bench: gpusplit.bench/3 records, one per line


# /1: engine_params said use_extra_bufts; /2: no noise (mean, interval, outliers) nor contention
BENCH_SCHEMAS = ("gpusplit.bench/1", "gpusplit.bench/2", BENCH_SCHEMA)


def is_bench_record(record: dict[str, Any]) -> bool:
    return record.get("schema") in BENCH_SCHEMAS


def check_results_file(path: Path, parameter: str) -> None:
    """Refuse (file untouched) a results file to append to that is not a bench JSONL."""
    journal.check_ours(path, is_bench_record, BENCH_SCHEMA, parameter)


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record and make it durable before the next configuration starts."""
    journal.append(path, record)


def read_records(path: Path, parameter: str = "resume_file") -> list[dict[str, Any]]:
    """Every record of a bench JSONL file, each checked (a bad one is an InputError naming its line
    and field); a line cut short by a kill is ignored."""
    return [
        to_json(decode_document(line, BenchRecord, f"{path} line {number}", parameter, BENCH_SCHEMAS))
        for number, line in journal.record_lines(path, parameter)
    ]


def done_keys(records: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r.get("config_key", ""), r.get("test", "")) for r in records}


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]], a_name: str = "a", b_name: str = "b") -> Iterator[dict[str, Any]]:
    """Per (configuration, test) present in both: b against a, whether b is faster, slower or the
    same within their noise, and whether either side was measured beside other work.

    A side with one run (one record of the row) is the mean of its repetitions with their 95 %
    interval. A side with several runs (benches appended to one file) is the mean of the runs'
    means with the t-interval over runs: repetitions inside one run agree far more closely than
    runs minutes apart (docs/busy.md: 3-8 % against 20-36 % on a VM), and only the runs show that
    drift, as pyperf judges its processes, not the values inside one. A row whose runs in one file
    are of different models or thread counts is an InputError naming the file (`a_name`, `b_name`)."""
    index = _runs(a, a_name)
    for key, new_runs in _runs(b, b_name).items():
        base_runs = index.get(key)
        if base_runs is None:
            continue
        base, new = _side(base_runs), _side(new_runs)
        moved = change(base.summary, new.summary)
        verdict = "same" if not moved.separated else "faster" if moved.pct > 0 else "slower"
        yield {
            "config": key[0],
            "test": key[1],
            "a_ts": round(base.summary.mean, 3),
            "b_ts": round(new.summary.mean, 3),
            "ratio": round(new.summary.mean / base.summary.mean, 4) if base.summary.mean else None,
            "change_pct": round(moved.pct, 2),
            # the change's interval: None where a side has one run of one repetition (no noise known)
            "change_low_pct": _finite(moved.low_pct),
            "change_high_pct": _finite(moved.high_pct),
            "verdict": verdict,
            "a_runs": len(base_runs),
            "b_runs": len(new_runs),
            "a_outliers": base.outliers,
            "b_outliers": new.outliers,
            "a_runs_aside": base.runs_aside,
            "b_runs_aside": new.runs_aside,
            "contended": any(is_contended(r) for r in (*base_runs, *new_runs)),
        }


def _runs(records: list[dict[str, Any]], name: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The measured records of each (configuration, test), in file order: one per run, all of one
    setup (a configuration's key names neither the model nor the threads)."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if _measured(r):
            runs.setdefault((r["config_key"], r["test"]), []).append(r)
    for (config, test), mine in runs.items():
        setups = list(dict.fromkeys(_setup(r) for r in mine))
        if len(setups) > 1:
            raise InputError(
                "{file}: {config} {test} holds runs of different setups ({first}; {second})",
                "keep one model and thread count in each file, and compare files pairwise",
                file=name, config=config, test=test, first=setups[0], second=setups[1],
            )  # fmt: skip
    return runs


def _setup(record: dict[str, Any]) -> str:
    """What a run measured beyond its configuration's key: the model and the CPU threads."""
    model = record.get("model") or {}
    threads = (record.get("engine_params") or {}).get("n_threads")
    return f"{model.get('name', '?')} ({model.get('total_bytes', '?')} bytes), {threads or 'default'} threads"


def lost(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (configuration, test) rows a measured that b ran and never measured: every run failed."""
    measured = {(r["config_key"], r["test"]) for r in a if _measured(r)}
    done = {(r["config_key"], r["test"]) for r in b if _measured(r)}
    tried = {(r["config_key"], r["test"]) for r in b}
    rows = dict.fromkeys((r["config_key"], r["test"]) for r in a)
    return [key for key in rows if key in measured and key in tried and key not in done]


def _measured(record: dict[str, Any]) -> bool:
    return record["status"] == "ok" and bool(record["samples_ts"])


def failed_runs(records: list[dict[str, Any]]) -> int:
    return sum(1 for r in records if r["status"] != "ok")


@dataclass(frozen=True)
class _Side:
    summary: Summary
    outliers: int  # repetitions set aside inside the runs
    runs_aside: int  # whole runs set aside (4 runs or more)


def _side(runs: list[dict[str, Any]]) -> _Side:
    inside = [summarize(r["samples_ts"]) for r in runs]
    aside = sum(len(s.outliers) for s in inside)
    if len(inside) == 1:
        return _Side(inside[0], aside, 0)
    over_runs = summarize([s.mean for s in inside])
    return _Side(over_runs, aside, len(over_runs.outliers))


def single_runs(rows: Iterable[dict[str, Any]]) -> int:
    """The compared rows with an interval and a side of one run: the interval cannot see the drift
    between runs."""
    return sum(1 for r in rows if min(r["a_runs"], r["b_runs"]) == 1 and r["change_high_pct"] is not None)


def is_contended(record: dict[str, Any]) -> bool:
    """A bench record measured while other work took CPU time it needed (not where unwatched)."""
    seen = record.get("contention")
    return isinstance(seen, dict) and seen.get("contended") is True


def _finite(value: float) -> float | None:
    return round(value, 2) if math.isfinite(value) else None


def regressions(rows: Iterable[dict[str, Any]], slower_pct: float) -> list[dict[str, Any]]:
    """The compared rows where b is slower than a by more than `slower_pct` percent even at its
    interval's optimistic end: beyond the noise of both runs, not merely beyond their means."""
    return [r for r in rows if r["change_high_pct"] is not None and r["change_high_pct"] < -slower_pct]


# ---------------------------------------------------------------------------------------------
# tune: one trial per line

TRIAL_SCHEMA = "gpusplit.trial/3"
# /1: a tune Config's fields under "config"; /2: no intervals nor contention
TRIAL_SCHEMAS = ("gpusplit.trial/1", "gpusplit.trial/2", TRIAL_SCHEMA)
# the fields of a trial/1 record (and of the unmarked lines written before the schema mark)
_LEGACY_TRIAL_FIELDS = frozenset(
    {"key", "config", "strategy", "fits", "predicted_tg", "predicted_pp", "measured_tg", "measured_pp", "score", "status",
     "error", "seconds", "min_headroom_bytes", "recovery", "samples", "round"}
)  # fmt: skip


def is_trial_record(record: dict[str, Any]) -> bool:
    """A line of a --trials file: schema-marked, or (files written before the mark) a trial's fields."""
    if "schema" in record:
        return record["schema"] in TRIAL_SCHEMAS
    return {"key", "config", "status"} <= record.keys() <= _LEGACY_TRIAL_FIELDS


def check_trials_file(path: Path, parameter: str = "trials_file") -> None:
    """Refuse (exit 2, file untouched) a trials file that is not tune's JSONL."""
    journal.check_ours(path, is_trial_record, TRIAL_SCHEMA, parameter)


def append_trial(path: Path, trial: Trial) -> None:
    journal.append(path, trial_record(trial))


def read_trials(path: Path, base: Request = DEFAULT, parameter: str = "resume_file") -> list[Trial]:
    """The trials of an earlier run (JSONL, one per line, each checked; a final round's measurement
    joins its trial's samples); a line cut short by a kill is ignored. Trials written before they
    kept their request (trial/1) are the tune Config's fields on `base`."""
    out: dict[str, Trial] = {}
    for number, line in journal.record_lines(path, parameter):
        where = f"{path} line {number}"
        if head(line) is None:  # an unmarked line, from before the schema mark, is a trial/1
            line = marked_trial(line)
        doc = decode_document(line, TrialRecord, where, parameter, TRIAL_SCHEMAS, base)
        trial = Trial(
            request=doc.request,
            **{name: getattr(doc, name) for name in TRIAL_VALUES},
            recovery=None if doc.recovery is None else Recovery(doc.recovery.crash, tuple(doc.recovery.extra_buffers)),
            tg_interval=_pair(doc.measured_tg_interval),
            pp_interval=_pair(doc.measured_pp_interval),
            contention=None if doc.contention is None else Contention.from_dict(to_json(doc.contention)),
        )
        if trial.round and trial.key in out:
            first = out[trial.key]
            first.samples = [*first.samples, *trial.samples]
            first.contention = most_disturbed(first.contention, trial.contention)
            first.score = statistics.median(first.samples) if first.samples else first.score
        elif not trial.round:
            out[trial.key] = trial
    return list(out.values())


def _pair(values: list[float] | None) -> tuple[float, float] | None:
    return None if values is None else (values[0], values[1])


def marked_trial(line: bytes) -> bytes:
    """An unmarked trial line as the trial/1 record it is (or as it was, for the decoder to name)."""
    try:
        record = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return line
    if not isinstance(record, dict) or not is_trial_record(record):
        return line  # not a trial of the old kind either: the decoder says its schema is missing
    return msgspec.json.encode({**record, "schema": "gpusplit.trial/1"})


def trial_record(trial: Trial) -> dict[str, Any]:
    """One line of a --trials file (`gpusplit.trial/3`)."""
    return {"schema": TRIAL_SCHEMA, **trial_document(trial)}
