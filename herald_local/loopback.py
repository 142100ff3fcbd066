"""An HTTP server of the local stack's own on 127.0.0.1, serving in a thread of its own until stopped."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """`handler` answers each request on a thread of its own; port 0 takes any free port."""

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], name: str):
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def server_close(self) -> None:
        """Frees the port: all `stop` does for a server never started."""
        self._server.server_close()
