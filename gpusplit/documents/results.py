"""Results files: the JSONL that `bench --output` and `tune --trials` append to as each result
comes (base/journal.py keeps them whole and refuses files that are not ours), read back to resume,
compare and report."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..base import journal
from ..base.errors import InputError
from ..jobs.runner import Recovery
from ..jobs.tune import Trial
from ..planning.request import DEFAULT, Request
from .render import BENCH_SCHEMA, TRIAL_VALUES, trial_document

# ---------------------------------------------------------------------------------------------
# bench: gpusplit.bench/1 records, one per line


BENCH_SCHEMAS = ("gpusplit.bench/1", BENCH_SCHEMA)  # /1: engine_params said use_extra_bufts


def is_bench_record(record: dict[str, Any]) -> bool:
    return record.get("schema") in BENCH_SCHEMAS


def check_results_file(path: Path, parameter: str) -> None:
    """Refuse (file untouched) a results file to append to that is not a bench JSONL."""
    journal.check_ours(path, is_bench_record, BENCH_SCHEMA, parameter)


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

TRIAL_SCHEMA = "gpusplit.trial/2"
TRIAL_SCHEMAS = ("gpusplit.trial/1", TRIAL_SCHEMA)  # /1: a tune Config's fields under "config"
# the fields of a trial/1 record (and of the unmarked lines written before the schema mark)
_LEGACY_TRIAL_FIELDS = frozenset(
    {"key", "config", "strategy", "fits", "predicted_tg", "predicted_pp", "measured_tg", "measured_pp", "score", "status",
     "error", "seconds", "min_headroom_bytes", "recovery", "samples", "round"}
)  # fmt: skip
# a trial/1 record's tune Config fields, as the Request names them
_LEGACY_CONFIG = {"mode": "split_mode", "split": "tensor_split", "ngl": "n_gpu_layers", "n_cpu_moe": "n_cpu_moe",
                  "ubatch": "n_ubatch", "flash_attn": "flash_attn", "threads": "n_threads", "no_repack": "no_repack"}  # fmt: skip


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


def _trial_request(record: dict[str, Any], base: Request) -> Request:
    """A trial's request: a trial/2 record's own; a trial/1 record's tune Config on `base` (the
    tune's request, which such files did not keep)."""
    if "request" in record:
        fields = dict(record["request"])
        for name in ("tensor_split", "reserve", "lora"):
            if isinstance(fields.get(name), list):
                fields[name] = tuple(fields[name])
        return Request(**fields)
    changes = {_LEGACY_CONFIG[k]: v for k, v in (record.get("config") or {}).items() if k in _LEGACY_CONFIG}
    if changes.get("split_mode") == "auto":
        changes["split_mode"] = None
    if isinstance(changes.get("tensor_split"), list):
        changes["tensor_split"] = tuple(changes["tensor_split"])
    if "n_ubatch" in changes:
        changes["n_batch"] = max(base.n_batch, changes["n_ubatch"])
    return base.with_(**changes)


def read_trials(path: Path, base: Request = DEFAULT) -> list[Trial]:
    """The trials of an earlier run (JSONL, one per line; a final round's measurement joins its
    trial's samples); a torn line is ignored."""
    out: dict[str, Trial] = {}
    for record in journal.read(path, is_trial_record):
        try:
            recovery = record.get("recovery")
            trial = Trial(
                request=_trial_request(record, base),
                **{k: v for k, v in record.items() if k in TRIAL_VALUES},
                recovery=None if not recovery else Recovery(recovery["crash"], tuple(recovery["extra_buffers"])),
            )
        except (TypeError, KeyError, InputError):
            continue
        if trial.round and trial.key in out:
            first = out[trial.key]
            first.samples = [*first.samples, *trial.samples]
            first.score = statistics.median(first.samples) if first.samples else first.score
        elif not trial.round:
            out[trial.key] = trial
    return list(out.values())


def trial_record(trial: Trial) -> dict[str, Any]:
    """One line of a --trials file (`gpusplit.trial/2`)."""
    return {"schema": TRIAL_SCHEMA, **trial_document(trial)}
