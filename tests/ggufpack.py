"""Hand-packing GGUF bytes, valid or deliberately broken, for the reader's tests and fuzzing.

Independent of gpusplit's reader: it encodes the format straight from the spec
(../shared/notes/gguf-facts.md), so a reader bug cannot hide in a shared helper.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?", U64: "Q", I64: "q", F64: "d"}


def s(text: str | bytes) -> bytes:
    """A GGUF string: u64 length + bytes."""
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def value(vtype: int, v: Any) -> bytes:
    if vtype == STRING:
        return s(v)
    if vtype == ARRAY:
        etype, items = v
        return struct.pack("<IQ", etype, len(items)) + b"".join(value(etype, i) for i in items)
    return struct.pack("<" + _FMT[vtype], v)


def kv(key: str | bytes, vtype: int, v: Any) -> bytes:
    return s(key) + struct.pack("<I", vtype) + value(vtype, v)


def tensor_info(name: str, shape: tuple[int, ...], ggml_type: int, offset: int) -> bytes:
    return (
        s(name)
        + struct.pack("<I", len(shape))
        + b"".join(struct.pack("<Q", d) for d in shape)
        + struct.pack("<IQ", ggml_type, offset)
    )


# Bytes per block / block size for the few types these tests use.
TYPE_SIZES = {0: (1, 4), 1: (1, 2), 8: (32, 34), 12: (256, 144), 14: (256, 210)}


@dataclass
class Packed:
    """A GGUF file under construction; `build()` gives its bytes."""

    version: int = 3
    kvs: list[bytes] = field(default_factory=list)
    tensors: list[tuple[str, tuple[int, ...], int]] = field(default_factory=list)
    alignment: int = 32
    with_data: bool = True
    kv_count: int | None = None
    tensor_count: int | None = None

    def add(self, key: str, vtype: int, v: Any) -> Packed:
        self.kvs.append(kv(key, vtype, v))
        return self

    def tensor(self, name: str, shape: tuple[int, ...], ggml_type: int = 0) -> Packed:
        self.tensors.append((name, shape, ggml_type))
        return self

    def nbytes(self, shape: tuple[int, ...], ggml_type: int) -> int:
        block, size = TYPE_SIZES[ggml_type]
        n = 1
        for d in shape:
            n *= d
        return n // block * size

    def build(self) -> bytes:
        infos = []
        offset = 0
        for name, shape, gtype in self.tensors:
            infos.append(tensor_info(name, shape, gtype, offset))
            offset += -(-self.nbytes(shape, gtype) // self.alignment) * self.alignment
        head = b"GGUF" + struct.pack(
            "<IQQ",
            self.version,
            len(self.tensors) if self.tensor_count is None else self.tensor_count,
            len(self.kvs) if self.kv_count is None else self.kv_count,
        )
        body = head + b"".join(self.kvs) + b"".join(infos)
        if not self.with_data:
            return body
        pad = -len(body) % self.alignment
        return body + b"\0" * pad + b"\x01" * offset


def llama_header(n_layer: int = 2, n_embd: int = 64, n_head: int = 4, n_head_kv: int = 2, n_vocab: int = 32) -> Packed:
    """A minimal but complete llama-shaped model: metadata, tokens and per-layer tensors."""
    p = Packed()
    p.add("general.architecture", STRING, "llama")
    p.add("general.name", STRING, "packed")
    p.add("llama.block_count", U32, n_layer)
    p.add("llama.embedding_length", U32, n_embd)
    p.add("llama.feed_forward_length", U32, n_embd * 2)
    p.add("llama.attention.head_count", U32, n_head)
    p.add("llama.attention.head_count_kv", U32, n_head_kv)
    p.add("llama.context_length", U32, 256)
    p.add("tokenizer.ggml.tokens", ARRAY, (STRING, [f"t{i}" for i in range(n_vocab)]))
    p.tensor("token_embd.weight", (n_embd, n_vocab))
    kv_dim = n_embd // n_head * n_head_kv
    for il in range(n_layer):
        p.tensor(f"blk.{il}.attn_norm.weight", (n_embd,))
        p.tensor(f"blk.{il}.attn_q.weight", (n_embd, n_embd), 1)
        p.tensor(f"blk.{il}.attn_k.weight", (n_embd, kv_dim), 1)
        p.tensor(f"blk.{il}.attn_v.weight", (n_embd, kv_dim), 1)
        p.tensor(f"blk.{il}.ffn_up.weight", (n_embd, n_embd * 2), 8)
    p.tensor("output_norm.weight", (n_embd,))
    p.tensor("output.weight", (n_embd, n_vocab), 1)
    return p
