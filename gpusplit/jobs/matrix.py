"""The bench matrix: each configuration (mode x split x ngl x ctx x KV type x flash attention) is
the caller's Request with those fields changed, and llama-bench's tests (pp: a batch of random
tokens; tg: one token at a time). Its results files: documents/results.py."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..base.errors import InputError
from ..planning.request import Request, kv_type, split_shares

CTX_STEP = 256  # a context llama.cpp pads to
MAX_PARALLEL = 256  # llama.cpp's LLAMA_MAX_SEQ


@dataclass(frozen=True)
class Config:
    """One configuration of the matrix, as its records name it (`config`, `config_key`)."""

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

    def request(self, base: Request, needed_ctx: int, slots: int = 1) -> Request:
        """The base request with this configuration's fields (a context large enough for the
        tests where none is given: `needed_ctx` cells for each of `slots` sequences, each its own
        share of the cache as llama.cpp keeps them)."""
        return base.with_(
            n_parallel=max(slots, base.n_parallel),
            split_mode=None if self.mode == "auto" else self.mode,
            tensor_split=None if self.split == "auto" else split_shares(self.split),
            n_gpu_layers=self.ngl,
            n_ctx=self.ctx if self.ctx is not None else max(CTX_STEP, -(-needed_ctx // CTX_STEP) * CTX_STEP) * max(slots, 1),
            type_k=self.kv,
            type_v=self.kv,
            flash_attn=self.fa,
            allow_ctx_overflow=True,
        )


@dataclass(frozen=True)
class Test:
    name: str  # pp512, tg128, pp512 @ d1024, tg128 x4 (four sequences decoded together)
    kind: str  # pp or tg
    n: int
    depth: int = 0
    # tg: sequences decoded together (llama-batched-bench's npl, llama-server's busy slots), each
    # after its own `depth` tokens of prompt; its tokens/s are all of theirs together
    parallel: int = 1

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "n": self.n, "depth": self.depth}
        return out | ({"parallel": self.parallel} if self.parallel > 1 else {})

    @property
    def cells(self) -> int:
        """The KV cells each of its sequences needs."""
        return self.n + self.depth


@dataclass(frozen=True)
class Matrix:
    """What a bench varies, each a list of values to try (llama-bench's options)."""

    modes: tuple[str, ...] = ("auto",)
    splits: tuple[str, ...] = ("auto",)
    ngls: tuple[int | None, ...] = (None,)
    ctxs: tuple[int | None, ...] = (None,)
    kv_types: tuple[str, ...] = ("f16",)
    flash_attn: tuple[bool, ...] = (False,)

    def configs(self) -> list[Config]:
        """Every combination; a split only matters for the modes that use one."""
        configs: list[Config] = []
        seen = set()
        kvs = [kv_type(k, "kv_type") for k in self.kv_types]
        for mode, split, ngl, ctx, kv, fa in itertools.product(
            self.modes, self.splits, self.ngls, self.ctxs, kvs, self.flash_attn
        ):
            if mode == "none":
                split = "auto"
            c = Config(mode, split, ngl, ctx, kv, fa)
            if c.key() not in seen:
                seen.add(c.key())
                configs.append(c)
        return configs


@dataclass(frozen=True)
class Tests:
    """llama-bench's tests: prompts of n_prompt tokens, generations of n_gen, after each depth."""

    n_prompt: tuple[int, ...] = (512,)
    n_gen: tuple[int, ...] = (128,)
    depths: tuple[int, ...] = (0,)
    parallel: tuple[int, ...] = (1,)  # generation tests with this many sequences decoded together

    def tests(self) -> list[Test]:
        if any(d < 0 for d in self.depths):
            raise InputError("{p.depths} must not be negative", "for example 0 and 1024", parameter="depths")
        if any(n < 0 for n in self.n_prompt) or any(n < 0 for n in self.n_gen):
            raise InputError("{p.n_prompt} and {p.n_gen} must not be negative", parameter="n_prompt")
        if any(not 1 <= n <= MAX_PARALLEL for n in self.parallel):
            raise InputError(f"{{p.parallel}} must be 1 to {MAX_PARALLEL}", "for example 1, 2, 4 and 8", parameter="parallel")
        tests = []
        for depth in self.depths or (0,):
            suffix = f" @ d{depth}" if depth else ""
            tests += [Test(f"pp{n}{suffix}", "pp", n, depth) for n in self.n_prompt if n > 0]
            for users in dict.fromkeys(self.parallel or (1,)):
                users_suffix = f" x{users}" if users > 1 else ""
                tests += [Test(f"tg{n}{users_suffix}{suffix}", "tg", n, depth, users) for n in self.n_gen if n > 0]
        if not tests:
            raise InputError("no tests: {p.n_prompt} and {p.n_gen} are all 0", "ask for 512 and/or 128", parameter="n_prompt")
        return tests


def tests_for(n_prompt: Sequence[int], n_gen: Sequence[int], depths: Sequence[int], parallel: Sequence[int] = (1,)) -> list[Test]:
    return Tests(tuple(n_prompt), tuple(n_gen), tuple(depths), tuple(parallel)).tests()
