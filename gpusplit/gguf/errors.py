"""The one exception a GGUF file can raise: where it went wrong and why."""

from __future__ import annotations

from ..base.errors import GpusplitError, InputError


class GGUFError(InputError):
    """A model file that cannot be read as a GGUF model.

    `offset` is the byte offset in `path` where the offending field starts (None when the problem
    is not at one place, such as a missing shard); `field` names what was being read
    (`kv[3].key`, `tokenizer.ggml.tokens`, `tensor[12].ne[1]`, `llama.block_count`).
    """

    def __init__(self, path: str, offset: int | None, field: str, reason: str, hint: str = "", parameter: str = "model") -> None:
        self.path = str(path)
        self.offset = offset
        self.field = field
        self.reason = reason
        where = f" at offset {offset}" if offset is not None else ""
        # the model is the command's subject: a companion file (lora, draft, mmproj) says which it is
        said = "" if parameter == "model" else "{p} "
        super().__init__(said + "{path}{where}: {field}: {reason}", hint, parameter=parameter, path=self.path, where=where,
                         field=field, reason=reason)  # fmt: skip

    def as_parameter(self, parameter: str) -> GGUFError:
        """This error about a file given as `parameter` (a LoRA adapter, a draft model, a projector)."""
        return GGUFError(self.path, self.offset, self.field, self.reason, self.hint_template, parameter)


class FetchError(GpusplitError):
    """A remote model's bytes could not be fetched (no answer, a failing server): a runtime failure,
    not wrong input. Says where, as GGUFError does."""

    def __init__(self, path: str, offset: int | None, field: str, reason: str, hint: str = "") -> None:
        self.path = str(path)
        self.offset = offset
        self.field = field
        self.reason = reason
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{self.path}{where}: {field}: {reason}", hint)
