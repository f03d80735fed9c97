"""Local fake servers for the subset of the Hugging Face Hub and Ollama registry APIs gpusplit uses.

`FakeHub`: GET /api/models/{repo}[/revision/{revision}] (model_info: every file as a sibling) and
/api/models/{repo}/tree/{revision} (list_repo_files), HEAD/GET /{repo}/resolve/{revision}/{path} answered by a redirect to a second server (the
"CDN", another host:port) that serves the bytes with Range support. Repos can be private or gated
(401 with X-Error-Code, as the Hub answers) and slow.
`FakeOllama`: GET /v2/{namespace}/{model}/manifests/{tag} and /v2/.../blobs/{digest}, the blob
redirected to the CDN as well.
Each records the requests it saw, so tests can check what was fetched and which headers went where.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

TOKEN = "hf_test_token"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _size(data: bytes | Path) -> int:
    return data.stat().st_size if isinstance(data, Path) else len(data)


def _slice(data: bytes | Path, start: int, end: int) -> bytes:
    if isinstance(data, Path):
        with data.open("rb") as f:
            f.seek(start)
            return f.read(end - start + 1)
    return data[start : end + 1]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    bytes_sent: int = 0


class _Server:
    """A threading HTTP server on 127.0.0.1 whose handler calls `self.handle(handler)`."""

    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer._dispatch(self, "GET")

            def do_HEAD(self) -> None:
                outer._dispatch(self, "HEAD")

            def log_message(self, *args: object) -> None:
                pass

        self.seen: list[Seen] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        record = Seen(method, h.path, {k.lower(): v for k, v in h.headers.items()})
        self.seen.append(record)
        try:
            self.handle(h, method, record)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def handle(self, h: BaseHTTPRequestHandler, method: str, record: Seen) -> None:
        raise NotImplementedError

    @staticmethod
    def reply(
        h: BaseHTTPRequestHandler, code: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
    ) -> None:
        h.send_response(code)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if body and not head:
            h.wfile.write(body)

    @staticmethod
    def json(h: BaseHTTPRequestHandler, code: int, doc: object, headers: dict[str, str] | None = None) -> None:
        _Server.reply(h, code, json.dumps(doc).encode(), {"Content-Type": "application/json", **(headers or {})})


class CDN(_Server):
    """Serves registered files by path, with Range support (206) and HEAD."""

    def __init__(self) -> None:
        self.files: dict[str, bytes | Path] = {}
        self.delay = 0.0
        super().__init__()

    def add(self, key: str, data: bytes | Path) -> str:
        self.files[key] = data
        return f"{self.url}/cdn/{key}"

    def handle(self, h: BaseHTTPRequestHandler, method: str, record: Seen) -> None:
        key = unquote(urlsplit(h.path).path).removeprefix("/cdn/")
        data = self.files.get(key)
        if data is None:
            return self.reply(h, 404, b"no such object")
        if self.delay:
            time.sleep(self.delay)
        total = _size(data)
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", ""))
        if not match:
            body = b"" if method == "HEAD" else _slice(data, 0, total - 1)
            record.bytes_sent = len(body)
            return self.reply(h, 200, body, {"Content-Length": str(total)} if method == "HEAD" else None, head=method == "HEAD")
        start = int(match[1])
        end = min(int(match[2]) if match[2] else total - 1, total - 1)
        if start >= total:
            return self.reply(h, 416, b"", {"Content-Range": f"bytes */{total}"})
        body = _slice(data, start, end)
        record.bytes_sent = 0 if method == "HEAD" else len(body)
        self.reply(h, 206, body, {"Content-Range": f"bytes {start}-{end}/{total}"}, head=method == "HEAD")


@dataclass
class Repo:
    files: dict[str, bytes | Path]
    private: bool = False
    gated: bool = False
    revisions: tuple[str, ...] = ("main",)


@dataclass
class FakeHub(_Server):
    """The Hub's API and resolve endpoints; file contents come from `cdn` (another host)."""

    cdn: CDN = field(default_factory=CDN)
    repos: dict[str, Repo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()

    def add_repo(self, repo_id: str, files: dict[str, bytes | Path], **kw: object) -> None:
        self.repos[repo_id] = Repo(files, **kw)  # type: ignore[arg-type]
        for path, data in files.items():
            self.cdn.add(f"{repo_id}/{path}", data)

    def close(self) -> None:
        super().close()
        self.cdn.close()

    def _denied(self, h: BaseHTTPRequestHandler, repo: Repo) -> bool:
        authorized = h.headers.get("Authorization") == f"Bearer {TOKEN}"
        if repo.gated and not authorized:
            self.json(h, 401, {"error": "Access to this repo is restricted"}, {"X-Error-Code": "GatedRepo"})
            return True
        if repo.private and not authorized:
            self.json(h, 401, {"error": "Repository Not Found"}, {"X-Error-Code": "RepoNotFound"})
            return True
        return False

    def handle(self, h: BaseHTTPRequestHandler, method: str, record: Seen) -> None:
        path = unquote(urlsplit(h.path).path)
        tree = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        info = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        match = tree or info or resolve
        if not match:
            return self.json(h, 404, {"error": "not found"})
        repo = self.repos.get(match[1])
        if repo is None:
            return self.json(h, 401 if resolve else 404, {"error": "Repository Not Found"}, {"X-Error-Code": "RepoNotFound"})
        if self._denied(h, repo):
            return None
        if (match[2] or "main") not in repo.revisions:
            return self.json(h, 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
        if info:
            siblings = [{"rfilename": p} for p in sorted(repo.files)]
            return self.json(h, 200, {"id": match[1], "sha": COMMIT, "siblings": siblings, "private": repo.private})
        if tree:
            listing = [{"type": "file", "path": p, "size": _size(d), "oid": "0" * 40} for p, d in sorted(repo.files.items())]
            return self.json(h, 200, listing)
        data = repo.files.get(match[3])
        if data is None:
            return self.json(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        etag = hashlib.sha256(f"{match[1]}/{match[3]}".encode()).hexdigest()
        headers = {
            "Location": f"{self.cdn.url}/cdn/{match[1]}/{match[3]}",
            "X-Repo-Commit": COMMIT,
            "X-Linked-Etag": f'"{etag}"',
            "ETag": f'"{etag}"',
            "X-Linked-Size": str(_size(data)),
        }
        self.reply(h, 302, b"", headers, head=method == "HEAD")


@dataclass
class FakeOllama(_Server):
    """An Ollama registry: manifests, and blobs redirected to `cdn`."""

    cdn: CDN = field(default_factory=CDN)
    models: dict[str, dict] = field(default_factory=dict)  # "ns/model:tag" -> manifest
    blobs: dict[str, bytes | Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()

    def add_model(self, name: str, gguf: bytes | Path, projector: bytes | None = None) -> str:
        layers = [self._layer("application/vnd.ollama.image.model", gguf)]
        if projector is not None:
            layers.append(self._layer("application/vnd.ollama.image.projector", projector))
        layers.append(self._layer("application/vnd.ollama.image.template", b"{{ .Prompt }}"))
        self.models[name] = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": layers,
        }
        return layers[0]["digest"]

    def _layer(self, media_type: str, data: bytes | Path) -> dict:
        sha = hashlib.sha256()
        if isinstance(data, Path):
            with data.open("rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
        else:
            sha.update(data)
        digest = f"sha256:{sha.hexdigest()}"
        self.blobs[digest] = data
        self.cdn.add(digest, data)
        return {"mediaType": media_type, "digest": digest, "size": _size(data)}

    def close(self) -> None:
        super().close()
        self.cdn.close()

    def handle(self, h: BaseHTTPRequestHandler, method: str, record: Seen) -> None:
        path = unquote(urlsplit(h.path).path)
        manifest = re.fullmatch(r"/v2/([^/]+)/([^/]+)/manifests/([^/]+)", path)
        if manifest:
            doc = self.models.get(f"{manifest[1]}/{manifest[2]}:{manifest[3]}")
            if doc is None:
                return self.json(h, 404, {"errors": [{"code": "MANIFEST_UNKNOWN"}]})
            return self.json(h, 200, doc, {"Content-Type": doc["mediaType"]})
        blob = re.fullmatch(r"/v2/([^/]+)/([^/]+)/blobs/(sha256:[0-9a-f]{64})", path)
        if blob and blob[3] in self.blobs:
            return self.reply(h, 307, b"", {"Location": f"{self.cdn.url}/cdn/{blob[3]}"}, head=method == "HEAD")
        self.json(h, 404, {"errors": [{"code": "BLOB_UNKNOWN"}]})
