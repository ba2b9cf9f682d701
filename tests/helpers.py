"""Helpers shared by the test files (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nothing listens on now (another job may hold accelerate's default 29500)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def changed_tensors(before: Path, after: Path) -> set[str]:
    """Names of the weights that differ between two saved model folders (a name in only one of them counts)."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(Path(before) / "model.safetensors"), load_file(Path(after) / "model.safetensors")
    return {k for k in a.keys() | b.keys() if k not in a or k not in b or not torch.equal(a[k], b[k])}


HOLD_REWARD = f"{ROOT / 'tests' / 'plugins' / 'hold_reward.py'}:hold"  # see that file
HOLD_TEACHER = f"{ROOT / 'tests' / 'plugins' / 'hold_teacher.py'}:HoldTeacher"  # see that file


class Traffic:
    """What a test's own HTTP server saw, counted by the test (never read from a third party's log): requests answered
    per path, requests in flight, the most in flight at once.

    ``hold(k)`` makes each request wait until ``k`` have been in flight at once, so a client's concurrency shows up
    whatever the machine's speed; a client that never sends ``k`` at once gives up the gate after ``patience`` s (the
    test then fails on ``peak``, not on a hang)."""

    def __init__(self, patience: float = 60.0) -> None:
        self.answered: Counter = Counter()
        self.now = self.peak = self.gate = 0
        self.patience = patience
        self._cond = threading.Condition()

    def hold(self, k: int = 0) -> None:
        """Count the most in flight afresh from here, holding requests until ``k`` are in flight at once."""
        with self._cond:
            self.peak, self.gate = self.now, k

    @contextmanager
    def request(self, path: str):
        with self._cond:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self.peak >= self.gate, timeout=self.patience):
                self.gate = 0  # the client never sent that many at once: stop holding the rest
        try:
            yield
            with self._cond:
                self.answered[path] += 1
        finally:
            with self._cond:
                self.now -= 1


def counting_proxy(upstream: str) -> tuple[ThreadingHTTPServer, Traffic]:
    """A threaded HTTP server on 127.0.0.1 that forwards every request to ``upstream`` and counts it (``Traffic``);
    ``server.url`` is its base. An answer the upstream did not give (it died) closes the connection, as the upstream
    would have. Shut it down with ``server.shutdown(); server.server_close()``."""
    traffic = Traffic()
    client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=256))

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
            try:
                with traffic.request(f"{self.command} {self.path}"):
                    reply = client.request(self.command, upstream + self.path, content=body, headers=headers)
            except httpx.TransportError:
                self.close_connection = True
                return
            self.send_response(reply.status_code)
            self.send_header("Content-Type", reply.headers.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        do_GET = do_POST = _forward

        def log_message(self, *args) -> None:
            pass

    # the default backlog of 5 drops concurrent connects (a 1 s SYN retry each)
    server = type("Proxy", (ThreadingHTTPServer,), {"request_queue_size": 256, "daemon_threads": True})(
        ("127.0.0.1", 0), Forward
    )
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, traffic
