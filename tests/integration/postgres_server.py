"""A real PostgreSQL server (Debian's packages) on a free loopback port, for integration
tests of the review store.

Started and stopped through `deploy/local/postgres/postgres.sh`, so the tests exercise the
script a developer uses too. The data directory is a fresh `mkdtemp` under the system temp
directory rather than pytest's tmp_path: as root the script runs the server as the
`postgres` user, who cannot enter pytest's private (0700) base directory."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.triton_server import free_ports

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_SH = ROOT / "deploy" / "local" / "postgres" / "postgres.sh"
BINARIES = ("postgres", "initdb", "pg_ctl", "psql", "createdb")


def postgres_bin() -> Path | None:
    """The directory of the binaries postgres.sh uses (the newest version), or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _major(p.parent.name))
    found = shutil.which("postgres")
    if found:
        candidates.insert(0, Path(found).resolve().parent)  # Debian links it from /usr/lib/postgresql/N/bin
    for d in reversed(candidates):
        if all((d / b).is_file() for b in BINARIES):
            return d
    return None


def _major(name: str) -> int:
    return int(name) if name.isdigit() else 0


def require_postgres() -> Path:
    """The binaries' directory; skips the test with the reason when they are absent."""
    d = postgres_bin()
    if d is None:
        pytest.skip(
            "PostgreSQL server binaries are not installed (apt-get install postgresql-15: "
            f"{', '.join(BINARIES)}); the review store's PostgreSQL tests need a real server"
        )
    return d


class PostgresServer:
    """`with PostgresServer() as pg: ReviewStore(pg.url)`; `stop()` stops it and removes its data."""

    def __init__(self, port: int | None = None, keep: bool = False) -> None:
        self.bin = require_postgres()
        self.port = port if port is not None else free_ports(1)[0]
        self.dir = Path(tempfile.mkdtemp(prefix="productlens-pg-"))
        self.keep = keep
        self.url = ""

    def _run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [str(POSTGRES_SH), *args],
            env={**_env(), "PG_BIN": str(self.bin)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(f"postgres.sh {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return done.stdout

    def start(self) -> PostgresServer:
        self.url = self._run("start", str(self.port), str(self.dir)).strip().splitlines()[-1]
        return self

    def running(self) -> bool:
        return (
            subprocess.run(
                [str(POSTGRES_SH), "status", str(self.dir)], env={**_env(), "PG_BIN": str(self.bin)}, timeout=30
            ).returncode
            == 0
        )

    def stop(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            self._run("stop", str(self.dir))
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


__all__ = ["POSTGRES_SH", "PostgresServer", "postgres_bin", "require_postgres"]
