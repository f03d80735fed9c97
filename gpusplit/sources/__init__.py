"""Where a model comes from, in one place: a local file (or the first shard of a split model), an
http(s) URL, a Hugging Face name (hf://OWNER/REPO[:QUANT|/file.gguf][@REV]) or an Ollama name
(ollama://[REGISTRY/][NS/]MODEL[:TAG]).

The header reader, the downloads, the projector Ollama loads with a model and the flags that tell
llama.cpp where to find it all ask this module; no other module looks at a location's prefix.
llama-server cannot open a URL or an ollama:// name with -m: it takes `-hf` for a Hugging Face
name, `-mu URL` for a file on a web server (an Ollama blob is one), or a path on disk.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..base.errors import InputError
from ..gguf.model import ModelInfo
from ..gguf.model import read_model as read
from .hub import download as fetch
from .hub import parse_hf, parse_ollama, resolve

HF, OLLAMA, URL, FILE = "hf", "ollama", "url", "file"
PREFIXES = {"hf://": HF, "ollama://": OLLAMA, "http://": URL, "https://": URL}


@dataclass(frozen=True)
class Source:
    """A model location and what kind of place it names."""

    location: str  # as the user wrote it
    kind: str  # file, url, hf, ollama

    @property
    def remote(self) -> bool:
        """Read by range requests, not from disk."""
        return self.kind != FILE

    @property
    def is_name(self) -> bool:
        """A hub or registry name, resolved to a file before anything is read."""
        return self.kind in (HF, OLLAMA)


def source_of(location: str | os.PathLike[str]) -> Source:
    text = os.fspath(location)
    kind = next((k for prefix, k in PREFIXES.items() if text.startswith(prefix)), FILE)
    return Source(text, kind)


def is_remote(location: str | os.PathLike[str]) -> bool:
    """An http(s) URL or a hf:// / ollama:// name."""
    return source_of(location).remote


def read_model(
    location: str | os.PathLike[str],
    on_fetch: Callable[[int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> ModelInfo:
    """A GGUF model's header from wherever it lives (names are resolved to a file first; remote
    files are read by range requests, `on_fetch(bytes_so_far)` reporting progress and `on_note`
    what a name resolved to). Reads no tensor data. A name's model keeps the name as its `path`
    and the URL it was read from as its `source_url`."""
    source = source_of(location)
    if not source.is_name:
        return read(source.location, on_fetch=on_fetch)

    remote = resolve(source.location)  # a listing or manifest, then the header by ranges
    if on_note is not None:
        shards = f" ({len(remote.files)} shards)" if len(remote.files) > 1 else ""
        on_note(f"{source.location} is {remote.files[0] if remote.files else remote.digest}{shards}")
        if remote.source == HF and remote.projectors:
            on_note(f"the repo also holds projector(s) {', '.join(remote.projectors)}: plan one with --mmproj once downloaded")
        for note in remote.notes:
            on_note(note)
    return replace(read(remote.local or remote.url, on_fetch=on_fetch), path=source.location, source_url=remote.url)


def download(location: str, on_progress: Callable[[int, int], None] | None = None) -> str:
    """A local path for the model: a file as it is; a hub or registry name downloaded (every shard,
    resumable, cached: huggingface_hub's cache, or gpusplit's for Ollama blobs)."""
    source = source_of(location)
    if source.kind == FILE:
        return location
    if source.kind == URL:
        raise InputError(
            f"{location} is a URL and gpusplit does not download URLs", "download it first; plan and inspect read URLs"
        )

    return fetch(resolve(location), on_progress)


def default_projector(location: str) -> str | None:
    """The projector a model's source loads with it unasked: an Ollama manifest's projector layer
    (Ollama always loads it), as a URL; None for every other source."""
    if source_of(location).kind != OLLAMA:
        return None

    return resolve(location).projector_url


def model_flags(location: str, source_url: str | None = None) -> list[str]:
    """llama-server's flags that load this model: `-m PATH`; `-hf REPO[:QUANT]` (or -hfr/-hff for a
    file) for a Hugging Face name, which llama.cpp downloads itself; `-mu URL` for a URL, and for an
    Ollama name its blob's URL (`source_url`, as read_model found it)."""
    source = source_of(location)
    if source.kind == HF:
        name = parse_hf(location)
        if name.path:
            return ["-hfr", name.repo, "-hff", name.path]
        return ["-hf", f"{name.repo}:{name.quant}" if name.quant else name.repo]
    if source.kind == URL:
        return ["-mu", location]
    if source.kind == OLLAMA:
        if not source_url:
            raise InputError(
                f"{location}: no blob URL to give llama-server", "plan the model by its name so its manifest is read"
            )
        return ["-mu", source_url]
    return ["-m", location]


def projector_flags(location: str) -> list[str]:
    """llama-server's flags for a multimodal projector file or URL."""
    return ["--mmproj-url" if source_of(location).kind == URL else "--mmproj", location]


@dataclass(frozen=True)
class Download:
    """A file llama_cpp.Llama cannot fetch itself: where it is and the name to save it as."""

    url: str
    path: str


# llama.cpp's split naming (gguf-split): PREFIX-00001-of-00003.gguf, the other parts beside the first
_SPLIT_PART = re.compile(r"^(?P<prefix>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")


def python_downloads(location: str, source_url: str | None = None) -> list[Download]:
    """What to download before llama_cpp.Llama(model_path=...) can load the model: nothing for a
    file or a Hugging Face name (Llama.from_pretrained downloads it); for a URL its file, every
    part of a split model; for an Ollama name its blob (`source_url`), saved under the name."""
    kind = source_of(location).kind
    if kind == URL:
        url = location
        name = _safe_name(urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]))
    elif kind == OLLAMA and source_url:
        url = source_url
        parsed = parse_ollama(location)
        name = _safe_name(f"{parsed.model}-{parsed.tag}")
    else:
        return []
    split = _SPLIT_PART.match(name) if kind == URL else None
    if split is None or int(split["index"]) != 1:
        return [Download(url, name)]
    count = int(split["count"])
    parts = [f"{split['prefix']}-{index:05d}-of-{count:05d}.gguf" for index in range(1, count + 1)]
    base = url[: url.rfind("/") + 1]
    return [Download(url if index == 0 else base + urllib.parse.quote(part), part) for index, part in enumerate(parts)]


def _safe_name(name: str) -> str:
    """A file name safe to print and to save under: letters, digits, dot, dash and underscore."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    return cleaned if cleaned.endswith(".gguf") else cleaned + ".gguf"


def python_model_kwargs(location: str, source_url: str | None = None) -> dict[str, Any]:
    """How llama_cpp.Llama finds the model: `model_path`, or for a Hugging Face name the
    repo_id/filename pair of Llama.from_pretrained (which downloads through huggingface_hub). A
    URL or an Ollama name is a file on disk once downloaded (python_downloads says which)."""
    kind = source_of(location).kind
    if kind in (URL, OLLAMA):
        downloads = python_downloads(location, source_url)
        return {"model_path": downloads[0].path if downloads else location}
    if kind != HF:
        return {"model_path": location}

    name = parse_hf(location)
    return {"repo_id": name.repo, "filename": name.path or (f"*{name.quant}*.gguf" if name.quant else "*.gguf")}
