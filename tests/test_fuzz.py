"""Mutations of valid files: the reader returns a model or raises GGUFError, quickly, and
nothing else (no IndexError, struct.error, MemoryError, RecursionError, hang)."""

from __future__ import annotations

import struct
import time

import pytest
from ggufpack import ARRAY, I32, STRING, U32, kv, llama_header
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpusplit.gguf import GGUFError
from gpusplit.gguf.model import describe
from gpusplit.gguf.reader import BytesSource, parse_source


def _bases() -> list[bytes]:
    plain = llama_header(n_layer=2, n_vocab=40).build()
    rich = llama_header(n_layer=3, n_vocab=100)
    rich.kvs = [e for e in rich.kvs if b"head_count_kv" not in e and b"block_count" not in e]
    rich.add("llama.block_count", U32, 3)
    rich.add("llama.attention.head_count_kv", ARRAY, (I32, [2, 1, 2]))
    rich.add("tokenizer.ggml.merges", ARRAY, (STRING, [f"a{i} b{i}" for i in range(80)]))
    rich.add("x.nested", ARRAY, (ARRAY, [(U32, [1, 2]), (STRING, ["x"])]))
    rich.kvs.append(kv("tokenizer.chat_template", STRING, "{{ bos_token }}"))
    header_only = llama_header(n_layer=2)
    header_only.with_data = False
    return [plain, rich.build(), header_only.build()]


BASES = _bases()
INTERESTING = [0, 1, 2, 3, 4, 31, 32, 33, 255, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "word", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "word":
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, 2**64 - 1))
            width = draw(st.sampled_from([4, 8]))
            if value < 2 ** (8 * width):
                data[at : at + width] = struct.pack("<I" if width == 4 else "<Q", value)
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


HANG_S = 20.0  # no valid or hostile header takes more than milliseconds to refuse


@settings(
    max_examples=2000,
    deadline=None,  # a busy runner slows every example alike: hangs are caught below, far from the norm
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(mutated())
def test_mutated_files_give_a_model_or_a_gguf_error(data: bytes) -> None:
    started = time.monotonic()
    try:
        model = describe(parse_source(BytesSource(data)))
    except GGUFError as exc:
        assert exc.field and exc.reason
    else:
        assert model.n_layer >= 1
        assert model.total_bytes >= 0
    assert time.monotonic() - started < HANG_S  # milliseconds here; a hang is minutes


@pytest.mark.parametrize("base", range(len(BASES)))
def test_fuzz_bases_are_valid(base: int) -> None:
    # The mutations start from files the reader accepts, so errors come from the mutation.
    assert describe(parse_source(BytesSource(BASES[base]))).n_layer >= 2
