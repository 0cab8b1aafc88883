#!/usr/bin/env bash
# Local PostgreSQL for the review store (`productlens serve --review-db postgresql+psycopg://...`)
# and its integration tests, from Debian's postgresql package (apt-get install postgresql-15;
# only the server binaries are used, no system cluster or service).
#
#   postgres.sh start [PORT] [DIR]   initdb DIR/data on first use, start on 127.0.0.1:PORT (pid file,
#                                    socket and log in DIR), create database `productlens`, wait until
#                                    it answers, print the SQLAlchemy URL on stdout
#   postgres.sh stop [DIR]           stop the server started with DIR (fast shutdown)
#   postgres.sh status [DIR]         exit 0 when up, 1 when down
#   postgres.sh url [PORT]           print the SQLAlchemy URL
#
# Loopback only: listen_addresses=127.0.0.1 and pg_hba.conf trusts local sockets and
# 127.0.0.1/::1 and nothing else, so no password is needed and nothing beyond this machine
# can connect. Durability is off (fsync, synchronous_commit, full_page_writes): local data
# is disposable; production uses a managed PostgreSQL.
# PostgreSQL refuses to run as root: as root the script runs the server as PG_OS_USER
# (postgres) and gives it DIR.
#
# Defaults: PORT 5432 (or PG_PORT), DIR <repo>/.cache/postgres (or PG_DIR).
# Env: PG_BIN (the server binaries; default: pg_config --bindir, else the newest
#      /usr/lib/postgresql/*/bin)  PG_OS_USER (postgres)  PG_START_TIMEOUT (60)
#      PG_DB_USER (productlens)  PG_DATABASE (productlens)  PG_MAX_CONNECTIONS (300)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"

PG_HOST=127.0.0.1
PG_OS_USER="${PG_OS_USER:-postgres}"
PG_DB_USER="${PG_DB_USER:-productlens}"
PG_DATABASE="${PG_DATABASE:-productlens}"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"
PG_MAX_CONNECTIONS="${PG_MAX_CONNECTIONS:-300}"

log() { echo "[postgres] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# A directory with every binary the script uses.
has_bins() { local d="$1" b; for b in postgres initdb pg_ctl psql createdb; do [[ -x "$d/$b" ]] || return 1; done; }

find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    has_bins "$PG_BIN" || die "PG_BIN=$PG_BIN lacks one of postgres, initdb, pg_ctl, psql, createdb"
    echo "$PG_BIN"; return
  fi
  local d best=""
  if command -v pg_config >/dev/null 2>&1; then
    d="$(pg_config --bindir 2>/dev/null || true)"
    if [[ -n "$d" ]] && has_bins "$d"; then echo "$d"; return; fi
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    has_bins "$d" && best="$d"
  done
  if [[ -z "$best" ]] && command -v postgres >/dev/null 2>&1; then
    d="$(dirname "$(readlink -f "$(command -v postgres)")")"
    has_bins "$d" && best="$d"
  fi
  [[ -n "$best" ]] || die "no PostgreSQL server binaries (apt-get install postgresql-15, or set PG_BIN)"
  echo "$best"
}

# Run a command as the server's OS user (PostgreSQL will not run as root).
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then
    id "$PG_OS_USER" >/dev/null 2>&1 || die "running as root and there is no user $PG_OS_USER to run PostgreSQL as (set PG_OS_USER)"
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

url() { echo "postgresql+psycopg://${PG_DB_USER}@${PG_HOST}:$1/${PG_DATABASE}"; }

tail_log() {
  local logfile="$1/postgres.log"
  if [[ -s "$logfile" ]]; then
    log "last 30 lines of $logfile:"
    tail -n 30 "$logfile" | sed 's/^/    /' >&2
  fi
}

cmd_start() {
  local port="${1:-${PG_PORT:-5432}}" dir bin
  [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
  dir="$(abs_dir "${2:-${PG_DIR:-$REPO/.cache/postgres}}")"
  bin="$(find_bin)"
  mkdir -p "$dir/run"
  if [[ "$(id -u)" == 0 ]]; then chown -R "$PG_OS_USER" "$dir"; chmod 700 "$dir"; fi
  if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    log "already running in $dir"
    url "$(cat "$dir/port" 2>/dev/null || echo "$port")"
    return 0
  fi
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    log "initdb $dir/data ($("$bin/postgres" --version))"
    as_pg "$bin/initdb" -D "$dir/data" -U "$PG_DB_USER" --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || as_pg "$bin/initdb" -D "$dir/data" -U "$PG_DB_USER" --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
      || { tail -n 30 "$dir/initdb.log" >&2; die "initdb failed"; }
    as_pg bash -c "cat > '$dir/data/pg_hba.conf'" <<HBA
# Loopback only (written by deploy/local/postgres/postgres.sh).
local   all  all                 trust
host    all  all  127.0.0.1/32   trust
host    all  all  ::1/128        trust
HBA
  fi
  echo "$port" >"$dir/port"
  if [[ "$(id -u)" == 0 ]]; then chown "$PG_OS_USER" "$dir/port"; fi
  log "starting on $PG_HOST:$port (data $dir/data)"
  if ! as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$PG_START_TIMEOUT" start -o \
      "-p $port -c listen_addresses=$PG_HOST -c unix_socket_directories=$dir/run -c max_connections=$PG_MAX_CONNECTIONS -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      >/dev/null; then
    tail_log "$dir"
    die "PostgreSQL did not start within ${PG_START_TIMEOUT}s"
  fi
  if ! as_pg "$bin/psql" -h "$PG_HOST" -p "$port" -U "$PG_DB_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'" | grep -q 1; then
    as_pg "$bin/createdb" -h "$PG_HOST" -p "$port" -U "$PG_DB_USER" "$PG_DATABASE" || { tail_log "$dir"; die "createdb failed"; }
  fi
  log "up: $(url "$port")"
  url "$port"
}

cmd_stop() {
  local dir bin
  dir="$(abs_dir "${1:-${PG_DIR:-$REPO/.cache/postgres}}")"
  bin="$(find_bin)"
  if [[ ! -f "$dir/data/postmaster.pid" ]]; then
    log "not running in $dir"; return 0
  fi
  as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t "$PG_START_TIMEOUT" stop >/dev/null || { tail_log "$dir"; die "pg_ctl stop failed"; }
  log "stopped ($dir)"
}

cmd_status() {
  local dir bin
  dir="$(abs_dir "${1:-${PG_DIR:-$REPO/.cache/postgres}}")"
  bin="$(find_bin)"
  as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  url) shift; url "${1:-${PG_PORT:-5432}}" ;;
  *) echo "usage: $0 start [PORT] [DIR] | stop [DIR] | status [DIR] | url [PORT]" >&2; exit 2 ;;
esac
