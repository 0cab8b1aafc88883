#!/usr/bin/env bash
# Local Redis for the real-time service's shared prediction cache (`productlens serve
# --cache-url redis://...`), from Debian's redis-server package (apt-get install redis-server).
# A cache only: no persistence (no RDB snapshots, no AOF), loopback only, bounded memory
# with LRU eviction, as a production cache Redis is configured.
#
#   redis.sh start [PORT] [DIR]   start on 127.0.0.1:PORT (daemonized; pid file and log in DIR),
#                                 wait until it answers PING, print redis://127.0.0.1:PORT/0
#   redis.sh stop [DIR]           stop the server started with DIR (SIGTERM, SIGKILL after REDIS_STOP_GRACE s)
#   redis.sh status [DIR]         exit 0 when up, 1 when down
#
# Defaults: PORT 6379 (or REDIS_PORT), DIR <repo>/.cache/redis (or REDIS_DIR).
# Env: REDIS_MAXMEMORY (256mb)  REDIS_START_TIMEOUT (20)  REDIS_STOP_GRACE (10)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"

REDIS_HOST=127.0.0.1
REDIS_MAXMEMORY="${REDIS_MAXMEMORY:-256mb}"
REDIS_START_TIMEOUT="${REDIS_START_TIMEOUT:-20}"
REDIS_STOP_GRACE="${REDIS_STOP_GRACE:-10}"

log() { echo "[redis] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# The pid in DIR's pid file, only if that process is alive and is a redis-server (pids get reused).
server_pid() {
  local pidfile="$1/redis.pid" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "redis-server" || return 1
  fi
  echo "$pid"
}

# PING -> PONG, with redis-cli when it is there, else over bash's /dev/tcp.
ping() {
  local port="$1" reply
  if command -v redis-cli >/dev/null 2>&1; then
    reply="$(timeout 2 redis-cli -h "$REDIS_HOST" -p "$port" ping 2>/dev/null || true)"
  else
    reply="$(timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "PING\r\n" >&3 && head -c 5 <&3' "$REDIS_HOST" "$port" 2>/dev/null || true)"
  fi
  [[ "$reply" == *PONG* ]]
}

tail_log() {
  local logfile="$1/redis.log"
  if [[ -s "$logfile" ]]; then
    log "last 30 lines of $logfile:"
    tail -n 30 "$logfile" | sed 's/^/    /' >&2
  fi
}

cmd_start() {
  local port="${1:-${REDIS_PORT:-6379}}" dir
  [[ "$port" =~ ^[0-9]+$ ]] || die "usage: redis.sh start [PORT] [DIR] (PORT must be a number, got '$port')"
  command -v redis-server >/dev/null 2>&1 \
    || die "redis-server is not installed: apt-get install redis-server (Debian/Ubuntu)"
  dir="$(abs_dir "${2:-${REDIS_DIR:-$REPO/.cache/redis}}")"
  local pid
  if pid="$(server_pid "$dir")"; then
    if ping "$port"; then
      log "already running: pid $pid (dir $dir)"
      echo "redis://$REDIS_HOST:$port/0"
      return 0
    fi
    die "a redis-server (pid $pid) from $dir is running but does not answer on port $port; \`redis.sh stop $dir\` first"
  fi
  ping "$port" && die "port $port already answers PING: another Redis is running there"
  : >"$dir/redis.log"
  redis-server \
    --bind "$REDIS_HOST" --port "$port" --protected-mode yes \
    --save "" --appendonly no \
    --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --maxmemory "$REDIS_MAXMEMORY" --maxmemory-policy allkeys-lru \
    || { tail_log "$dir"; die "redis-server failed to start"; }
  local deadline=$(($(date +%s) + REDIS_START_TIMEOUT))
  until ping "$port"; do
    if (($(date +%s) >= deadline)); then
      tail_log "$dir"
      die "redis-server does not answer PING on $REDIS_HOST:$port after ${REDIS_START_TIMEOUT}s"
    fi
    if [[ -f "$dir/redis.pid" ]] && ! server_pid "$dir" >/dev/null; then
      tail_log "$dir"
      die "redis-server exited during startup"
    fi
    sleep 0.1
  done
  log "up: pid $(server_pid "$dir" || echo '?'), $REDIS_HOST:$port, dir $dir (no persistence, maxmemory $REDIS_MAXMEMORY)"
  echo "redis://$REDIS_HOST:$port/0"
}

cmd_stop() {
  local dir="${1:-${REDIS_DIR:-$REPO/.cache/redis}}" pid
  if [[ ! -d "$dir" ]]; then
    log "not running (no dir $dir)"
    return 0
  fi
  dir="$(cd "$dir" && pwd)"
  if ! pid="$(server_pid "$dir")"; then
    log "not running (dir $dir)"
    rm -f "$dir/redis.pid"
    return 0
  fi
  log "stopping redis-server pid $pid (SIGTERM, up to ${REDIS_STOP_GRACE}s)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(($(date +%s) + REDIS_STOP_GRACE))
  while kill -0 "$pid" 2>/dev/null; do
    if (($(date +%s) >= deadline)); then
      log "still running after ${REDIS_STOP_GRACE}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  rm -f "$dir/redis.pid"
  log "stopped"
}

cmd_status() {
  local dir="${1:-${REDIS_DIR:-$REPO/.cache/redis}}" pid
  if [[ -d "$dir" ]] && pid="$(server_pid "$dir")"; then
    echo "up: pid $pid (dir $dir)"
    return 0
  fi
  echo "down (dir $dir)"
  return 1
}

main() {
  local cmd="${1:-}"
  (($#)) && shift
  case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
