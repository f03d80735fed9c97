"""Reading a GGUF header over HTTP(S) with range requests: a 40 GB model is planned after a few MB.

The header parser asks for growing prefixes of the file; each becomes one `Range: bytes=a-b`
request. A server that ignores ranges (200 instead of 206) is refused rather than downloaded.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from .errors import FetchError, GGUFError

if TYPE_CHECKING:
    from http.client import HTTPMessage

USER_AGENT = "gpusplit (GGUF header reader)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
DEFAULT_TIMEOUT = 30.0
# Headers (a hub token) for URLs under a prefix, set by whoever resolved a model name to them.
_AUTH: dict[str, dict[str, str]] = {}


def authorize(prefix: str, headers: dict[str, str]) -> None:
    """Send these headers with requests for URLs under `prefix` (never to a host a redirect names)."""
    _AUTH[prefix] = {k: v for k, v in headers.items() if k.lower() == "authorization"}


def _headers_for(url: str) -> dict[str, str]:
    best = max((p for p in _AUTH if url.startswith(p)), key=len, default=None)
    return dict(_AUTH[best]) if best else {}


def http_timeout() -> float:
    """Seconds to wait for a server: $GPUSPLIT_HTTP_TIMEOUT, else 30."""
    try:
        value = float(os.environ.get("GPUSPLIT_HTTP_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


class _SameHostAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects, dropping the Authorization header when one leads to another host (the
    Hub sends file contents from a CDN; a token must not travel there)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_SameHostAuth)


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def split_url(url: str) -> tuple[str, str, str]:
    """(everything before the file name, the file name, '?query' or '')."""
    parts = urllib.parse.urlsplit(url)
    head, _, name = parts.path.rpartition("/")
    prefix = urllib.parse.urlunsplit((parts.scheme, parts.netloc, head + "/", "", ""))
    query = f"?{parts.query}" if parts.query else ""
    return prefix, urllib.parse.unquote(name), query


class HTTPSource:
    """A remote file read by range requests; counts the bytes it fetched."""

    def __init__(self, url: str, timeout: float | None = None, on_fetch: Callable[[int], None] | None = None) -> None:
        self.name = url
        self.timeout = timeout or http_timeout()
        self.bytes_read = 0
        self.requests = 0
        self.on_fetch = on_fetch
        self.size = 0
        first = self._get(0, 0)  # one byte: learns the total size and that ranges work
        self.size = first[1]

    def _get(self, offset: int, last: int) -> tuple[bytes, int]:
        headers = {"Range": f"bytes={offset}-{last}", "User-Agent": USER_AGENT, **_headers_for(self.name)}
        request = urllib.request.Request(self.name, headers=headers)
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                if response.status != 206:
                    raise GGUFError(
                        self.name, None, "http", f"the server ignored the range request (HTTP {response.status})",
                        "download the file, or use a server that supports Range requests",
                    )  # fmt: skip
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if not match or match.group(3) == "*":
                    raise GGUFError(self.name, None, "http", "the server gave no file size (Content-Range)")
                data = response.read(last - offset + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:
                return b"", self.size
            hint = "set HF_TOKEN (a gated or private repo)" if exc.code in (401, 403) else ""
            # A missing or forbidden file is the name's fault (wrong input); a failing server is not.
            kind = FetchError if exc.code >= 500 else GGUFError
            raise kind(self.name, None, "http", f"HTTP {exc.code} {exc.reason}", hint) from None
        except urllib.error.URLError as exc:
            raise FetchError(self.name, None, "http", f"cannot fetch: {self._why(exc.reason)}") from None
        except (TimeoutError, OSError) as exc:
            raise FetchError(self.name, None, "http", f"cannot fetch: {self._why(exc)}") from None
        self.requests += 1
        self.bytes_read += len(data)
        if self.on_fetch is not None:
            self.on_fetch(self.bytes_read)
        return data, int(match.group(3))

    def _why(self, reason: object) -> str:
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return f"no answer within {self.timeout:g} s (GPUSPLIT_HTTP_TIMEOUT)"
        return str(reason)

    def read(self, offset: int, size: int) -> bytes:
        if size <= 0 or offset >= self.size:
            return b""
        last = min(offset + size, self.size) - 1
        return self._get(offset, last)[0]

    def close(self) -> None:
        pass

    def __enter__(self) -> HTTPSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
