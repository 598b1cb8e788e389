"""A real HTTP server on 127.0.0.1 for the download and remote-store tests.

It serves the files of one directory with ``Range`` support, records every request (method, path,
``Range`` header, bytes sent), can cut the connection after N body bytes once per path, can wait
before sending a body (to make concurrent clients overlap), and answers 404 for anything it does
not have.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int
    sent: int  # body bytes written


class RangeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.directory = Path(directory).resolve()
        self.requests: list[Request] = []
        self.cut_once: dict[str, int] = {}  # url path -> body bytes sent before the connection is cut
        self.delay: dict[str, float] = {}  # url path -> seconds to wait before sending the body
        # how a Range request is answered: "206" (standard), "200+range" (status 200 but with the
        # Content-Range header, as some servers and proxies do) or "ignore" (200 with the whole file)
        self.range_reply = "206"
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def requests_for(self, path: str, method: str = "GET") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path and r.method == method]

    def handle_error(self, request, client_address) -> None:  # a cut connection is expected: stay quiet
        pass

    def __enter__(self) -> "RangeHTTPServer":
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server: RangeHTTPServer

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _record(self, path: str, status: int, sent: int) -> None:
        with self.server.lock:
            self.server.requests.append(Request(self.command, path, self.headers.get("Range"), status, sent))

    def _serve(self, body: bool) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        file = (self.server.directory / path.lstrip("/")).resolve()
        if not file.is_file() or self.server.directory not in file.parents:
            self.send_error(404, "Not Found")
            self._record(path, 404, 0)
            return
        data = file.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
        if m and self.server.range_reply == "ignore":
            m = None
        if m:
            if m[1]:
                start, end = int(m[1]), min(int(m[2]), end) if m[2] else end
            else:  # suffix range: the last n bytes
                start = max(len(data) - int(m[2]), 0)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._record(path, 416, 0)
                return
            status = 206
        payload = data[start:end + 1]
        ranged = status == 206
        if ranged and self.server.range_reply == "200+range":
            status = 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not body:
            self._record(path, status, 0)
            return
        time.sleep(self.server.delay.get(path, 0.0))
        with self.server.lock:
            cut = self.server.cut_once.pop(path, None)
        if cut is None:
            self.wfile.write(payload)
            self._record(path, status, len(payload))
            return
        self.wfile.write(payload[:cut])
        self.wfile.flush()
        self._record(path, status, min(cut, len(payload)))
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
