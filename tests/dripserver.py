"""A local HTTP server that answers slowly on purpose: the hostile peer of tests/test_deadlines.py
and benchmarks/slow_server.py.

Threaded, on 127.0.0.1. Each answer is sent at once up to `fast_bytes` of its body, then one byte
every `interval` seconds; with `drip_head` its status line and headers are dripped too. A connection
is dropped after `give_up_s`, so that a client with no deadline fails (a truncated answer) instead of
hanging the test that runs it. Files are served with Range support (`bytes=a-b` and `bytes=a-`),
as a GGUF header is read:

    with DripServer(interval=0.2) as server:
        server.add("/x.gguf", data)
        url = server.url + "/x.gguf"
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
_REASONS = {200: "OK", 206: "Partial Content", 302: "Found"}


class DripServer:
    def __init__(self, interval: float = 0.2, *, drip_head: bool = False, fast_bytes: int = 0, give_up_s: float = 60.0) -> None:
        self.interval = interval
        self.drip_head = drip_head
        self.fast_bytes = fast_bytes
        self.give_up_s = give_up_s
        self.files: dict[str, tuple[bytes, str]] = {}  # path -> (body, content type)
        self.redirects: dict[str, tuple[str, bytes]] = {}  # path -> (where to, the redirect's own body)
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # a handler still dripping to a client that left is not waited for
        self.httpd.handle_error = lambda request, address: None  # clients that hang up are the point
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def add(self, path: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        self.files[path] = (body, content_type)
        return self.url + path

    def redirect(self, path: str, location: str, body: bytes = b"") -> str:
        """Answer `path` with a 302 to `location`, whose own body (dripped as any other) is `body`."""
        self.redirects[path] = (location, body)
        return self.url + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> DripServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        self.requests.append(path)
        extra: dict[str, str] = {}
        if path in self.redirects:
            location, body = self.redirects[path]
            status, content_type, extra = 302, "text/html", {"Location": location}
        elif path in self.files:
            data, content_type = self.files[path]
            status, body = 200, data
            match = _RANGE.match(h.headers.get("Range", ""))
            if match and int(match[1]) < len(data):
                start = int(match[1])
                end = min(int(match[2]), len(data) - 1) if match[2] else len(data) - 1
                status, body = 206, data[start : end + 1]
                extra = {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
        else:
            h.send_error(404)
            return
        head = f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(body)), **extra}.items():
            head += f"{name}: {value}\r\n"
        head += "Connection: close\r\n\r\n"
        whole = head.encode() + body
        fast = 0 if self.drip_head else len(head) + min(self.fast_bytes, len(body))
        if self.interval <= 0:
            fast = len(whole)  # no drip: all at once
        h.close_connection = True
        started = time.monotonic()
        try:
            h.wfile.write(whole[:fast])
            h.wfile.flush()
            for i in range(fast, len(whole)):
                if time.monotonic() - started > self.give_up_s:
                    return  # dropped: the client sees a truncated answer
                h.wfile.write(whole[i : i + 1])
                h.wfile.flush()
                time.sleep(self.interval)
        except OSError:
            return  # the client hung up (its deadline passed)
