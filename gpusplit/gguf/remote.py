"""Reading a GGUF header over HTTP(S) with range requests: a 40 GB model is planned after a few MB.

The header parser asks for growing prefixes of the file; each becomes one `Range: bytes=a-b`
request. A server that ignores ranges (200 instead of 206) is refused rather than downloaded.

Time is bounded while bytes arrive, not only between reads, so a server that sends one byte a
second cannot keep a command alive:

- `GPUSPLIT_HTTP_TIMEOUT` (seconds, default 30): the longest single wait on the network (connecting,
  one read of the socket).
- `GPUSPLIT_HTTP_DEADLINE` (seconds, default 30): the whole of one answer.
  For a remote header that is every range request of the file together, from the first; for a hub
  listing or an Ollama manifest (sources/hub.py), that one request. Before each read of the socket
  its timeout is set to the time left (at most the per-read timeout); when the deadline passes the
  read fails and the caller says which host and which deadline, as one line (exit 1: the server's
  failure, not wrong input). The header parser's own budget (Limits.max_seconds, 30 s) grows to
  the deadline for a URL where that is longer, so a slow link may be given more time.
- A download (the whole model, long by nature) has no total deadline: it must instead receive
  `STALL_BYTES` within every `GPUSPLIT_HTTP_DEADLINE` seconds, or it is stopped as stalled.

Either variable, when set (an empty value counts as unset), must be a number of seconds above 0
and at most a day: anything else is an InputError naming it.
"""

from __future__ import annotations

import functools
import http.client
import io
import math
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from ..base.errors import InputError
from .errors import FetchError, GGUFError

if TYPE_CHECKING:
    from http.client import HTTPMessage

USER_AGENT = "gpusplit (GGUF header reader)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
TIMEOUT_ENV, DEADLINE_ENV = "GPUSPLIT_HTTP_TIMEOUT", "GPUSPLIT_HTTP_DEADLINE"
DEFAULT_TIMEOUT = 30.0
DEFAULT_DEADLINE = 30.0  # as Limits.max_seconds: a remote header is read in the time a local one may be parsed
MAX_SECONDS = 86400.0  # a day; beyond it a socket's timeout overflows on some platforms, and nobody waits that long
STALL_BYTES = 64 * 1024  # a download that gets less than this in a deadline's span has stalled
_READ_CHUNK = 1 << 20  # the most one read of the socket asks for
# Headers (a hub token) for URLs under a prefix, set by whoever resolved a model name to them.
_AUTH: dict[str, dict[str, str]] = {}


def authorize(prefix: str, headers: dict[str, str]) -> None:
    """Send these headers with requests for URLs under `prefix` (never to a host a redirect names)."""
    _AUTH[prefix] = {k: v for k, v in headers.items() if k.lower() == "authorization"}


def _headers_for(url: str) -> dict[str, str]:
    best = max((p for p in _AUTH if url.startswith(p)), key=len, default=None)
    return dict(_AUTH[best]) if best else {}


def _seconds(variable: str, default: float) -> float:
    """$variable as seconds (unset or empty: `default`); anything but a number in (0, a day] is refused."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_SECONDS):  # NaN fails every comparison; inf is above a day
        raise InputError(
            "{variable}={value} is not a number of seconds above 0 and at most {most:g}",
            "set it to seconds, e.g. {variable}={default:g}, or unset it",
            variable=variable, value=repr(text[:40]), most=MAX_SECONDS, default=default,
        )  # fmt: skip
    return value


def http_timeout() -> float:
    """The longest single wait on the network (seconds): $GPUSPLIT_HTTP_TIMEOUT, else 30."""
    return _seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT)


def http_deadline() -> float:
    """The longest a whole answer may take (seconds): $GPUSPLIT_HTTP_DEADLINE, else 30; for a
    download, the longest it may go without `STALL_BYTES` of progress."""
    return _seconds(DEADLINE_ENV, DEFAULT_DEADLINE)


class Deadline:
    """When an answer must be complete: `seconds` from now, or, with `stall_bytes` (a download),
    `seconds` after it last received that much. Each wait on the socket lasts at most `per_read`
    and never past the deadline. `host` is the host last connected to (a redirect moves it)."""

    def __init__(self, seconds: float, per_read: float, host: str = "", stall_bytes: int | None = None) -> None:
        self.seconds = seconds
        self.per_read = per_read
        self.host = host
        self.stall_bytes = stall_bytes
        self.at = time.monotonic() + seconds
        self._progress = 0

    @classmethod
    def for_url(cls, url: str, *, stall: bool = False, per_read: float | None = None) -> Deadline:
        """From the environment, for a request to `url` (`stall`: a download's deadline)."""
        return cls(http_deadline(), per_read or http_timeout(), urllib.parse.urlsplit(url).netloc, STALL_BYTES if stall else None)

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def wait(self) -> float:
        """How long the next wait on the socket may last; DeadlineExceeded when no time is left."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(self)
        return min(self.per_read, left)

    def received(self, n: int) -> None:
        if self.stall_bytes is None:
            return
        self._progress += n
        if self._progress >= self.stall_bytes:
            self._progress = 0
            self.at = time.monotonic() + self.seconds

    def describe(self) -> tuple[str, str]:
        """(what happened, how to allow more), for an error's message and hint."""
        if self.stall_bytes is None:
            what = f"{self.host} sent no complete answer within the {self.seconds:g} s deadline"
        else:
            what = f"{self.host} sent less than {self.stall_bytes // 1024} KiB in {self.seconds:g} s (stalled)"
        return what, f"set {DEADLINE_ENV} above {self.seconds:g} s for a slow link"


class DeadlineExceeded(TimeoutError):
    """A read of the socket found its Deadline passed."""

    def __init__(self, deadline: Deadline) -> None:
        super().__init__(deadline.describe()[0])
        self.deadline = deadline


class _TimedReader(io.RawIOBase):
    """A socket's bytes, each read of it bounded by a Deadline."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self.sock = sock
        self.raw = sock.makefile("rb", buffering=0)  # holds the socket open until this reader closes
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.sock.settimeout(self.deadline.wait())
        try:
            n = self.raw.readinto(memoryview(buffer)[:_READ_CHUNK])
        except TimeoutError:
            if self.deadline.passed:
                raise DeadlineExceeded(self.deadline) from None
            raise
        self.deadline.received(n or 0)
        return n or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


class _TimedResponse(http.client.HTTPResponse):
    """An HTTP response read through a _TimedReader (its status line and headers too); `deadline`
    is set on a subclass made for each connection."""

    deadline: Deadline

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None, url: str | None = None) -> None:
        super().__init__(sock, debuglevel, method, url)
        self.fp.close()  # the untimed reader the base class made
        self.fp = io.BufferedReader(_TimedReader(sock, self.deadline))


def _timed(connection: type[http.client.HTTPConnection]) -> Callable[..., http.client.HTTPConnection]:
    """A factory of `connection`s whose connecting (and TLS handshake) waits at most the deadline's
    time left, and whose responses are read under the deadline."""

    def make(host: str, *, deadline: Deadline, **kwargs: Any) -> http.client.HTTPConnection:
        kwargs["timeout"] = deadline.wait()
        made = connection(host, **kwargs)
        deadline.host = host
        made.response_class = type("TimedResponse", (_TimedResponse,), {"deadline": deadline})
        return made

    return make


_TIMED_HTTP, _TIMED_HTTPS = _timed(http.client.HTTPConnection), _timed(http.client.HTTPSConnection)


class _TimedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_TIMED_HTTP, deadline=self.deadline), req)


class _TimedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_TIMED_HTTPS, deadline=self.deadline), req)


class _SameHostAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects, dropping the Authorization header when one leads to another host (the
    Hub sends file contents from a CDN; a token must not travel there)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            fp.close()  # the redirect's body is never used: urllib would read all of it, however long
            if urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
                new.remove_header("Authorization")
        return new


def open_url(request: urllib.request.Request, deadline: Deadline) -> http.client.HTTPResponse:
    """urlopen under `deadline` (redirects followed, a token kept to its own host). Raises what
    urlopen raises; a passed deadline as DeadlineExceeded, or as a URLError or TimeoutError while
    `deadline.passed` is true."""
    opener = urllib.request.build_opener(_SameHostAuth, _TimedHTTPHandler(deadline), _TimedHTTPSHandler(deadline))
    response: http.client.HTTPResponse = opener.open(request)
    return response


def failure(exc: BaseException, deadline: Deadline) -> tuple[str, str]:
    """(why, how to allow more time or "") for a request that failed without an HTTP status: its
    deadline passed, a single wait timed out, the answer was not HTTP, or the host was not reached
    (why starts "cannot fetch")."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, DeadlineExceeded) or deadline.passed:
        return deadline.describe()
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return (
            f"no answer within {deadline.per_read:g} s ({TIMEOUT_ENV})",
            f"set {TIMEOUT_ENV} above {deadline.per_read:g} s for a slow server",
        )
    if isinstance(reason, http.client.HTTPException):
        return f"{deadline.host} gave no valid HTTP answer ({type(reason).__name__})", ""
    return f"cannot fetch: {reason}", ""


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
    """A remote file read by range requests; counts the bytes it fetched. Every request of it
    shares one Deadline (`GPUSPLIT_HTTP_DEADLINE`), started when it is opened."""

    def __init__(self, url: str, timeout: float | None = None, on_fetch: Callable[[int], None] | None = None) -> None:
        self.name = url
        self.timeout = timeout or http_timeout()
        self.deadline = Deadline.for_url(url, per_read=self.timeout)
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
            with open_url(request, self.deadline) as response:
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
            exc.close()
            if exc.code == 416:
                return b"", self.size
            hint = "set HF_TOKEN (a gated or private repo)" if exc.code in (401, 403) else ""
            # A missing or forbidden file is the name's fault (wrong input); a failing server is not.
            kind = FetchError if exc.code >= 500 else GGUFError
            raise kind(self.name, None, "http", f"HTTP {exc.code} {exc.reason}", hint) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError and TimeoutError are OSErrors
            why, more = failure(exc, self.deadline)
            raise FetchError(self.name, None, "http", why, f"{more}, or try again" if more else "") from None
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
