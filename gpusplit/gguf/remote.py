"""Reading a GGUF header over HTTP(S) with range requests: a 40 GB model is planned after a few MB.

The header parser asks for growing prefixes of the file; each becomes one `Range: bytes=a-b`
request. A server that ignores ranges (200 instead of 206) is refused rather than downloaded.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from .errors import GGUFError

USER_AGENT = "gpusplit (GGUF header reader)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


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

    def __init__(self, url: str, timeout: float = 30.0, on_fetch: Callable[[int], None] | None = None) -> None:
        self.name = url
        self.timeout = timeout
        self.bytes_read = 0
        self.requests = 0
        self.on_fetch = on_fetch
        self.size = 0
        first = self._get(0, 0)  # one byte: learns the total size and that ranges work
        self.size = first[1]

    def _get(self, offset: int, last: int) -> tuple[bytes, int]:
        request = urllib.request.Request(self.name, headers={"Range": f"bytes={offset}-{last}", "User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
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
            raise GGUFError(self.name, None, "http", f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise GGUFError(self.name, None, "http", f"cannot fetch: {exc.reason}") from None
        except (TimeoutError, OSError) as exc:
            raise GGUFError(self.name, None, "http", f"cannot fetch: {exc}") from None
        self.requests += 1
        self.bytes_read += len(data)
        if self.on_fetch is not None:
            self.on_fetch(self.bytes_read)
        return data, int(match.group(3))

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
