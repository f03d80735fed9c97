"""The bench matrix, JSONL append/resume of its records, and comparisons between two runs.

Each configuration (mode x split x ngl x ctx x KV type x flash attention) runs llama-bench's
tests (pp: a batch of random tokens; tg: one token at a time) in its own engine child; a failure
becomes a failed record and the matrix goes on. Records are appended to the output file and
flushed as each configuration finishes, so an interrupted bench keeps every finished row.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import journal
from .documents import BENCH_SCHEMA


@dataclass(frozen=True)
class Config:
    mode: str  # auto, none, layer, row, tensor
    split: str  # "auto" (the plan's) or "0.5,0.5"
    ngl: int | None  # None: the plan's
    ctx: int | None  # None: large enough for the tests
    kv: str
    fa: bool

    def key(self) -> str:
        return f"mode={self.mode} split={self.split} ngl={'auto' if self.ngl is None else self.ngl} ctx={self.ctx or 'auto'} kv={self.kv} fa={int(self.fa)}"

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "split": self.split, "ngl": self.ngl, "ctx": self.ctx, "kv": self.kv, "fa": self.fa}


@dataclass(frozen=True)
class Test:
    name: str  # pp512, tg128, pp512@d1024
    kind: str  # pp or tg
    n: int
    depth: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "n": self.n, "depth": self.depth}


def tests_for(n_prompt: list[int], n_gen: list[int], depths: list[int]) -> list[Test]:
    tests = []
    for depth in depths or [0]:
        suffix = f" @ d{depth}" if depth else ""
        tests += [Test(f"pp{n}{suffix}", "pp", n, depth) for n in n_prompt if n > 0]
        tests += [Test(f"tg{n}{suffix}", "tg", n, depth) for n in n_gen if n > 0]
    return tests


def matrix(
    modes: list[str], splits: list[str], ngls: list[int | None], ctxs: list[int | None], kvs: list[str], fas: list[bool]
) -> list[Config]:
    """Every combination; a split only matters for the modes that use one."""
    configs: list[Config] = []
    seen = set()
    for mode, split, ngl, ctx, kv, fa in itertools.product(modes, splits, ngls, ctxs, kvs, fas):
        if mode == "none":
            split = "auto"
        c = Config(mode, split, ngl, ctx, kv, fa)
        if c.key() not in seen:
            seen.add(c.key())
            configs.append(c)
    return configs


# ---------------------------------------------------------------------------------------------
# JSONL: append, resume, read


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
