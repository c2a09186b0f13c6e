"""Real HTTP on loopback for tests: any ASGI app served by uvicorn in a background thread."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp


@dataclass
class Served:
    url: str
    server: uvicorn.Server  # set `server.should_exit` to start uvicorn's graceful shutdown


@contextmanager
def serving(app: ASGIApp, startup_timeout: float = 10.0, **options: Any) -> Iterator[Served]:
    """Serve `app` on a free port of 127.0.0.1 while the block runs; yields its URL and uvicorn server.

    `options` are uvicorn.Config settings, e.g. the gateway's own (vallum.gateway.server.uvicorn_options).
    """
    # Binding the socket here, rather than asking uvicorn for port 0, tells us the port before it starts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # A request still running at exit (a test's hung upstream) is cancelled after this many seconds.
    options = {"log_level": "warning", "timeout_graceful_shutdown": 2, **options}
    config = uvicorn.Config(app, lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start serving on 127.0.0.1:{port} (see its log above)")
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@contextmanager
def serve_in_thread(app: ASGIApp, startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` on a free port of 127.0.0.1 while the block runs; yields the base URL."""
    with serving(app, startup_timeout) as served:
        yield served.url
