"""The bench matrix: each configuration (mode x split x ngl x ctx x KV type x flash attention) and
llama-bench's tests (pp: a batch of random tokens; tg: one token at a time). Its results files:
documents/results.py."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any


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
