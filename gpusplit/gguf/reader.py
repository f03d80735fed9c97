"""A bounded GGUF header reader: metadata and tensor infos, never the tensor data.

Every count read from the file is checked against the bytes that can remain before anything is
allocated or looped over, so a hostile header costs at most `Limits.max_header_bytes` of reading
and linear time in it. Big arrays (tokens, merges, scores) are counted and skipped; small ones
(per-layer hyperparameters) are read, up to `Limits.max_read_elements` in all. Memory stays near
the metadata kept (its strings, at most once their bytes) plus the field being read: the bytes
before it are let go, never the whole header held. A tensor with a zero dimension is refused.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol, Union

from ..base.files import NotRegularError, open_regular_fd
from .errors import GGUFError
from .remote import HTTPSource, http_deadline, is_url, split_url
from .types import GGML_TYPES, REMOVED_TYPE_IDS, GGMLType

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Limits:
    """Ceilings that bound a parse whatever the file declares (documented in the README)."""

    max_header_bytes: int = 256 * 1024 * 1024  # metadata + tensor infos of one shard
    max_kv: int = 65_536
    max_tensors: int = 262_144
    max_string_bytes: int = 64 * 1024 * 1024  # one string value (chat templates are KBs)
    max_key_bytes: int = 65_535
    max_array_depth: int = 2  # an array of arrays; deeper nesting is refused
    max_alignment: int = 1024 * 1024
    max_shards: int = 1024
    max_seconds: float = 30.0  # wall-clock budget for one parse
    # Arrays up to these lengths are read; longer ones are counted and skipped.
    small_array: int = 4096
    small_string_array: int = 64
    # Elements of all the arrays read, together: each costs a Python object (up to ~9x its bytes
    # in the file), so past this many arrays are counted and skipped however small they are.
    max_read_elements: int = 262_144


DEFAULT_LIMITS = Limits()

# GGUF value types: id -> (name, struct format, size)
VT_UINT8, VT_INT8, VT_UINT16, VT_INT16, VT_UINT32, VT_INT32, VT_FLOAT32, VT_BOOL = range(8)
VT_STRING, VT_ARRAY, VT_UINT64, VT_INT64, VT_FLOAT64 = 8, 9, 10, 11, 12

_SCALARS: dict[int, tuple[str, str, int]] = {
    VT_UINT8: ("u8", "B", 1),
    VT_INT8: ("i8", "b", 1),
    VT_UINT16: ("u16", "H", 2),
    VT_INT16: ("i16", "h", 2),
    VT_UINT32: ("u32", "I", 4),
    VT_INT32: ("i32", "i", 4),
    VT_FLOAT32: ("f32", "f", 4),
    VT_BOOL: ("bool", "?", 1),
    VT_UINT64: ("u64", "Q", 8),
    VT_INT64: ("i64", "q", 8),
    VT_FLOAT64: ("f64", "d", 8),
}
VALUE_TYPE_NAMES = {**{k: v[0] for k, v in _SCALARS.items()}, VT_STRING: "string", VT_ARRAY: "array"}
_SCALAR_STRUCTS = {k: struct.Struct("<" + v[1]) for k, v in _SCALARS.items()}
# Smallest encoding of one array element, to bound a declared count by the bytes that remain.
_MIN_ELEMENT_BYTES = {**{k: v[2] for k, v in _SCALARS.items()}, VT_STRING: 8, VT_ARRAY: 12}

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HEADER = struct.Struct("<4sIQQ")

# Smallest possible kv pair (8-byte key length, 1-byte key, 4-byte type, 1-byte value) and tensor
# info (8-byte name length, 1-byte name, n_dims, one ne, type, offset).
_MIN_KV_BYTES = 14
_MIN_TENSOR_INFO_BYTES = 33
# ggml's GGML_MAX_NAME (64, with the terminating NUL): llama.cpp refuses longer tensor names.
_MAX_TENSOR_NAME = 63
_MAX_DIMS = 4
# Bytes read ahead at a time: growing with the header (few reads, few HTTP requests), capped so
# that what is held beyond the field being read stays small.
_MIN_CHUNK = 256 * 1024
_MAX_CHUNK = 16 * 1024 * 1024

SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


# ---------------------------------------------------------------------------------------------
# Byte sources


class ByteSource(Protocol):
    """Random access to the bytes of one file (local, or remote by HTTP range requests)."""

    name: str
    size: int
    bytes_read: int

    def read(self, offset: int, size: int) -> bytes: ...

    def close(self) -> None: ...


class FileSource:
    """A local file read with bounded `pread` calls; counts the bytes it reads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.name = str(path)
        try:
            self._fd = open_regular_fd(path)  # never waits on a FIFO; a device or a folder is refused
        except NotRegularError as exc:
            raise GGUFError(self.name, None, "file", f"is {exc.kind}, not a GGUF file") from None
        except FileNotFoundError:
            raise GGUFError(self.name, None, "file", "no such file") from None
        except PermissionError:
            raise GGUFError(self.name, None, "file", "permission denied") from None
        except OSError as exc:
            raise GGUFError(self.name, None, "file", f"cannot open: {exc.strerror or exc}") from None
        self.size = os.fstat(self._fd).st_size
        self.bytes_read = 0

    def read(self, offset: int, size: int) -> bytes:
        try:
            data = os.pread(self._fd, size, offset)
        except OSError as exc:
            raise GGUFError(self.name, offset, "file", f"read failed: {exc.strerror or exc}") from None
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BytesSource:
    """Bytes already in memory (tests, fuzzing, embedded headers)."""

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.name = name
        self.data = data
        self.size = len(data)
        self.bytes_read = 0

    def read(self, offset: int, size: int) -> bytes:
        chunk = self.data[offset : offset + size]
        self.bytes_read += len(chunk)
        return chunk

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too big to be worth materialising: its element type and count only."""

    element_type: str
    count: int
    nbytes: int

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: ne0 (the row length) first
    ggml_type: GGMLType
    offset: int  # relative to its shard's data section, as stored
    data_offset: int  # absolute offset in its shard file
    n_elements: int
    n_bytes: int
    shard: int = 0


@dataclass(frozen=True)
class ShardInfo:
    path: str
    file_size: int
    header_bytes: int  # magic to the end of the tensor infos
    data_offset: int  # start of the tensor data section
    data_bytes: int  # bytes the tensor data needs (end of the last tensor)
    tensor_count: int
    bytes_read: int

    @property
    def missing_bytes(self) -> int:
        return max(0, self.data_offset + self.data_bytes - self.file_size)


# What a metadata value can be, as read from the file (never trusted to be the type a key should have):
# a scalar, a small array's elements (numbers, or strings), or a big or nested array's ArrayInfo.
Scalar = Union[int, float, bool, str]
MetadataValue = Union[Scalar, tuple[Scalar, ...], ArrayInfo]


@dataclass
class GGUFFile:
    path: str
    version: int
    metadata: dict[str, MetadataValue]
    value_types: dict[str, str]  # key -> GGUF value type name ("u32", "string", "array[string]")
    key_offsets: dict[str, int]  # key -> offset of its value in the first shard
    tensors: list[TensorInfo]
    shards: list[ShardInfo]
    alignment: int = DEFAULT_ALIGNMENT
    tensor_index: dict[str, TensorInfo] = field(default_factory=dict, repr=False)

    @property
    def complete(self) -> bool:
        """False for header-only or truncated files: some tensor data lies past the end."""
        return self.missing_bytes == 0

    @property
    def missing_bytes(self) -> int:
        return sum(s.missing_bytes for s in self.shards)

    @property
    def header_bytes(self) -> int:
        return sum(s.header_bytes for s in self.shards)

    @property
    def bytes_read(self) -> int:
        return sum(s.bytes_read for s in self.shards)

    def get(self, key: str, default: MetadataValue | None = None) -> MetadataValue | None:
        return self.metadata.get(key, default)


# ---------------------------------------------------------------------------------------------
# The parser


@dataclass
class _KeyValues:
    """A header's metadata as it is read: each key's value, its GGUF type name and its offset."""

    values: dict[str, MetadataValue] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)


class _DeclaredTensor(NamedTuple):
    """A tensor info as read, before its offset is checked against the others'."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLType
    offset: int  # relative to the data section
    n_elements: int
    n_bytes: int
    offset_at: int  # where the offset field lies in the file


class _HeaderParser:
    """Walks one shard's header over a window of the file: the bytes from the field being read on."""

    def __init__(self, source: ByteSource, limits: Limits, deadline: float) -> None:
        self.src = source
        self.limits = limits
        self.deadline = deadline
        # the budget this parse was given, for its message (a split model's shards share one deadline)
        self.budget = round(max(deadline - time.monotonic(), 0.0), 1) or limits.max_seconds
        self.buf = b""  # the file's bytes from offset `base`
        self.base = 0
        self.pos = 0  # the file offset of the next field
        self.ceiling = min(source.size, limits.max_header_bytes)
        self.elements_left = limits.max_read_elements

    # -- low-level reads -----------------------------------------------------------------------

    def fail(self, offset: int | None, field_name: str, reason: str, hint: str = "") -> GGUFError:
        return GGUFError(self.src.name, offset, field_name, reason, hint)

    def ensure(self, n: int, field_name: str) -> None:
        """Make buf hold the `n` bytes from pos, reading ahead; the bytes before pos are let go."""
        held = self.base + len(self.buf)
        end = self.pos + n
        if end <= held:
            return
        self.check_within(n, field_name)
        # Nothing before pos is looked at again: keep only what is left of the window.
        keep = self.buf[self.pos - self.base :] if self.pos < held else b""
        start = max(self.pos, held)
        want = max(end - start, min(max(start // 2, _MIN_CHUNK), _MAX_CHUNK))
        want = min(want, self.ceiling - start)
        data = self.src.read(start, want)
        if len(data) < end - start:
            raise self.fail(self.pos, field_name, "truncated: the file ended while reading")
        self.buf = keep + data  # `data` itself where nothing is kept: no copy of a big field
        self.base = self.pos
        self.check_deadline(field_name)

    def check_within(self, n: int, field_name: str) -> None:
        """Refuse `n` bytes from pos that run past the end of the file or the header limit."""
        end = self.pos + n
        if end > self.src.size:
            raise self.fail(self.pos, field_name, f"truncated: needs {n} bytes, the file ends after {self.src.size - self.pos}")
        if end > self.limits.max_header_bytes:
            raise self.fail(
                self.pos,
                field_name,
                f"header larger than the {self.limits.max_header_bytes} byte limit",
                "raise Limits.max_header_bytes if this model is genuine",
            )

    def skip(self, n: int, field_name: str) -> None:
        """Step over `n` bytes that are not kept, reading them only if they are already held."""
        self.check_within(n, field_name)
        self.pos += n

    def at(self) -> int:
        """Where pos lies in buf (valid after `ensure`)."""
        return self.pos - self.base

    def check_deadline(self, field_name: str) -> None:
        if time.monotonic() > self.deadline:
            raise self.fail(self.pos, field_name, f"parse took longer than its {self.budget:g} s")

    def remaining(self) -> int:
        return self.src.size - self.pos

    def u32(self, field_name: str) -> int:
        self.ensure(4, field_name)
        value: int = _U32.unpack_from(self.buf, self.at())[0]
        self.pos += 4
        return value

    def u64(self, field_name: str) -> int:
        self.ensure(8, field_name)
        value: int = _U64.unpack_from(self.buf, self.at())[0]
        self.pos += 8
        return value

    def string_length(self, field_name: str, cap: int) -> int:
        start = self.pos
        length = self.u64(field_name + ".length")
        if length > cap:
            raise self.fail(start, field_name, f"string length {length} exceeds the {cap} byte limit")
        if length > self.remaining():
            raise self.fail(start, field_name, f"string length {length} runs past the end of the file")
        return length

    def raw_string(self, field_name: str, cap: int) -> bytes:
        length = self.string_length(field_name, cap)
        self.ensure(length, field_name)
        at = self.at()
        self.pos += length
        return self.buf[at : at + length]

    def string(self, field_name: str, cap: int) -> str:
        start = self.pos
        length = self.string_length(field_name, cap)
        self.ensure(length, field_name)
        at = self.at()
        # decoded from a view of the window: a big string is never copied as bytes first
        with memoryview(self.buf) as view:
            try:
                text = str(view[at : at + length], "utf-8")
            except UnicodeDecodeError as exc:
                raise self.fail(start, field_name, f"invalid UTF-8 at byte {exc.start} of the string") from None
        self.pos += length
        return text

    # -- values ---------------------------------------------------------------------------------

    def value(self, vtype: int, field_name: str, depth: int = 0) -> MetadataValue:
        scalar = _SCALAR_STRUCTS.get(vtype)
        if scalar is not None:
            self.ensure(scalar.size, field_name)
            number: int | float | bool = scalar.unpack_from(self.buf, self.at())[0]
            self.pos += scalar.size
            return number
        if vtype == VT_STRING:
            return self.string(field_name, self.limits.max_string_bytes)
        if vtype == VT_ARRAY:
            return self.array(field_name, depth + 1)
        raise self.fail(self.pos - 4, field_name, f"unknown value type {vtype}")

    def array(self, field_name: str, depth: int, keep: bool = True) -> tuple[Scalar, ...] | ArrayInfo:
        """An array's elements where it is small and `keep` (and the reader's element budget
        allows), else its element type and count, its bytes stepped over."""
        start = self.pos
        if depth > self.limits.max_array_depth:
            raise self.fail(start, field_name, f"arrays nested deeper than {self.limits.max_array_depth} levels")
        etype = self.u32(field_name + ".type")
        if etype not in _MIN_ELEMENT_BYTES:
            raise self.fail(start, field_name, f"unknown array element type {etype}")
        count = self.u64(field_name + ".count")
        min_bytes = _MIN_ELEMENT_BYTES[etype]
        if count > self.remaining() // min_bytes:
            raise self.fail(
                start,
                field_name,
                f"array of {count} {VALUE_TYPE_NAMES[etype]} needs at least {count * min_bytes} bytes, "
                f"only {self.remaining()} remain",
            )
        body = self.pos
        scalar = _SCALARS.get(etype)
        small = count <= (self.limits.small_array if scalar is not None else self.limits.small_string_array)
        read = keep and small and count <= self.elements_left
        if read:
            self.elements_left -= count
        if scalar is not None:
            nbytes = count * scalar[2]
            if read:
                self.ensure(nbytes, field_name)
                values = struct.unpack_from(f"<{count}{scalar[1]}", self.buf, self.at())
                self.pos += nbytes
                return values
            self.skip(nbytes, field_name)
            return ArrayInfo(scalar[0], count, nbytes)
        if etype == VT_STRING:
            if read:
                return tuple(self.string(f"{field_name}[{i}]", self.limits.max_string_bytes) for i in range(count))
            self.skip_strings(count, field_name)
            return ArrayInfo("string", count, self.pos - body)
        # Nested arrays: walk them for their size, keep only the count.
        for i in range(count):
            self.array(f"{field_name}[{i}]", depth + 1, keep=False)
            if i % 4096 == 0:
                self.check_deadline(field_name)
        return ArrayInfo("array", count, self.pos - body)

    def skip_strings(self, count: int, field_name: str) -> None:
        """Step over `count` strings without decoding them: the hot loop for vocabularies."""
        unpack = _U64.unpack_from
        cap = self.limits.max_string_bytes
        done = 0
        while done < count:
            buf = self.buf
            end = len(buf)
            pos = self.at()
            while done < count and pos + 8 <= end:
                nxt = pos + 8 + unpack(buf, pos)[0]
                if nxt > end:
                    break
                pos = nxt
                done += 1
            self.pos = self.base + pos
            if done == count:
                break
            # The next string is not wholly in the window: check its length, then step over it.
            self.ensure(8, f"{field_name}[{done}]")
            (length,) = unpack(self.buf, self.at())
            if length > cap:
                raise self.fail(self.pos, f"{field_name}[{done}]", f"string length {length} exceeds the {cap} byte limit")
            if length > self.remaining() - 8:
                raise self.fail(self.pos, f"{field_name}[{done}]", f"string length {length} runs past the end of the file")
            self.skip(8 + length, f"{field_name}[{done}]")
            done += 1
            self.check_deadline(field_name)

    # -- the header ------------------------------------------------------------------------------

    def parse(self) -> GGUFFile:
        """The shard's header: its version, metadata and tensor infos, and where its tensor data lies."""
        version = self.read_version()
        tensor_count, kv_count = self.read_counts()
        kv = self.read_key_values(kv_count)
        alignment = self.alignment(kv)
        declared = self.read_tensor_infos(tensor_count)
        header_bytes = self.pos
        data_offset = -(-header_bytes // alignment) * alignment
        tensors = self.place_tensors(declared, data_offset, alignment)
        last = tensors[-1] if tensors else None
        shard = ShardInfo(
            path=self.src.name,
            file_size=self.src.size,
            header_bytes=header_bytes,
            data_offset=data_offset,
            data_bytes=last.offset + last.n_bytes if last else 0,
            tensor_count=len(tensors),
            bytes_read=self.src.bytes_read,
        )
        return GGUFFile(
            path=self.src.name,
            version=version,
            metadata=kv.values,
            value_types=kv.types,
            key_offsets=kv.offsets,
            tensors=tensors,
            shards=[shard],
            alignment=alignment,
            tensor_index={t.name: t for t in tensors},
        )

    def read_version(self) -> int:
        """The magic, then the version: 2 or 3, little-endian."""
        self.ensure(min(_HEADER.size, self.src.size), "magic")
        if self.src.size < 4 or bytes(self.buf[:4]) != GGUF_MAGIC:
            head = bytes(self.buf[:4])
            raise self.fail(0, "magic", f"not a GGUF file (starts with {head!r}, expected b'GGUF')")
        version = self.u32_at(4, "version")
        if int.from_bytes(version.to_bytes(4, "little"), "big") in (1, 2, 3):
            raise self.fail(4, "version", "byte-swapped (big-endian) GGUF file; gpusplit reads little-endian files only")
        if version == 1:
            raise self.fail(4, "version", "GGUF version 1 is not supported; re-convert the model with a current llama.cpp")
        if version not in (2, 3):
            raise self.fail(4, "version", f"unsupported GGUF version {version} (supported: 2, 3)")
        return version

    def read_counts(self) -> tuple[int, int]:
        """(tensor count, key/value count), each bounded by its limit and by the bytes that remain."""
        self.pos = 8  # the counts follow the magic and the version
        tensor_count = self.u64("tensor_count")
        kv_count = self.u64("kv_count")
        if kv_count > self.limits.max_kv:
            raise self.fail(16, "kv_count", f"{kv_count} key/value pairs exceed the {self.limits.max_kv} limit")
        if kv_count > self.remaining() // _MIN_KV_BYTES:
            raise self.fail(16, "kv_count", f"{kv_count} key/value pairs cannot fit in the {self.remaining()} bytes left")
        if tensor_count > self.limits.max_tensors:
            raise self.fail(8, "tensor_count", f"{tensor_count} tensors exceed the {self.limits.max_tensors} limit")
        if tensor_count > self.remaining() // _MIN_TENSOR_INFO_BYTES:
            raise self.fail(8, "tensor_count", f"{tensor_count} tensors cannot fit in the {self.remaining()} bytes left")
        return tensor_count, kv_count

    def read_key_values(self, kv_count: int) -> _KeyValues:
        kv = _KeyValues()
        for i in range(kv_count):
            key = self.read_key_value(i, kv)
            if i % 256 == 0:
                self.check_deadline(key)
        return kv

    def read_key_value(self, i: int, kv: _KeyValues) -> str:
        """Read the `i`th key/value pair into `kv`; returns its key."""
        key_at = self.pos
        key = self.read_key(i)
        if key in kv.values:
            raise self.fail(key_at, key, "duplicate key")
        vtype = self.u32(f"{key}.type")
        if vtype not in VALUE_TYPE_NAMES:
            raise self.fail(self.pos - 4, key, f"unknown value type {vtype}")
        value_at = self.pos
        element_type = None
        if vtype == VT_ARRAY:
            # the element type, looked at before the window moves past it (the array checks it)
            self.ensure(4, f"{key}.type")
            element_type = _U32.unpack_from(self.buf, self.at())[0]
        value = self.value(vtype, key)
        kv.types[key] = VALUE_TYPE_NAMES[vtype] if element_type is None else f"array[{VALUE_TYPE_NAMES[element_type]}]"
        kv.values[key] = value
        kv.offsets[key] = value_at
        return key

    def read_key(self, i: int) -> str:
        key_at = self.pos
        key_bytes = self.raw_string(f"kv[{i}].key", self.limits.max_key_bytes)
        if not key_bytes:
            raise self.fail(key_at, f"kv[{i}].key", "empty key")
        try:
            return key_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(key_at, f"kv[{i}].key", "key is not valid UTF-8") from None

    def read_tensor_infos(self, tensor_count: int) -> list[_DeclaredTensor]:
        declared: list[_DeclaredTensor] = []
        seen: set[str] = set()
        for i in range(tensor_count):
            tensor = self.read_tensor_info(i, seen)
            declared.append(tensor)
            if i % 1024 == 0:
                self.check_deadline(_tensor_label(i, tensor.name))
        return declared

    def read_tensor_info(self, i: int, seen: set[str]) -> _DeclaredTensor:
        """The `i`th tensor info: name, shape, type and offset, its sizes checked; adds its name to `seen`."""
        info_at = self.pos
        name = self.string(f"tensor[{i}].name", self.limits.max_key_bytes)
        label = _tensor_label(i, name)
        if not name:
            raise self.fail(info_at, f"tensor[{i}].name", "empty tensor name")
        if len(name.encode()) > _MAX_TENSOR_NAME:
            raise self.fail(info_at, f"tensor[{i}].name", f"name longer than {_MAX_TENSOR_NAME} bytes")
        if name in seen:
            raise self.fail(info_at, label, "duplicate tensor name")
        seen.add(name)
        n_dims_at = self.pos
        shape = self.read_shape(label)
        gtype = self.read_ggml_type(label)
        n_elements, n_bytes = self.tensor_size(label, n_dims_at, shape, gtype)
        offset_at = self.pos
        offset = self.u64(f"{label}.offset")
        return _DeclaredTensor(name, shape, gtype, offset, n_elements, n_bytes, offset_at)

    def read_shape(self, label: str) -> tuple[int, ...]:
        n_dims_at = self.pos
        n_dims = self.u32(f"{label}.n_dims")
        if not 1 <= n_dims <= _MAX_DIMS:
            raise self.fail(n_dims_at, f"{label}.n_dims", f"{n_dims} dimensions (1 to {_MAX_DIMS} allowed)")
        shape = []
        for d in range(n_dims):
            ne_at = self.pos
            ne = self.u64(f"{label}.ne[{d}]")
            if ne > INT64_MAX:
                raise self.fail(ne_at, f"{label}.ne[{d}]", f"dimension {ne} overflows int64")
            if ne == 0:
                # no weight llama.cpp loads is empty, and sizes per row divide by ne[0]
                raise self.fail(ne_at, f"{label}.ne[{d}]", "dimension is 0", "a tensor's dimensions must be 1 or more")
            shape.append(ne)
        return tuple(shape)

    def read_ggml_type(self, label: str) -> GGMLType:
        type_at = self.pos
        type_id = self.u32(f"{label}.type")
        gtype = GGML_TYPES.get(type_id)
        if gtype is None:
            if type_id in REMOVED_TYPE_IDS:
                raise self.fail(type_at, f"{label}.type", f"ggml type {type_id} was removed from llama.cpp; requantize the model")
            raise self.fail(type_at, f"{label}.type", f"unknown ggml type {type_id}")
        return gtype

    def tensor_size(self, label: str, at: int, shape: tuple[int, ...], gtype: GGMLType) -> tuple[int, int]:
        """(elements, bytes) of a tensor, refused where either overflows int64 or a row is not whole blocks."""
        n_elements = 1
        for ne in shape:
            n_elements *= ne
        if n_elements > INT64_MAX:
            raise self.fail(at, f"{label}.ne", f"element count {n_elements} overflows int64")
        if shape[0] % gtype.block_size:
            raise self.fail(
                at,
                f"{label}.ne[0]",
                f"row length {shape[0]} is not a multiple of the {gtype.name} block size {gtype.block_size}",
            )
        n_bytes = gtype.type_size * (n_elements // gtype.block_size)
        if n_bytes > INT64_MAX:
            raise self.fail(at, f"{label}.ne", f"byte size {n_bytes} overflows int64")
        return n_elements, n_bytes

    def place_tensors(self, declared: list[_DeclaredTensor], data_offset: int, alignment: int) -> list[TensorInfo]:
        """The tensors at their absolute offsets, once each offset is checked: aligned, in order, no overlaps."""
        tensors = []
        prev_offset, prev_end, prev_name = -1, 0, ""
        for t in declared:
            field_name = f"tensor {t.name!r}.offset"
            if t.offset % alignment:
                raise self.fail(t.offset_at, field_name, f"offset {t.offset} is not a multiple of the alignment {alignment}")
            if t.offset < prev_offset:
                raise self.fail(t.offset_at, field_name, f"offset {t.offset} is out of order (before {prev_name!r})")
            if t.offset < prev_end:
                raise self.fail(t.offset_at, field_name, f"data overlaps tensor {prev_name!r}")
            end = t.offset + t.n_bytes
            if data_offset + end > INT64_MAX:
                raise self.fail(t.offset_at, field_name, f"offset {t.offset} lies beyond any possible file")
            tensors.append(TensorInfo(t.name, t.shape, t.ggml_type, t.offset, data_offset + t.offset, t.n_elements, t.n_bytes))
            prev_offset, prev_end, prev_name = t.offset, end, t.name
        return tensors

    def u32_at(self, offset: int, field_name: str) -> int:
        at = offset - self.base
        if at < 0 or at + 4 > len(self.buf):
            raise self.fail(offset, field_name, "truncated: the file ends inside the header")
        value: int = _U32.unpack_from(self.buf, at)[0]
        return value

    def alignment(self, kv: _KeyValues) -> int:
        key = "general.alignment"
        if key not in kv.values:
            return DEFAULT_ALIGNMENT
        value = kv.values[key]
        at = kv.offsets[key]
        if kv.types[key] != "u32" or not isinstance(value, int):
            raise self.fail(at, key, f"must be a u32, not {kv.types[key]}")
        if value == 0 or value & (value - 1):
            raise self.fail(at, key, f"{value} is not a power of two")
        if value > self.limits.max_alignment:
            raise self.fail(at, key, f"{value} exceeds the {self.limits.max_alignment} byte limit")
        return value


def _tensor_label(i: int, name: str) -> str:
    """How errors name the `i`th tensor: with its name unless that is too long to read."""
    return f"tensor[{i}] {name!r}" if len(name) <= 80 else f"tensor[{i}]"


def parse_source(source: ByteSource, limits: Limits = DEFAULT_LIMITS, deadline: float | None = None) -> GGUFFile:
    """Parse one GGUF file (one shard) from a byte source."""
    if deadline is None:
        deadline = time.monotonic() + limits.max_seconds
    return _HeaderParser(source, limits, deadline).parse()


def _open(location: str, on_fetch: Callable[[int], None] | None) -> ByteSource:
    return HTTPSource(location, on_fetch=on_fetch) if is_url(location) else FileSource(location)


def _file_name(location: str) -> str:
    return split_url(location)[1] if is_url(location) else Path(location).name


def _sibling(location: str, name: str) -> str:
    """The location of another file in the same folder (or URL folder, keeping the query)."""
    if is_url(location):
        prefix, _, query = split_url(location)
        return prefix + name + query
    return str(Path(location).with_name(name))


def _exists(location: str) -> bool:
    return is_url(location) or Path(location).exists()


def _parse_location(location: str, limits: Limits, deadline: float, on_fetch: Callable[[int], None] | None) -> GGUFFile:
    source = _open(location, on_fetch)
    try:
        return parse_source(source, limits, deadline)
    finally:
        source.close()


def read_gguf(
    path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS, on_fetch: Callable[[int], None] | None = None
) -> GGUFFile:
    """Read a model: a single GGUF file, or the first shard of a split set and all its siblings.

    `path` may be an http(s) URL: only the header is fetched, by range requests.
    """
    location = os.fspath(path)
    match = SHARD_RE.match(_file_name(location))
    if match and int(match["no"]) != 1:
        first_name = f"{match['prefix']}-00001-of-{match['count']}.gguf"
        raise GGUFError(
            location,
            None,
            "split",
            f"this is shard {int(match['no'])} of {int(match['count'])}; give the first shard, {first_name}",
        )
    # over a slow link the header may take what GPUSPLIT_HTTP_DEADLINE allows, where that is longer
    budget = max(limits.max_seconds, http_deadline()) if is_url(location) else limits.max_seconds
    deadline = time.monotonic() + budget
    first = _parse_location(location, limits, deadline, on_fetch)
    count = _split_count(first, location, match, limits)
    if count is None or count == 1:
        return first
    prefix = _shard_prefix(first, location, match, count)
    for no in range(2, count + 1):
        shard_location = _sibling(location, f"{prefix}-{no:05d}-of-{count:05d}.gguf")
        shard = _read_sibling(shard_location, no, count, limits, deadline, on_fetch)
        _merge_shard(first, shard, shard_location, no)
    expected = _split_key(first, "split.tensors.count")
    if expected is not None and expected != len(first.tensors):
        raise GGUFError(
            location,
            first.key_offsets.get("split.tensors.count"),
            "split.tensors.count",
            f"says {expected} tensors, the shards hold {len(first.tensors)}",
        )
    return first


def _split_count(first: GGUFFile, location: str, match: re.Match[str] | None, limits: Limits) -> int | None:
    """How many shards the first shard's split.* keys declare (None: not a split model), checked."""
    count = _split_key(first, "split.count")
    if count is None:
        if match and int(match["count"]) > 1:
            raise GGUFError(location, None, "split.count", "the file is named as a shard but has no split.* keys")
        return None
    if _split_key(first, "split.no") not in (0, None):
        raise GGUFError(
            location, first.key_offsets.get("split.no"), "split.no", f"is {first.metadata['split.no']}, the first shard has 0"
        )
    if count < 1 or count > limits.max_shards:
        raise GGUFError(location, first.key_offsets["split.count"], "split.count", f"{count} shards is not a valid count")
    return count


def _shard_prefix(first: GGUFFile, location: str, match: re.Match[str] | None, count: int) -> str:
    """The NAME of NAME-00001-of-NNNNN.gguf, from which the siblings are found; the file must be named so."""
    if not match:
        raise GGUFError(
            location,
            first.key_offsets["split.count"],
            "split.count",
            f"the model has {count} shards but the file name does not follow NAME-00001-of-{count:05d}.gguf, "
            "so its siblings cannot be found",
        )
    if int(match["count"]) != count:
        raise GGUFError(
            location, first.key_offsets["split.count"], "split.count", f"is {count} but the file name says {int(match['count'])}"
        )
    return match["prefix"]


def _read_sibling(
    shard_location: str, no: int, count: int, limits: Limits, deadline: float, on_fetch: Callable[[int], None] | None
) -> GGUFFile:
    """Shard `no` (from 1) of `count`, which must say it is that one."""
    if not _exists(shard_location):
        raise GGUFError(shard_location, None, "split", f"shard {no} of {count} is missing", "download every shard")
    shard = _parse_location(shard_location, limits, deadline, on_fetch)
    shard_no = _split_key(shard, "split.no")
    if shard_no != no - 1:
        raise GGUFError(shard_location, shard.key_offsets.get("split.no"), "split.no", f"is {shard_no}, expected {no - 1}")
    if _split_key(shard, "split.count") != count:
        raise GGUFError(
            shard_location,
            shard.key_offsets.get("split.count"),
            "split.count",
            f"is {shard.metadata.get('split.count')}, the first shard says {count}",
        )
    return shard


def _merge_shard(merged: GGUFFile, shard: GGUFFile, shard_location: str, no: int) -> None:
    """Add shard `no`'s tensors (marked as its) and its ShardInfo to `merged`."""
    for t in shard.tensors:
        if t.name in merged.tensor_index:
            raise GGUFError(shard_location, None, f"tensor {t.name!r}", "appears in more than one shard")
        moved = TensorInfo(t.name, t.shape, t.ggml_type, t.offset, t.data_offset, t.n_elements, t.n_bytes, no - 1)
        merged.tensors.append(moved)
        merged.tensor_index[t.name] = moved
    merged.shards.append(shard.shards[0])


def _split_key(f: GGUFFile, key: str) -> int | None:
    value = f.metadata.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise GGUFError(f.path, f.key_offsets.get(key), key, f"must be an integer, not {f.value_types[key]}")
    return value
