"""A raw line-oriented socket for tests that speak the wire by hand."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class Wire:
    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_json(self, obj: Any) -> None:
        self.send(json.dumps(obj).encode() + b"\n")

    def recv(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def recv_response(self) -> dict[str, Any]:
        """The next message that is a response (notifications are skipped)."""
        while True:
            msg = self.recv()
            if "method" not in msg:
                return msg

    def call(self, method: str, params: Any = None, rid: Any = 1) -> dict[str, Any]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send_json(msg)
        return self.recv_response()

    def initialize(self) -> dict[str, Any]:
        resp = self.call("initialize", {"clientInfo": {"name": "wire-test", "version": "1"}}, 0)
        self.send_json({"jsonrpc": "2.0", "method": "initialized"})
        return resp

    def close(self) -> None:
        self.sock.close()
