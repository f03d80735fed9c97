"""One hand-packed file per hostile class of ../shared/notes/gguf-facts.md.

Each case: (id, bytes, the field the error must name, a phrase its reason must contain).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ggufpack import ARRAY, F32, I32, STRING, U8, U32, U64, Packed, kv, llama_header, s, tensor_info

HUGE = 2**63


def _header(version: int = 3, tensors: int = 0, kvs: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def _with(mutate: Callable[[Packed], None], **kwargs: object) -> bytes:
    p = llama_header(**kwargs)  # type: ignore[arg-type]
    mutate(p)
    return p.build()


def _replace_kv(p: Packed, key: str, raw: bytes) -> None:
    prefix = s(key)
    for i, entry in enumerate(p.kvs):
        if entry[: len(prefix)] == prefix:
            p.kvs[i] = raw
            return
    p.kvs.append(raw)


def _set(key: str, vtype: int, value: object) -> Callable[[Packed], None]:
    return lambda p: _replace_kv(p, key, kv(key, vtype, value))


def _valid() -> bytes:
    return llama_header().build()


def _cut_in_kv() -> bytes:
    p = llama_header()
    p.tensors = []  # so the declared counts still fit what is left
    data = p.build()
    # Cut inside the u32 value, after the key and its type.
    at = data.index(b"llama.embedding_length") + len("llama.embedding_length") + 4 + 2
    return data[:at]


def _cut_in_tensor_infos() -> bytes:
    data = _valid()
    return data[: data.index(b"blk.1.attn_q.weight") + 5]


def _raw_tensor(name: str, dims: tuple[int, ...], gtype: int, offset: int = 0, n_dims: int | None = None) -> bytes:
    """A file with one hand-made tensor info after a valid llama header's metadata."""
    p = llama_header(n_layer=1)
    p.tensors = []
    body = s(name) + struct.pack("<I", len(dims) if n_dims is None else n_dims)
    body += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", gtype, offset)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, len(p.kvs))
    return head + b"".join(p.kvs) + body + b"\0" * 4096


def _two_tensors(first_offset: int, second_offset: int, second_type: int = 0) -> bytes:
    p = llama_header(n_layer=1)
    infos = tensor_info("token_embd.weight", (64, 32), 0, first_offset) + tensor_info(
        "output_norm.weight", (64,), second_type, second_offset
    )
    head = b"GGUF" + struct.pack("<IQQ", 3, 2, len(p.kvs))
    return head + b"".join(p.kvs) + infos + b"\0" * 20000


def _nested_array(depth: int) -> bytes:
    inner: tuple[int, object] = (U8, [1, 2])
    for _ in range(depth - 1):
        inner = (ARRAY, [inner])
    return _with(lambda p: p.add("x.nested", ARRAY, inner))


CASES: list[tuple[str, Callable[[], bytes], str, str]] = [
    # 1. truncation
    ("truncated-header", lambda: b"GGUF\x03\x00", "version", "truncated"),
    ("truncated-counts", lambda: _header()[:20], "kv_count", "truncated"),
    ("truncated-in-kv", _cut_in_kv, "llama.embedding_length", "truncated"),
    ("truncated-in-tensor-infos", _cut_in_tensor_infos, "tensor[", "past the end"),
    # 2. magic and version
    ("bad-magic", lambda: b"GGML" + _valid()[4:], "magic", "not a GGUF file"),
    ("empty-file", lambda: b"", "magic", "not a GGUF file"),
    ("version-0", lambda: _header(version=0), "version", "unsupported GGUF version 0"),
    ("version-4", lambda: _header(version=4), "version", "unsupported GGUF version 4"),
    ("version-1", lambda: _header(version=1), "version", "version 1 is not supported"),
    ("byte-swapped", lambda: b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "version", "big-endian"),
    # 3. counts larger than the file
    ("tensor-count-huge", lambda: _header(tensors=HUGE - 1), "tensor_count", "limit"),
    ("tensor-count-beyond-file", lambda: _header(tensors=1000) + b"\0" * 100, "tensor_count", "cannot fit"),
    ("kv-count-huge", lambda: _header(kvs=2**40), "kv_count", "limit"),
    ("kv-count-beyond-file", lambda: _header(kvs=500) + b"\0" * 100, "kv_count", "cannot fit"),
    # 4. strings and keys
    (
        "string-length-past-end",
        lambda: _header(kvs=1) + struct.pack("<Q", 1000) + b"abc" + b"\0" * 16,
        "kv[0].key",
        "past the end",
    ),
    ("key-length-over-cap", lambda: _header(kvs=1) + struct.pack("<Q", 2**40) + b"\0" * 64, "kv[0].key", "limit"),
    (
        "value-length-past-end",
        lambda: _header(kvs=1) + s("general.name") + struct.pack("<IQ", STRING, 10**6),
        "general.name",
        "past the end",
    ),
    (
        "value-length-over-cap",
        lambda: _header(kvs=1) + s("general.name") + struct.pack("<IQ", STRING, HUGE),
        "general.name",
        "limit",
    ),
    ("key-invalid-utf8", lambda: _header(kvs=1) + s(b"bad\xff\xfekey") + struct.pack("<IB", U8, 1), "kv[0].key", "UTF-8"),
    ("value-invalid-utf8", lambda: _header(kvs=1) + kv("general.name", STRING, b"\xc3\x28"), "general.name", "UTF-8"),
    ("empty-key", lambda: _header(kvs=1) + s(b"") + struct.pack("<IB", U8, 1) + b"\0" * 8, "kv[0].key", "empty key"),
    (
        "duplicate-key",
        lambda: _with(lambda p: p.kvs.append(kv("general.name", STRING, "again"))),
        "general.name",
        "duplicate key",
    ),
    # 5. unknown types
    (
        "unknown-value-type",
        lambda: _header(kvs=1) + s("x.key") + struct.pack("<I", 13) + b"\0" * 16,
        "x.key",
        "unknown value type 13",
    ),
    (
        "unknown-array-type",
        lambda: _header(kvs=1) + s("x.arr") + struct.pack("<IIQ", ARRAY, 99, 1) + b"\0" * 16,
        "x.arr",
        "unknown array element type 99",
    ),
    # 6. arrays
    (
        "array-count-huge",
        lambda: _header(kvs=1) + s("x.arr") + struct.pack("<IIQ", ARRAY, U32, 2**62) + b"\0" * 64,
        "x.arr",
        "only",
    ),
    (
        "string-array-count-huge",
        lambda: _header(kvs=1) + s("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, HUGE - 1) + b"\0" * 64,
        "tokenizer.ggml.tokens",
        "only",
    ),
    ("array-nested-too-deep", lambda: _nested_array(3), "x.nested", "nested deeper"),
    # 7. duplicate tensor names
    (
        "duplicate-tensor",
        lambda: _with(lambda p: p.tensor("output_norm.weight", (64,))),
        "output_norm.weight",
        "duplicate tensor name",
    ),
    # 8. alignment
    ("alignment-not-u32", lambda: _with(_set("general.alignment", U64, 32)), "general.alignment", "must be a u32"),
    ("alignment-zero", lambda: _with(_set("general.alignment", U32, 0)), "general.alignment", "not a power of two"),
    ("alignment-not-power-of-two", lambda: _with(_set("general.alignment", U32, 48)), "general.alignment", "not a power of two"),
    ("alignment-absurd", lambda: _with(_set("general.alignment", U32, 2**30)), "general.alignment", "limit"),
    # 9. dimensions
    ("n-dims-5", lambda: _raw_tensor("token_embd.weight", (2, 2, 2, 2, 2), 0), "n_dims", "5 dimensions"),
    ("n-dims-0", lambda: _raw_tensor("token_embd.weight", (), 0), "n_dims", "0 dimensions"),
    ("n-dims-huge", lambda: _raw_tensor("token_embd.weight", (), 0, n_dims=2**31), "n_dims", "dimensions"),
    ("dimension-overflow", lambda: _raw_tensor("token_embd.weight", (HUGE, 1), 0), "ne[0]", "overflows int64"),
    (
        "element-count-overflow",
        lambda: _raw_tensor("token_embd.weight", (2**20, 2**20, 2**20, 2**20), 0),
        ".ne",
        "overflows int64",
    ),
    (
        "row-not-block-multiple",
        lambda: _raw_tensor("token_embd.weight", (33, 4), 8),
        "ne[0]",
        "not a multiple of the Q8_0 block size 32",
    ),
    # 10. tensor types
    ("unknown-tensor-type", lambda: _raw_tensor("token_embd.weight", (32, 4), 99), ".type", "unknown ggml type 99"),
    ("removed-tensor-type", lambda: _raw_tensor("token_embd.weight", (32, 4), 4), ".type", "was removed"),
    # 11. offsets
    ("offset-unaligned", lambda: _two_tensors(0, 8200), "output_norm.weight", "not a multiple of the alignment"),
    ("offset-overlap", lambda: _two_tensors(0, 4096), "output_norm.weight", "overlaps tensor 'token_embd.weight'"),
    ("offset-out-of-order", lambda: _two_tensors(8192, 0), "output_norm.weight", "out of order"),
    ("offset-absurd", lambda: _two_tensors(0, HUGE), "output_norm.weight", "beyond any possible file"),
    # 13. semantic nonsense
    ("block-count-0", lambda: _with(_set("llama.block_count", U32, 0)), "llama.block_count", "0 blocks"),
    ("block-count-513", lambda: _with(_set("llama.block_count", U32, 513)), "llama.block_count", "513 blocks"),
    (
        "block-beyond-count",
        lambda: _with(lambda p: p.tensor("blk.7.attn_norm.weight", (64,))),
        "blk.7.attn_norm.weight",
        "block 7 does not exist",
    ),
    ("head-count-0", lambda: _with(_set("llama.attention.head_count", U32, 0)), "llama.attention.head_count", "is 0"),
    (
        "head-count-kv-above-heads",
        lambda: _with(_set("llama.attention.head_count_kv", U32, 8)),
        "llama.attention.head_count_kv",
        "only 4 heads",
    ),
    (
        "per-layer-array-wrong-length",
        lambda: _with(_set("llama.attention.head_count_kv", ARRAY, (I32, [2, 2, 2]))),
        "llama.attention.head_count_kv",
        "expected one per layer (2)",
    ),
    (
        "experts-used-above-count",
        lambda: _with(lambda p: (p.add("llama.expert_count", U32, 4), p.add("llama.expert_used_count", U32, 8))),
        "llama.expert_used_count",
        "only 4 experts",
    ),
    ("architecture-missing", lambda: _with(lambda p: p.kvs.pop(0)), "general.architecture", "missing"),
    ("block-count-float", lambda: _with(_set("llama.block_count", F32, 2.0)), "llama.block_count", "must be an integer"),
]
