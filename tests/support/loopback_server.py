"""The plumbing the test suite's simulated partners share: a threaded HTTP server on a port of
127.0.0.1 the OS chooses, started and stopped as a context manager, and bounded polling."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LoopbackServer(ABC):
    """Subclasses give `_handler_class()` and `path`; `state.errors` lists what the server refused."""

    path = "/"
    state: Any

    def __init__(self, name: str) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @abstractmethod
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """Returns the request handler class, bound to this simulator's state."""

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, condition: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Polls `condition` until it holds; fails with `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; errors: {self.state.errors}")
            time.sleep(0.05)
