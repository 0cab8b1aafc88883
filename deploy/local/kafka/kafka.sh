#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller in one JVM) from the Maven Central
# jars pinned in deploy/local/kafka/pom.xml. No downloads from GitHub or Apache mirrors.
#
#   kafka.sh up                start (fetch jars once, format storage once, create topics)
#   kafka.sh down [--wipe]     stop (SIGTERM, SIGKILL after KAFKA_STOP_GRACE s); --wipe deletes the data dir
#   kafka.sh status            exit 0 when up, 1 when down
#   kafka.sh topics            list topics, partitions and topic-level configs
#   kafka.sh logs [-f] [N]     last N (100) lines of the broker log; -f follows
#   kafka.sh fetch             only fetch the jars
#   kafka.sh env               print KAFKA_BOOTSTRAP=... (for eval)
#   kafka.sh cli CLASS ARGS..  run a Kafka tool class, e.g. org.apache.kafka.tools.ConsoleConsumer
#
# Env (defaults):
#   KAFKA_HOST (127.0.0.1)  KAFKA_PORT (9092)  KAFKA_CONTROLLER_PORT (9093)
#   KAFKA_DATA_DIR (<repo>/.cache/kafka/data)    config, pid file, broker log, log.dirs
#   KAFKA_CACHE_DIR (<repo>/.cache/kafka)        KAFKA_LIBS_DIR (<cache>/<version>/libs)
#   KAFKA_VERSION (kafka.version in pom.xml)     KAFKA_HEAP_OPTS (-Xms128m -Xmx512m)
#   KAFKA_PARTITIONS (4) -> product-events, product-predictions, bulk-results
#   KAFKA_EVENTS_PARTITIONS, KAFKA_PREDICTIONS_PARTITIONS, KAFKA_BULK_RESULTS_PARTITIONS,
#   KAFKA_DLQ_PARTITIONS (1)   KAFKA_EXTRA_TOPICS ("name:partitions[:k=v,k=v] ...")
#   KAFKA_START_TIMEOUT (90)   KAFKA_STOP_GRACE (30)   KAFKA_PYTHON (<repo>/.venv/bin/python)
#   MAVEN_ARGS (extra mvn args, e.g. -o when ~/.m2 already holds the jars)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
POM="$HERE/pom.xml"

pom_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -1; }

KAFKA_VERSION="${KAFKA_VERSION:-$(pom_version)}"
KAFKA_HOST="${KAFKA_HOST:-127.0.0.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_CACHE_DIR="${KAFKA_CACHE_DIR:-$REPO/.cache/kafka}"
KAFKA_LIBS_DIR="${KAFKA_LIBS_DIR:-$KAFKA_CACHE_DIR/$KAFKA_VERSION/libs}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$KAFKA_CACHE_DIR/data}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
KAFKA_PARTITIONS="${KAFKA_PARTITIONS:-4}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_GRACE="${KAFKA_STOP_GRACE:-30}"
if [[ -z "${KAFKA_PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then KAFKA_PYTHON="$REPO/.venv/bin/python"; else KAFKA_PYTHON="python3"; fi
fi

BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
PROPS="$KAFKA_DATA_DIR/server.properties"
LOG4J="$KAFKA_DATA_DIR/log4j2.properties"
PIDFILE="$KAFKA_DATA_DIR/kafka.pid"
LOGFILE="$KAFKA_DATA_DIR/kafka.log"
LOG_DIRS="$KAFKA_DATA_DIR/kraft-logs"

log() { echo "[kafka] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }
secs_since() { local t0=$1; local t1; t1=$(now_ms); printf '%d.%01ds' $(((t1 - t0) / 1000)) $((((t1 - t0) % 1000) / 100)); }

topic_specs() {
  local p="$KAFKA_PARTITIONS"
  echo "product-events:${KAFKA_EVENTS_PARTITIONS:-$p}"
  # Latest prediction per product key: compacted, so a restarted consumer can rebuild state.
  echo "product-predictions:${KAFKA_PREDICTIONS_PARTITIONS:-$p}:cleanup.policy=compact"
  echo "product-events-dlq:${KAFKA_DLQ_PARTITIONS:-1}"
  echo "bulk-results:${KAFKA_BULK_RESULTS_PARTITIONS:-$p}"
  local extra
  for extra in ${KAFKA_EXTRA_TOPICS:-}; do echo "$extra"; done
}

# ---------------------------------------------------------------------------------------------
# process helpers

# The pid in the pid file, only if that process is alive and is *our* broker (pids get reused).
broker_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "kafka.Kafka $PROPS" || return 1
  fi
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

tail_log() {
  local n="${1:-40}"
  if [[ -s "$LOGFILE" ]]; then
    log "last $n lines of $LOGFILE:"
    tail -n "$n" "$LOGFILE" | sed 's/^/    /' >&2
  else
    log "(no broker log at $LOGFILE)"
  fi
}

have_py_admin() { "$KAFKA_PYTHON" -c 'import confluent_kafka' >/dev/null 2>&1; }

# CLI tools (StorageTool, TopicCommand, `cli`): small heap, warnings only, on stderr.
java_cp() { java -Xmx256m -Dlog4j2.configurationFile="$HERE/tools-log4j2.properties" -cp "$KAFKA_LIBS_DIR/*" "$@"; }

# ---------------------------------------------------------------------------------------------
# fetch

check_java() {
  command -v java >/dev/null 2>&1 || die "java not on PATH (Kafka ${KAFKA_VERSION} needs Java 17+)"
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [[ "${major%%.*}" -ge 17 ]] 2>/dev/null || die "Kafka ${KAFKA_VERSION} needs Java 17+, found java.specification.version=${major:-?}"
}

fetch() {
  if [[ -f "$KAFKA_LIBS_DIR/.complete" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not on PATH; needed once to fetch the Kafka jars into $KAFKA_LIBS_DIR"
  mkdir -p "$(dirname "$KAFKA_LIBS_DIR")"
  # Two `up`s racing on a fresh machine must not both write the same libs dir.
  exec 8>"$(dirname "$KAFKA_LIBS_DIR")/.fetch.lock"
  flock 8
  if [[ -f "$KAFKA_LIBS_DIR/.complete" ]]; then flock -u 8; return 0; fi
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS_DIR (once; via ~/.m2)"
  local t0 tmp
  t0=$(now_ms)
  tmp="$KAFKA_LIBS_DIR.tmp.$$"
  rm -rf "$tmp"
  # Progress: one line per downloaded jar; the full mvn output only when it fails.
  local mvnlog="$tmp.mvn.log"
  if ! mvn -B ${MAVEN_ARGS:-} -f "$POM" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 \
      | tee "$mvnlog" \
      | sed -n -u 's|^\[INFO\] Downloaded from [^:]*: .*/\([^/]*\.jar\) (\(.*\))$|[kafka]   got \1 (\2)|p' >&2; then
    :
  fi
  if ! grep -q "BUILD SUCCESS" "$mvnlog"; then
    grep -E '^\[(ERROR|WARNING)\]' "$mvnlog" | head -30 | sed 's/^/    /' >&2 || true
    rm -rf "$tmp"
    die "mvn could not fetch Kafka $KAFKA_VERSION (full mvn log: $mvnlog)"
  fi
  rm -f "$mvnlog"
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
  rm -rf "$KAFKA_LIBS_DIR"
  mv "$tmp" "$KAFKA_LIBS_DIR"
  touch "$KAFKA_LIBS_DIR/.complete"
  flock -u 8
  log "fetched $(ls "$KAFKA_LIBS_DIR"/*.jar | wc -l) jars ($(du -sh "$KAFKA_LIBS_DIR" | cut -f1)) in $(secs_since "$t0")"
}

# ---------------------------------------------------------------------------------------------
# config, format, start

write_config() {
  mkdir -p "$KAFKA_DATA_DIR" "$LOG_DIRS"
  # Static quorum (controller.quorum.voters) rather than a dynamic one: the controller's
  # address is then config, not state in the metadata log, so the same data dir can be
  # restarted on different ports.
  cat >"$PROPS" <<EOF
# Written by deploy/local/kafka/kafka.sh on every \`up\`; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$LOG_DIRS

# One node: every internal topic has one replica.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=${KAFKA_OFFSETS_PARTITIONS:-8}
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=${KAFKA_TXN_PARTITIONS:-4}
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Tests and local runs: no waiting for more group members, topics are made on purpose.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true

# Small segments so local disks stay small and compaction has closed segments to work on.
log.segment.bytes=16777216
log.retention.hours=72
log.retention.check.interval.ms=60000
log.cleaner.backoff.ms=5000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  cat >"$LOG4J" <<'EOF'
# Broker log -> stdout, which kafka.sh redirects to kafka.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
}

new_cluster_id() {
  # Kafka cluster ids are 16 random bytes, base64url without padding; avoid a leading '-'
  # (looks like a flag) as Kafka's own Uuid.randomUuid() does.
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* ]] && { echo "$id"; return; }
  done
}

format_storage() {
  if [[ -f "$LOG_DIRS/meta.properties" ]]; then
    return 0
  fi
  local id t0 out cls
  id="$(new_cluster_id)"
  t0=$(now_ms)
  log "formatting $LOG_DIRS (cluster id $id)"
  # kafka.tools.StorageTool (Scala, core) up to 4.2; newer releases may move it to the tools jar.
  for cls in kafka.tools.StorageTool org.apache.kafka.tools.StorageTool; do
    if out="$(java_cp "$cls" format -t "$id" -c "$PROPS" 2>&1)"; then
      echo "$id" >"$KAFKA_DATA_DIR/cluster.id"
      log "formatted with $cls in $(secs_since "$t0")"
      return 0
    fi
    grep -q "Could not find or load main class" <<<"$out" || break
  done
  echo "$out" | tail -20 | sed 's/^/    /' >&2
  die "formatting $LOG_DIRS failed"
}

ensure_topics() {
  local specs
  mapfile -t specs < <(topic_specs)
  if have_py_admin; then
    "$KAFKA_PYTHON" "$HERE/admin.py" ensure "$BOOTSTRAP" "${specs[@]}"
  else
    log "confluent-kafka not importable with $KAFKA_PYTHON; using TopicCommand"
    local spec name parts cfg args
    for spec in "${specs[@]}"; do
      IFS=: read -r name parts cfg <<<"$spec"
      args=(--bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1)
      if [[ -n "$cfg" ]]; then
        local kv
        IFS=, read -ra kvs <<<"$cfg"
        for kv in "${kvs[@]}"; do args+=(--config "$kv"); done
      fi
      java_cp org.apache.kafka.tools.TopicCommand "${args[@]}" >&2
    done
  fi
}

wait_ready() {
  local pid=$1 t0=$2 deadline
  deadline=$(($(date +%s) + KAFKA_START_TIMEOUT))
  # 1) the listener accepts connections (or the JVM dies)
  until port_open "$KAFKA_HOST" "$KAFKA_PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail_log 60
      die "broker exited during startup"
    fi
    if (($(date +%s) >= deadline)); then
      tail_log 60
      die "port $BOOTSTRAP not open after ${KAFKA_START_TIMEOUT}s (broker pid $pid left running; \`kafka.sh down\` stops it)"
    fi
    sleep 0.2
  done
  log "port $KAFKA_PORT open after $(secs_since "$t0")"
  # 2) the broker answers metadata with itself registered
  local left=$((deadline - $(date +%s)))
  ((left < 5)) && left=5
  if have_py_admin; then
    "$KAFKA_PYTHON" "$HERE/admin.py" wait "$BOOTSTRAP" "$left" || { tail_log 60; die "broker not answering metadata"; }
  else
    until java_cp org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1; do
      kill -0 "$pid" 2>/dev/null || { tail_log 60; die "broker exited during startup"; }
      (($(date +%s) >= deadline)) && { tail_log 60; die "broker not answering metadata"; }
      sleep 1
    done
  fi
  log "broker ready (metadata) after $(secs_since "$t0")"
}

lock_data_dir() {
  # Serialise up/down on one data dir (two test sessions, or a user and a test).
  mkdir -p "$KAFKA_DATA_DIR"
  exec 9>"$KAFKA_DATA_DIR/.lock"
  flock 9
}

cmd_up() {
  local pid
  lock_data_dir
  if pid="$(broker_pid)"; then
    log "already up (pid $pid) at $BOOTSTRAP, data dir $KAFKA_DATA_DIR: nothing to do"
    echo "KAFKA_BOOTSTRAP=$BOOTSTRAP"
    return 0
  fi
  rm -f "$PIDFILE"
  [[ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both $KAFKA_PORT)"
  check_java
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$KAFKA_HOST" "$p"; then
      die "$KAFKA_HOST:$p is already in use by another process (not the broker of $KAFKA_DATA_DIR); set KAFKA_PORT / KAFKA_CONTROLLER_PORT"
    fi
  done
  fetch
  write_config
  format_storage
  local t0
  t0=$(now_ms)
  log "starting Kafka $KAFKA_VERSION (KRaft broker+controller) on $BOOTSTRAP, controller $KAFKA_HOST:$KAFKA_CONTROLLER_PORT"
  echo "===== $(date -Is) kafka.sh up (Kafka $KAFKA_VERSION) =====" >>"$LOGFILE"
  # setsid: its own session, so the caller's Ctrl-C / process-group kill does not reach it;
  # the wrapper writes its own pid and execs java, so the pid file is the JVM's pid.
  # 8>&- 9>&-: the JVM must not inherit (and so hold forever) the fetch / data-dir locks.
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
    java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$KAFKA_DATA_DIR" \
    -cp "$KAFKA_LIBS_DIR/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$LOGFILE" 2>&1 8>&- 9>&- &
  local i
  for i in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.05; done
  pid="$(cat "$PIDFILE")"
  wait_ready "$pid" "$t0"
  ensure_topics || { tail_log 30; die "topic setup failed"; }
  log "up: pid $pid, bootstrap $BOOTSTRAP, log $LOGFILE (startup $(secs_since "$t0"))"
  echo "KAFKA_BOOTSTRAP=$BOOTSTRAP"
}

cmd_down() {
  local wipe=0 arg
  for arg in "$@"; do
    case "$arg" in
      --wipe) wipe=1 ;;
      *) die "unknown option for down: $arg" ;;
    esac
  done
  local pid
  [[ -d "$KAFKA_DATA_DIR" ]] && lock_data_dir
  if pid="$(broker_pid)"; then
    log "stopping broker pid $pid (SIGTERM, up to ${KAFKA_STOP_GRACE}s)"
    local t0
    t0=$(now_ms)
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(($(date +%s) + KAFKA_STOP_GRACE))
    while kill -0 "$pid" 2>/dev/null; do
      if (($(date +%s) >= deadline)); then
        log "still running after ${KAFKA_STOP_GRACE}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.2
    done
    log "stopped in $(secs_since "$t0")"
  else
    log "not running (data dir $KAFKA_DATA_DIR)"
  fi
  rm -f "$PIDFILE"
  if ((wipe)); then
    # Refuse anything that is obviously not a data dir of ours.
    case "$KAFKA_DATA_DIR" in
      "" | / | "$HOME" | "$REPO") die "refusing to wipe KAFKA_DATA_DIR=$KAFKA_DATA_DIR" ;;
    esac
    if [[ -d "$KAFKA_DATA_DIR" ]]; then
      if [[ -n "$(ls -A "$KAFKA_DATA_DIR" | grep -v '^\.lock$')" && ! -f "$PROPS" && ! -d "$LOG_DIRS" ]]; then
        die "refusing to wipe $KAFKA_DATA_DIR: it does not look like a kafka.sh data dir"
      fi
      rm -rf "$KAFKA_DATA_DIR"
      log "wiped $KAFKA_DATA_DIR"
    fi
  fi
}

cmd_status() {
  local pid
  if pid="$(broker_pid)"; then
    local ready="port closed"
    port_open "$KAFKA_HOST" "$KAFKA_PORT" && ready="port open"
    echo "up: pid $pid, Kafka $KAFKA_VERSION, bootstrap $BOOTSTRAP ($ready), data dir $KAFKA_DATA_DIR"
    return 0
  fi
  echo "down (data dir $KAFKA_DATA_DIR$([[ -f "$LOG_DIRS/meta.properties" ]] && echo ", formatted"))"
  return 1
}

cmd_topics() {
  broker_pid >/dev/null || die "broker is not running (kafka.sh up)"
  if have_py_admin; then
    "$KAFKA_PYTHON" "$HERE/admin.py" describe "$BOOTSTRAP"
  else
    java_cp org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --describe --exclude-internal
  fi
}

cmd_logs() {
  local follow=0 n=100 arg
  for arg in "$@"; do
    case "$arg" in
      -f) follow=1 ;;
      *[!0-9]* | "") die "usage: kafka.sh logs [-f] [N]" ;;
      *) n="$arg" ;;
    esac
  done
  [[ -f "$LOGFILE" ]] || die "no broker log at $LOGFILE"
  if ((follow)); then exec tail -n "$n" -f "$LOGFILE"; fi
  tail -n "$n" "$LOGFILE"
}

cmd_cli() {
  (($# >= 1)) || die "usage: kafka.sh cli CLASS [ARGS...], e.g. org.apache.kafka.tools.ConsoleConsumer --bootstrap-server $BOOTSTRAP --topic product-events --from-beginning"
  check_java
  fetch
  java_cp "$@"
}

main() {
  local cmd="${1:-}"
  (($#)) && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status ;;
    topics) cmd_topics ;;
    logs) cmd_logs "$@" ;;
    fetch) check_java; fetch; echo "$KAFKA_LIBS_DIR" ;;
    env) echo "KAFKA_BOOTSTRAP=$BOOTSTRAP" ;;
    cli) cmd_cli "$@" ;;
    -h | --help | help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
