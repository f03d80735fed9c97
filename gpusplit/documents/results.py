"""Results files: the JSONL that `bench --output` and `tune --trials` append to as each result
comes (base/journal.py keeps them whole and refuses files that are not ours), read back to resume,
compare and report."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..base import journal
from ..jobs.tune import Trial
from .render import BENCH_SCHEMA

# ---------------------------------------------------------------------------------------------
# bench: gpusplit.bench/1 records, one per line


def is_bench_record(record: dict[str, Any]) -> bool:
    return record.get("schema") == BENCH_SCHEMA


def check_results_file(path: Path, option: str) -> None:
    """Refuse (exit 2, file untouched) a --output/--resume file that is not a bench JSONL."""
    journal.check_ours(path, is_bench_record, BENCH_SCHEMA, option)


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record and make it durable before the next configuration starts."""
    journal.append(path, record)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a bench JSONL file; a line cut short by a kill is ignored."""
    return journal.read(path, is_bench_record)


def done_keys(records: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r.get("config_key", ""), r.get("test", "")) for r in records}


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Per (configuration, test) present in both: b's mean t/s over a's."""
    index = {(r["config_key"], r["test"]): r for r in a if r["status"] == "ok"}
    for r in b:
        other = index.get((r["config_key"], r["test"]))
        if other is None or r["status"] != "ok":
            continue
        yield {
            "config": r["config_key"],
            "test": r["test"],
            "a_ts": other["avg_ts"],
            "b_ts": r["avg_ts"],
            "ratio": round(r["avg_ts"] / other["avg_ts"], 4) if other["avg_ts"] else None,
        }


# ---------------------------------------------------------------------------------------------
# tune: one trial per line

TRIAL_SCHEMA = "gpusplit.trial/1"
TRIAL_FIELDS = frozenset(f.name for f in fields(Trial))


def is_trial_record(record: dict[str, Any]) -> bool:
    """A line of a --trials file: schema-marked, or (files written before the mark) a trial's fields."""
    if "schema" in record:
        return record["schema"] == TRIAL_SCHEMA
    return {"key", "config", "status"} <= record.keys() <= TRIAL_FIELDS


def check_trials_file(path: Path, option: str = "--trials") -> None:
    """Refuse (exit 2, file untouched) a trials file that is not tune's JSONL."""
    journal.check_ours(path, is_trial_record, TRIAL_SCHEMA, option)


def append_trial(path: Path, trial: Trial) -> None:
    journal.append(path, {"schema": TRIAL_SCHEMA, **trial.to_dict()})


def read_trials(path: Path) -> list[Trial]:
    """The trials of an earlier run (JSONL, one per line; a final round's measurement joins its
    trial's samples); a torn line is ignored."""
    out: dict[str, Trial] = {}
    for record in journal.read(path, is_trial_record):
        try:
            trial = Trial(**{k: v for k, v in record.items() if k != "schema"})
        except TypeError:
            continue
        if trial.round and trial.key in out:
            first = out[trial.key]
            first.samples = [*first.samples, *trial.samples]
            first.score = statistics.median(first.samples) if first.samples else first.score
        elif not trial.round:
            out[trial.key] = trial
    return list(out.values())
