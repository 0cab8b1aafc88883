"""Start the real tritonserver for a test, on free ports, through deploy/local/triton/server.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "triton" / "server.py"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def skip_without_triton() -> None:
    if not (ROOT / ".venv-triton" / "bin" / "python").exists():
        pytest.skip("the local Triton runtime is not installed (.venv-triton): run `make triton-venv`")


@dataclass
class TritonHandle:
    repository: Path
    models: str
    state_dir: Path
    ports: list[int]

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports[1]}"

    @property
    def metrics_port(self) -> int:
        return self.ports[2]

    def _run(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        http, grpc, metrics = self.ports
        args = [sys.executable, str(SCRIPT), command, f"--state-dir={self.state_dir}"]
        if command == "up":
            args += [
                f"--model-repository={self.repository}",
                f"--models={self.models}",
                f"--http-port={http}",
                f"--grpc-port={grpc}",
                f"--metrics-port={metrics}",
            ]
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def up(self) -> None:
        result = self._run("up")
        assert result.returncode == 0, f"tritonserver did not start:\n{result.stdout}\n{result.stderr}"

    def down(self) -> None:
        self._run("down")

    def kill9(self) -> None:
        """A crash, not a shutdown: SIGKILL to the server's whole process group."""
        pid = int((self.state_dir / "triton.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        self.down()  # clears the pid file and leftover shared memory


def start(tmp: Path, models: dict[str, Path]) -> TritonHandle:
    """A model repository in `tmp` with links to `models`, served on free ports."""
    skip_without_triton()
    repo = tmp / "model_repository"
    repo.mkdir(parents=True, exist_ok=True)
    for name, path in models.items():
        (repo / name).symlink_to(path)
    handle = TritonHandle(repo, ",".join(models), tmp / "triton", free_ports(3))
    handle.up()
    return handle
