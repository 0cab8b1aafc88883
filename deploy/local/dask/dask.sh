#!/usr/bin/env bash
# A local dask.distributed cluster for Beam's Dask runner: one scheduler process and one
# `dask worker` process with DASK_WORKERS worker processes (each under a nanny), all on
# loopback, from the project venv (the `distributed` extra: pip install -e '.[distributed]').
# The batch pipelines run on it with the fixed runner beside this script:
#
#   eval "$(deploy/local/dask/dask.sh up)"      # prints DASK_SCHEDULER=tcp://127.0.0.1:PORT
#   .venv/bin/productlens backfill --input examples/events.jsonl \
#       --output out/dask --image-base-dir examples --runner pipelines.dask_runner.DaskRunner \
#       --beam-arg=--dask_client_address=$DASK_SCHEDULER
#   deploy/local/dask/dask.sh down
#
#   dask.sh up        start scheduler + workers, wait until DASK_WORKERS workers registered
#   dask.sh down      stop them (SIGTERM to each process group, SIGKILL after DASK_STOP_GRACE s)
#   dask.sh status    exit 0 when the scheduler is up, 1 when down
#   dask.sh logs      last lines of the scheduler and worker logs
#   dask.sh env       print DASK_SCHEDULER=... (for eval)
#
# Env (defaults):
#   DASK_HOST (127.0.0.1)  DASK_PORT (8786)  DASK_WORKERS (2)  DASK_THREADS (1 per worker)
#   DASK_MEMORY_LIMIT (4GiB per worker)  DASK_STATE_DIR (<repo>/.cache/dask/<port>): pid files,
#   logs, worker spill space  DASK_PYTHON (<repo>/.venv/bin/python)  DASK_START_TIMEOUT (90)
#   DASK_STOP_GRACE (15)
# The scheduler and the workers run DASK_PYTHON (the project venv), so they import the
# runner's task functions (pipelines/dask_runner.py) from the installed package.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"

DASK_HOST="${DASK_HOST:-127.0.0.1}"
DASK_PORT="${DASK_PORT:-8786}"
DASK_WORKERS="${DASK_WORKERS:-2}"
DASK_THREADS="${DASK_THREADS:-1}"
DASK_MEMORY_LIMIT="${DASK_MEMORY_LIMIT:-4GiB}"
DASK_STATE_DIR="${DASK_STATE_DIR:-$REPO/.cache/dask/$DASK_PORT}"
DASK_PYTHON="${DASK_PYTHON:-$REPO/.venv/bin/python}"
DASK_START_TIMEOUT="${DASK_START_TIMEOUT:-90}"
DASK_STOP_GRACE="${DASK_STOP_GRACE:-15}"

ADDRESS="tcp://$DASK_HOST:$DASK_PORT"
SCHED_PID="$DASK_STATE_DIR/scheduler.pid"
WORKER_PID="$DASK_STATE_DIR/worker.pid"
SCHED_LOG="$DASK_STATE_DIR/scheduler.log"
WORKER_LOG="$DASK_STATE_DIR/worker.log"

log() { echo "[dask] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A pid from a pid file, only while that process lives and is a `dask` process (pids get reused).
live_pid() {
  local file="$1" pid
  [[ -f "$file" ]] || return 1
  pid="$(cat "$file" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "distributed.cli.dask_" || return 1
  fi
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

check_python() {
  [[ -x "$DASK_PYTHON" ]] || die "no Python at $DASK_PYTHON (make the project venv first, or set DASK_PYTHON)"
  "$DASK_PYTHON" -c 'import distributed' 2>/dev/null \
    || die "dask.distributed is not installed in $DASK_PYTHON: pip install -e '.[distributed]'"
}

# setsid: each process tree is a session and process group of its own, so `down` can stop
# the nannies and workers with it, and the caller's Ctrl-C does not reach them.
start_group() {
  local pidfile="$1" logfile="$2"
  shift 2
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" \
    "$@" </dev/null >>"$logfile" 2>&1 &
  local i
  for i in $(seq 100); do [[ -s "$pidfile" ]] && break; sleep 0.05; done
  [[ -s "$pidfile" ]] || die "could not start: $*"
}

stop_group() {
  local name="$1" pidfile="$2" pid
  if ! pid="$(live_pid "$pidfile")"; then
    rm -f "$pidfile"
    return 0
  fi
  log "stopping $name (process group $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(($(date +%s) + DASK_STOP_GRACE))
  while kill -0 -- "-$pid" 2>/dev/null; do
    if (($(date +%s) >= deadline)); then
      log "$name still running after ${DASK_STOP_GRACE}s: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
}

cmd_down() {
  stop_group workers "$WORKER_PID"
  stop_group scheduler "$SCHED_PID"
}

cmd_up() {
  if live_pid "$SCHED_PID" >/dev/null; then
    log "already up at $ADDRESS (state dir $DASK_STATE_DIR)"
    echo "DASK_SCHEDULER=$ADDRESS"
    return 0
  fi
  check_python
  port_open "$DASK_HOST" "$DASK_PORT" && die "$DASK_HOST:$DASK_PORT is already in use; set DASK_PORT"
  mkdir -p "$DASK_STATE_DIR/workers"
  local bin t0
  bin="$(dirname "$DASK_PYTHON")"
  t0=$(date +%s)
  log "starting the scheduler at $ADDRESS"
  start_group "$SCHED_PID" "$SCHED_LOG" "$DASK_PYTHON" -m distributed.cli.dask_scheduler \
    --host "$DASK_HOST" --port "$DASK_PORT" --no-dashboard
  local deadline=$((t0 + DASK_START_TIMEOUT))
  until port_open "$DASK_HOST" "$DASK_PORT"; do
    live_pid "$SCHED_PID" >/dev/null || { tail -n 30 "$SCHED_LOG" >&2; die "the scheduler exited during startup"; }
    (($(date +%s) >= deadline)) && { cmd_down; die "the scheduler did not listen within ${DASK_START_TIMEOUT}s"; }
    sleep 0.2
  done
  log "starting $DASK_WORKERS worker process(es), $DASK_THREADS thread(s) each"
  # The workers' cwd is the repo (relative --input/--image_base_dir paths resolve as in the
  # launching process when it runs from the repo root, as the CLI does).
  (cd "$REPO" && PATH="$bin:$PATH" start_group "$WORKER_PID" "$WORKER_LOG" "$DASK_PYTHON" -m distributed.cli.dask_worker \
    "$ADDRESS" --nworkers "$DASK_WORKERS" --nthreads "$DASK_THREADS" --memory-limit "$DASK_MEMORY_LIMIT" \
    --no-dashboard --local-directory "$DASK_STATE_DIR/workers" --host "$DASK_HOST")
  local left=$((deadline - $(date +%s)))
  ((left > 0)) || left=1
  if ! "$DASK_PYTHON" - "$ADDRESS" "$DASK_WORKERS" "$left" <<'EOF' >&2; then
import sys
from distributed import Client
address, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with Client(address, timeout=timeout) as client:
    client.wait_for_workers(n, timeout=timeout)
EOF
    tail -n 30 "$WORKER_LOG" >&2
    cmd_down
    die "$DASK_WORKERS workers did not register within ${DASK_START_TIMEOUT}s"
  fi
  log "up in $(($(date +%s) - t0))s: scheduler $ADDRESS, logs in $DASK_STATE_DIR"
  echo "DASK_SCHEDULER=$ADDRESS"
}

cmd_status() {
  local pid
  if pid="$(live_pid "$SCHED_PID")"; then
    echo "up: scheduler pid $pid at $ADDRESS, workers $(live_pid "$WORKER_PID" || echo down)"
    return 0
  fi
  echo "down (state dir $DASK_STATE_DIR)"
  return 1
}

cmd_logs() {
  local f
  for f in "$SCHED_LOG" "$WORKER_LOG"; do
    [[ -f "$f" ]] || continue
    echo "== $f"
    tail -n "${1:-50}" "$f"
  done
}

main() {
  local cmd="${1:-}"
  (($#)) && shift
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    env) echo "DASK_SCHEDULER=$ADDRESS" ;;
    -h | --help | help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
