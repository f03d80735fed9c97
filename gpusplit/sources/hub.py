"""Models by name: plan before you download.

    hf://OWNER/REPO[:QUANT | /path/file.gguf][@REVISION]
    ollama://[REGISTRY/][NAMESPACE/]MODEL[:TAG]

A name resolves to the URL of the model's first GGUF file, read by range requests (only its
header); `download` fetches the whole file for `run` and `bench`. Hugging Face goes through
huggingface_hub (HF_ENDPOINT, HF_TOKEN, its cache, HF_HUB_OFFLINE); Ollama's registry through its
manifest and blob API, blobs cached under gpusplit's cache folder. No I/O to the terminal: the
callers report progress.

Every answer is bounded (gguf/remote.py says how): a hub listing and a manifest by
`GPUSPLIT_HTTP_DEADLINE` in all and by a byte cap; an Ollama blob's download, long by nature, by
that span without progress (a stall), never in total. A hf:// download is huggingface_hub's, bounded
by its own per-read timeout (HF_HUB_DOWNLOAD_TIMEOUT).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from msgspec import Meta, Struct
from msgspec import field as struct_field

from ..base.errors import GpusplitError, InputError
from ..base.jsonio import decode
from ..gguf.remote import USER_AGENT, Deadline, authorize, failure, open_url

HF_PREFIX, OLLAMA_PREFIX = "hf://", "ollama://"
OLLAMA_REGISTRY = "registry.ollama.ai"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
OLLAMA_PROJECTOR = "application/vnd.ollama.image.projector"
_SHARD = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_MANIFEST_BYTES = 8 * 1024 * 1024  # a manifest is a few KB
MAX_LISTING_BYTES = 16 * 1024 * 1024  # a repo's listing: ~100 bytes a file


class ModelNameError(InputError):
    """A model name that names nothing: a bad form, an unknown repo or tag, no GGUF file (exit 2)."""


class HubError(GpusplitError):
    """The hub or registry could not be reached or answered wrongly (exit 1)."""


@dataclass(frozen=True)
class RemoteModel:
    name: str  # as the user wrote it
    source: str  # "hf" or "ollama"
    url: str  # the first GGUF file, readable by range requests
    files: tuple[str, ...] = ()  # hf: the repo paths of its shards, in order
    repo: str = ""  # hf: OWNER/REPO
    revision: str | None = None
    digest: str = ""  # ollama: the model layer's sha256 digest
    size: int = 0  # ollama: the model layer's size
    projectors: tuple[str, ...] = ()  # mmproj files (hf) or projector layer digests (ollama)
    local: str | None = None  # already on disk (HF_HUB_OFFLINE with the file in the cache)
    notes: list[str] = field(default_factory=list)
    projector_url: str | None = None  # ollama: the projector layer Ollama always loads with the model


def is_model_name(location: str) -> bool:
    return location.startswith((HF_PREFIX, OLLAMA_PREFIX))


# One command asks for a name more than once (plan: the header, then an Ollama manifest's projector;
# run: the header, then the download): each answer is kept for a minute, under the name and every
# setting that could change it, so that a long-lived library process still sees a new upload.
RESOLVE_TTL_S = 60.0
_resolved: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, RemoteModel]] = {}


def _settings_key() -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted((k, v) for k, v in os.environ.items() if k.startswith(("HF_", "GPUSPLIT_", "OLLAMA_")) or k == "XDG_CACHE_HOME")
    )


def resolve(name: str) -> RemoteModel:
    """The GGUF file a name stands for (only listings and manifests are fetched)."""
    key = (name, _settings_key())
    hit = _resolved.get(key)
    if hit is not None and time.monotonic() - hit[0] < RESOLVE_TTL_S:
        return hit[1]
    if name.startswith(HF_PREFIX):
        model = _resolve_hf(name)
    elif name.startswith(OLLAMA_PREFIX):
        model = _resolve_ollama(name)
    else:
        raise ModelNameError(f"{name!r} is not a model name", "use hf://OWNER/REPO[:QUANT] or ollama://MODEL[:TAG]")
    _resolved[key] = (time.monotonic(), model)
    return model


def download(model: RemoteModel, on_progress: Callable[[int, int], None] | None = None) -> str:
    """The whole model on disk (every shard); returns the first file's local path."""
    if model.local:
        return model.local
    if model.source == "hf":
        return _download_hf(model)
    return _download_ollama(model, on_progress)


# ---------------------------------------------------------------------------------------------
# Hugging Face


@dataclass(frozen=True)
class HFName:
    repo: str
    quant: str | None
    path: str | None
    revision: str | None


def parse_hf(name: str) -> HFName:
    rest = name[len(HF_PREFIX) :]
    revision = None
    if "@" in rest:
        rest, revision = rest.rsplit("@", 1)
        if not revision:
            raise ModelNameError(f"{name}: empty revision after '@'", "write @main, @v1.0 or a commit hash, or leave it out")
    parts = rest.split("/", 2)
    if len(parts) < 2:
        raise ModelNameError(f"{name}: expected hf://OWNER/REPO", "e.g. hf://bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M")
    owner, repo = parts[0], parts[1]
    quant = path = None
    if len(parts) == 3:
        path = parts[2]
    elif ":" in repo:
        repo, quant = repo.split(":", 1)
    for part in (owner, repo):
        if not _REPO_PART.match(part):
            raise ModelNameError(
                f"{name}: {part!r} is not a valid Hugging Face name", "OWNER and REPO hold letters, digits, '.', '-', '_'"
            )
    if path is not None and (not path.lower().endswith(".gguf") or ".." in path.split("/")):
        raise ModelNameError(
            f"{name}: {path!r} is not a .gguf file path", "name the file, e.g. hf://OWNER/REPO/model-Q4_K_M.gguf"
        )
    if quant == "":
        raise ModelNameError(f"{name}: empty quantization after ':'", "e.g. :Q4_K_M")
    return HFName(f"{owner}/{repo}", quant, path, revision)


def _hf_error(exc: Exception, repo: str, revision: str | None) -> GpusplitError:
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return _hf_refusal("GatedRepo", repo, revision)
    if isinstance(exc, errors.RevisionNotFoundError):
        return _hf_refusal("RevisionNotFound", repo, revision)
    if isinstance(exc, errors.RepositoryNotFoundError):
        return _hf_refusal("RepoNotFound", repo, revision)
    if isinstance(exc, errors.HfHubHTTPError):
        return _hf_refusal(str(exc).splitlines()[0], repo, revision)
    return HubError(
        "cannot reach {endpoint}: {exc}", "check the network, HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the cache",
        endpoint=_hf_endpoint(), exc=str(exc),
    )  # fmt: skip


def _hf_refusal(code: str, repo: str, revision: str | None) -> GpusplitError:
    """The Hub's refusal, by its X-Error-Code (any other text: an error of the Hub's own)."""
    endpoint = _hf_endpoint()
    if code == "GatedRepo":
        return ModelNameError(
            "{repo} is gated on {endpoint}", "accept its terms on the Hub, then set HF_TOKEN to a token of that account",
            repo=repo, endpoint=endpoint,
        )  # fmt: skip
    if code == "RevisionNotFound":
        return ModelNameError(
            "{repo} has no revision {revision}", "use a branch, tag or commit the repo has, or leave @... out",
            repo=repo, revision=repr(revision),
        )  # fmt: skip
    if code == "RepoNotFound":
        return ModelNameError(
            "no model repo {repo} on {endpoint} (or it is private)", "check the name; for a private repo set HF_TOKEN",
            repo=repo, endpoint=endpoint,
        )  # fmt: skip
    return HubError("{endpoint} answered an error for {repo}: {code}", "try again later", endpoint=endpoint, repo=repo, code=code)


# huggingface_hub reads its environment once, at import; these read it when a name is resolved,
# so that HF_ENDPOINT, HF_HUB_OFFLINE and HF_HOME set later in the same process still count.
def _hf_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _hf_offline() -> bool:
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    return bool(constants.HF_HUB_OFFLINE) if value is None else value.strip().upper() in ("1", "ON", "YES", "TRUE")


def _hf_cache() -> str:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def _resolve_hf(name: str) -> RemoteModel:
    parsed = parse_hf(name)
    if _hf_offline():
        return _resolve_hf_cached(name, parsed)
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    files = _hf_files(parsed, dict(build_hf_headers()))
    chosen, projectors = choose_gguf(name, files, parsed.quant, parsed.path)
    url = hf_hub_url(parsed.repo, chosen[0], revision=parsed.revision, endpoint=_hf_endpoint())
    prefix = url[: url.rindex("/") + 1]
    authorize(prefix, dict(build_hf_headers()))  # sent to the Hub only, never on a redirect elsewhere
    return RemoteModel(name, "hf", url, tuple(chosen), parsed.repo, parsed.revision, projectors=tuple(projectors))


class HFSibling(Struct):
    rfilename: Annotated[str, Meta(max_length=4096)]


class HFModelInfo(Struct):
    """The Hub's model_info answer, as far as gpusplit reads it (its other fields left alone)."""

    siblings: Annotated[list[HFSibling], Meta(max_length=1_000_000)] = struct_field(default_factory=list)


def _hf_files(parsed: HFName, headers: dict[str, str]) -> list[str]:
    """Every file of the repo: the Hub's model_info API, as huggingface_hub asks for it, but fetched
    here, so that the answer has a deadline and a size cap (huggingface_hub's timeout bounds each
    read, not the answer, and it reads any size). One request: list_repo_files would retry an
    unreachable Hub for 20 s, logging each retry."""
    endpoint = _hf_endpoint()
    url = f"{endpoint}/api/models/{parsed.repo}"
    if parsed.revision is not None:
        url += "/revision/" + urllib.parse.quote(parsed.revision, safe="")
    unreachable = "check the network, HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the cache"
    status, code, body = _answer(url, headers, f"{endpoint} (the listing of {parsed.repo})", MAX_LISTING_BYTES, unreachable)
    if status != 200:
        if not code and status in (401, 404):
            code = "RepoNotFound"  # the Hub's answer for a private repo without a token
        raise _hf_refusal(code or f"HTTP {status}", parsed.repo, parsed.revision)
    info = decode(body, HFModelInfo, f"{endpoint}'s listing of {parsed.repo}", "model")
    return [sibling.rfilename for sibling in info.siblings]


def _resolve_hf_cached(name: str, parsed: HFName) -> RemoteModel:
    """HF_HUB_OFFLINE: the repo's snapshot in huggingface_hub's cache, or one line saying it is not there."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(parsed.repo, revision=parsed.revision, local_files_only=True, cache_dir=_hf_cache()))
    except Exception:
        raise ModelNameError(
            f"HF_HUB_OFFLINE is set and {parsed.repo} is not in the Hugging Face cache",
            "unset HF_HUB_OFFLINE to read it from the Hub",
        ) from None
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf")]
    chosen, projectors = choose_gguf(name, files, parsed.quant, parsed.path)
    local = folder / chosen[0]
    return RemoteModel(
        name, "hf", str(local), tuple(chosen), parsed.repo, parsed.revision, projectors=tuple(projectors), local=str(local)
    )


def choose_gguf(name: str, files: list[str], quant: str | None, path: str | None) -> tuple[list[str], list[str]]:
    """The shards (in order) of the one model the name picks among a repo's files, and its projectors."""
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
    projectors = [f for f in ggufs if "mmproj" in f.rsplit("/", 1)[-1].lower()]
    models = [f for f in ggufs if f not in projectors]
    if path is not None:
        if path not in ggufs:
            raise ModelNameError(f"{name}: the repo has no file {path}", _listing(models))
        return _shards_of(path, ggufs), projectors
    if quant is not None:
        token = re.compile(r"(?:^|[-./_])" + re.escape(quant.lower()) + r"(?:$|[-./])")
        models = [f for f in models if token.search(f.lower())]
        if not models:
            raise ModelNameError(f"{name}: no GGUF file matches {quant!r}", _listing([f for f in ggufs if f not in projectors]))
    groups = _group_shards(models)
    if not groups:
        raise ModelNameError(
            f"{name}: the repo holds no GGUF model file", "is this a GGUF repo? (many publish GGUF in a separate -GGUF repo)"
        )
    if len(groups) > 1:
        what = f"{quant!r} matches" if quant else "the repo holds"
        raise ModelNameError(
            f"{name}: {what} {len(groups)} models",
            "name one: " + "; ".join(f"/{g[0]}" for g in groups[:8]) + ("; ..." if len(groups) > 8 else ""),
        )
    return groups[0], projectors


def _shards_of(path: str, files: list[str]) -> list[str]:
    match = _SHARD.match(path)
    if not match:
        return [path]
    return [f for f in files if (m := _SHARD.match(f)) and m["stem"] == match["stem"] and m["count"] == match["count"]]


def _group_shards(files: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for f in files:
        match = _SHARD.match(f)
        groups.setdefault(f"{match['stem']}|{match['count']}" if match else f, []).append(f)
    return [sorted(g) for g in groups.values()]


def _listing(files: list[str]) -> str:
    if not files:
        return "the repo holds no GGUF model file"
    quants = sorted({q for f in files if (q := _quant_of(f))})
    if quants:
        return "its GGUF files are " + ", ".join(quants) + " (write :QUANT, e.g. :" + quants[0] + ")"
    return "its GGUF files: " + ", ".join(files[:8]) + (", ..." if len(files) > 8 else "")


def _quant_of(path: str) -> str | None:
    match = re.search(
        r"(?:^|[-._/])((?:I?Q\d[A-Z0-9_]*?|F16|BF16|F32|MXFP4(?:_MOE)?))(?:-\d{5}-of-\d{5})?\.gguf$", path, re.IGNORECASE
    )
    return match[1].upper() if match else None


def _download_hf(model: RemoteModel) -> str:
    from huggingface_hub import hf_hub_download

    paths = []
    try:
        for file in model.files:  # huggingface_hub: its own progress bar on stderr, its cache, resumable
            paths.append(
                hf_hub_download(model.repo, file, revision=model.revision, endpoint=_hf_endpoint(), cache_dir=_hf_cache())
            )
    except Exception as exc:
        raise _hf_error(exc, model.repo, model.revision) from None
    return paths[0]


# ---------------------------------------------------------------------------------------------
# Ollama


@dataclass(frozen=True)
class OllamaName:
    registry: str
    namespace: str
    model: str
    tag: str

    @property
    def base(self) -> str:
        scheme = "http" if _is_loopback(self.registry) else "https"
        return f"{scheme}://{self.registry}/v2/{self.namespace}/{self.model}"


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "::1", "[::1]") or name.startswith("127.")


def parse_ollama(name: str) -> OllamaName:
    rest = name[len(OLLAMA_PREFIX) :]
    parts = rest.split("/")
    tag = "latest"
    if ":" in parts[-1]:
        parts[-1], tag = parts[-1].rsplit(":", 1)
    if len(parts) == 3:
        registry, namespace, model = parts
    elif len(parts) == 2 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, namespace, model = parts[0], "library", parts[1]
    elif len(parts) == 2:
        registry, namespace, model = OLLAMA_REGISTRY, parts[0], parts[1]
    elif len(parts) == 1:
        registry, namespace, model = OLLAMA_REGISTRY, "library", parts[0]
    else:
        raise ModelNameError(f"{name}: expected ollama://[REGISTRY/][NAMESPACE/]MODEL[:TAG]", "e.g. ollama://llama3.1:70b")
    for part in (namespace, model, tag):
        if not _REPO_PART.match(part):
            raise ModelNameError(f"{name}: {part!r} is not a valid Ollama name part", "letters, digits, '.', '-', '_'")
    return OllamaName(registry, namespace, model, tag)


def _answer(url: str, headers: dict[str, str], what: str, limit: int, unreachable: str) -> tuple[int, str, bytes]:
    """(status, X-Error-Code, body) of a GET: a JSON answer (a listing, a manifest) of at most `limit`
    bytes, whole within the deadline; an error status comes back with no body. A deadline passed,
    a host not reached or an answer too big is a HubError naming `what` (`unreachable`: the hint
    for a host not reached)."""
    deadline = Deadline.for_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    try:
        with open_url(request, deadline) as response:
            body = response.read(limit + 1)
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, exc.headers.get("X-Error-Code") or "", b""
    except (OSError, http.client.HTTPException) as exc:  # URLError and TimeoutError are OSErrors
        why, more = failure(exc, deadline)
        if why.startswith("cannot fetch: "):
            why = f"cannot reach {deadline.host} ({why.removeprefix('cannot fetch: ')})"
        how = f"{more}, or try again" if more else unreachable
        raise HubError("{what}: {why}", "{how}", what=what, why=why, how=how) from None
    if len(body) > limit:
        raise HubError(
            "{what}: the answer is larger than {limit} MiB", "check the name: this is not the answer of a model registry",
            what=what, limit=limit >> 20,
        )  # fmt: skip
    return status, "", body


class ManifestLayer(Struct):
    """A layer of an Ollama manifest (the registry's OCI manifest; fields it has beyond these are
    the registry's own, and left alone)."""

    mediaType: str
    digest: Annotated[str, Meta(pattern=r"^sha256:[0-9a-f]{64}$")]
    size: Annotated[int, Meta(ge=0, le=2**50)] = 0


class Manifest(Struct):
    layers: Annotated[list[ManifestLayer], Meta(max_length=1000)]


def _resolve_ollama(name: str) -> RemoteModel:
    parsed = parse_ollama(name)
    url = f"{parsed.base}/manifests/{parsed.tag}"
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    unreachable = "check the network and the registry name"
    status, _, body = _answer(url, {"Accept": accept}, f"{name} (manifest)", MAX_MANIFEST_BYTES, unreachable)
    if status in (401, 403, 404):
        raise ModelNameError(
            "{name} (manifest): not found (HTTP {status})", "check the model name and tag (ollama.com/library)",
            name=name, status=status,
        )  # fmt: skip
    if status != 200:
        raise HubError("{name} (manifest): HTTP {status}", "try again later", name=name, status=status)
    manifest = decode(body, Manifest, f"{name} (its manifest)", "model")
    model_layers = [layer for layer in manifest.layers if layer.mediaType == OLLAMA_MODEL]
    projectors = [layer.digest for layer in manifest.layers if layer.mediaType == OLLAMA_PROJECTOR]
    if not model_layers:
        raise ModelNameError(f"{name}: the manifest has no model layer ({OLLAMA_MODEL})", "is this a model (not an adapter)?")
    layer = model_layers[0]
    digest = layer.digest
    notes = (
        [f"a projector layer (vision): planned with the model, as Ollama loads it ({projectors[0][:19]}...)"]
        if projectors
        else []
    )
    return RemoteModel(
        name, "ollama", f"{parsed.base}/blobs/{digest}", digest=digest, size=layer.size,
        projectors=tuple(projectors), notes=notes,
        projector_url=f"{parsed.base}/blobs/{projectors[0]}" if projectors else None,
    )  # fmt: skip


def ollama_blob_path(digest: str) -> Path:
    from ..base.paths import cache_dir

    return cache_dir() / "ollama" / "blobs" / digest.replace(":", "-")


def _download_ollama(model: RemoteModel, on_progress: Callable[[int, int], None] | None) -> str:
    """The blob into gpusplit's cache: resumed from a partial file, checked against its digest."""
    path = ollama_blob_path(model.digest)
    if path.exists():
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={have}-"} if have else {})}
    # Long by nature: no total deadline, but one on progress (STALL_BYTES within each deadline's span).
    deadline = Deadline.for_url(model.url, stall=True)
    done = reported = have
    try:
        with open_url(urllib.request.Request(model.url, headers=headers), deadline) as response:
            if have and response.status != 206:
                have = done = reported = 0  # the server sent the whole blob again
            with partial.open("ab" if have else "wb") as out:
                # read1: what has arrived is written at once, so a stall loses none of it
                while chunk := response.read1(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    if on_progress is not None and done - reported >= 1 << 20:
                        reported = done
                        on_progress(done, model.size)
            if on_progress is not None and done != reported:
                on_progress(done, model.size)
    except (OSError, http.client.HTTPException) as exc:  # URLError and TimeoutError are OSErrors
        why, more = failure(exc, deadline)
        how = "run it again: the download resumes" + (f"; or {more}" if more else "")
        raise HubError("downloading {name}: {why}", "{how}", name=model.name, why=why, how=how) from None
    if model.size and done < model.size:  # the connection closed early: keep what came, for the next try
        raise HubError(
            "downloading {name}: the server closed the connection after {done} of {size} bytes",
            "run it again: the download resumes", name=model.name, done=done, size=model.size,
        )  # fmt: skip
    sha = hashlib.sha256()
    with partial.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    if f"sha256:{sha.hexdigest()}" != model.digest:
        partial.unlink()
        raise HubError(f"downloading {model.name}: the blob does not match its digest", "run it again")
    os.replace(partial, path)
    return str(path)
