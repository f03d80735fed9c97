"""The one exception a GGUF file can raise: where it went wrong and why."""

from __future__ import annotations

from ..base.errors import InputError


class GGUFError(InputError):
    """A model file that cannot be read as a GGUF model.

    `offset` is the byte offset in `path` where the offending field starts (None when the problem
    is not at one place, such as a missing shard); `field` names what was being read
    (`kv[3].key`, `tokenizer.ggml.tokens`, `tensor[12].ne[1]`, `llama.block_count`).
    """

    def __init__(
        self, path: str, offset: int | None, field: str, reason: str, hint: str = "", exit_code: int | None = None
    ) -> None:
        self.path = str(path)
        self.offset = offset
        self.field = field
        self.reason = reason
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{self.path}{where}: {field}: {reason}", hint, exit_code)
