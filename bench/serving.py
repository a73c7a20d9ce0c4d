"""What every bench script needs to start a server and wait for it (run as bench/<script>.py)."""
from __future__ import annotations

import http.client
import socket
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(port: int, path: str, timeout: float = 40, *, any_answer: bool = False) -> None:
    """Until `path` answers 200 (with `any_answer`: anything below 500, e.g. a 401 of a
    server that wants credentials)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            status = conn.getresponse().status
            if status == 200 or (any_answer and status < 500):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered {path} on port {port}")
