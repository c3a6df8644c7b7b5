"""Starts and stops a real herald binary for the tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def herald_binary() -> Path:
    """``$HERALD_BIN``, else the repository's release build."""
    path = Path(os.environ.get("HERALD_BIN", REPO / "target" / "release" / "herald"))
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"herald binary {path} not found: run `cargo build --release --locked` at the "
            "repository root, or set HERALD_BIN"
        )
    return path


def free_port() -> int:
    """A port nothing listens on right now (for a herald that starts later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HeraldProcess:
    """One herald process on a loopback port, with its log kept for failures."""

    def __init__(self, *args: str, port: int = 0, jwt_secret: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        env["RUST_LOG"] = "info"
        if jwt_secret is not None:
            # Through the environment, as the README recommends, never argv.
            env["HERALD_JWT_SECRET"] = jwt_secret
        self.jwt_secret = jwt_secret
        self.log: deque[str] = deque(maxlen=200)
        self.proc = subprocess.Popen(
            [str(herald_binary()), "--listen", f"127.0.0.1:{port}", "--log-format", "json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self.addr = self._wait_listening()
        # Keep draining the log so herald never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = f"http://{self.addr}"
        self.ws_url = f"ws://{self.addr}"

    def _wait_listening(self) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            fields = entry.get("fields", {})
            if fields.get("message") == "listening" and "addr" in fields:
                return fields["addr"]
        self.proc.wait(timeout=5)
        raise RuntimeError(f"herald exited ({self.proc.returncode}) before listening:\n{''.join(self.log)}")

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    def stop(self) -> None:
        """SIGTERM (herald's graceful shutdown), then SIGKILL if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metric(self, name: str, labels: str = "") -> float:
        """A value from herald's /metrics (e.g. ``herald_notify_requests_total``, ``status="400"``)."""
        import httpx

        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        key = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        raise KeyError(f"{key} not in herald's /metrics")
