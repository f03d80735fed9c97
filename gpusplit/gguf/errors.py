"""The one exception a GGUF file can raise: where it went wrong and why."""

from __future__ import annotations


class GGUFError(Exception):
    """A model file that cannot be read as a GGUF model.

    `offset` is the byte offset in `path` where the offending field starts (None when the problem
    is not at one place, such as a missing shard); `field` names what was being read
    (`kv[3].key`, `tokenizer.ggml.tokens`, `tensor[12].ne[1]`, `llama.block_count`).
    """

    def __init__(self, path: str, offset: int | None, field: str, reason: str, hint: str = "") -> None:
        self.path = str(path)
        self.offset = offset
        self.field = field
        self.reason = reason
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = f" at offset {self.offset}" if self.offset is not None else ""
        return f"{self.path}{where}: {self.field}: {self.reason}"
