"""A real redis-server (Debian's package) on a free loopback port, for integration tests.

Run in the foreground as a child process (not daemonized, unlike deploy/local/redis/redis.sh)
so a test can kill it to make an outage and start it again on the same port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.triton_server import free_ports

ROOT = Path(__file__).resolve().parents[2]
REDIS_SH = ROOT / "deploy" / "local" / "redis" / "redis.sh"


def require_redis_server() -> str:
    """The redis-server binary's path; skips the test with the reason when it is absent."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip(
            "redis-server is not installed (apt-get install redis-server); "
            "the shared prediction cache tests need a real Redis"
        )
    return path


def ping(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    """PING over a raw socket (RESP inline command): True when the server answers PONG."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """`with RedisServer(tmp_path) as server: ... server.url ...`; `.stop()` kills it,
    `.start()` starts it again on the same port (an empty server: no persistence)."""

    def __init__(self, tmp: Path, port: int | None = None, start_timeout_s: float = 20.0) -> None:
        self.binary = require_redis_server()
        self.dir = Path(tmp) / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_ports(1)[0]
        self.host = "127.0.0.1"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    def start(self) -> RedisServer:
        if self.running():
            return self
        cmd = [
            self.binary,
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.dir),
        ]
        fh = self.log.open("ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            fh.close()
        deadline = time.monotonic() + self.start_timeout_s
        while not ping(self.port, self.host):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"redis-server exited with {self.proc.returncode} on port {self.port}:\n{self.log.read_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"redis-server did not answer PING within {self.start_timeout_s}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Kill the server (SIGKILL: an outage, not a clean shutdown) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["REDIS_SH", "RedisServer", "ping", "require_redis_server"]
