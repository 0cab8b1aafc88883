#!/usr/bin/env bash
# Build (once) and print the path of Beam's Prism runner, pinned to the Beam SDK version
# in the project venv. Beam's own Prism download comes from GitHub releases, which this
# environment cannot reach, so pipelines must pass --prism_location=<this path>.
#
#   deploy/local/prism/prism.sh          # build if needed, print the binary path
#   deploy/local/prism/prism.sh path     # same (explicit)
#   deploy/local/prism/prism.sh rebuild  # force a rebuild
#
# Env: PRISM_VERSION (default 2.77.0, keep equal to apache-beam in pyproject/.venv),
#      PRISM_CACHE_DIR (default <repo>/.cache/prism), GOTOOLCHAIN (passed through; the
#      v2.77.0 module declares `go 1.26.0`, so a local Go >= 1.26.0 builds it as is).
# Progress goes to stderr; stdout is only the binary path, so `$(prism.sh)` works.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
PRISM_VERSION="${PRISM_VERSION:-2.77.0}"
PRISM_CACHE_DIR="${PRISM_CACHE_DIR:-$REPO/.cache/prism}"
# One directory per version so bumping Beam never reuses a stale binary.
BIN_DIR="$PRISM_CACHE_DIR/v$PRISM_VERSION/bin"
BIN="$BIN_DIR/prism"
MODULE="github.com/apache/beam/sdks/v2/go/cmd/prism@v$PRISM_VERSION"

log() { echo "[prism] $*" >&2; }

build() {
  if ! command -v go >/dev/null 2>&1; then
    log "ERROR: 'go' is not on PATH; install Go >= 1.26 to build Prism ($MODULE)"
    exit 3
  fi
  mkdir -p "$BIN_DIR"
  log "building $MODULE with $(go version | awk '{print $3}') (GOTOOLCHAIN=${GOTOOLCHAIN:-$(go env GOTOOLCHAIN)})"
  log "first build downloads the Beam Go module graph and compiles; takes a few minutes"
  local start end
  start=$(date +%s)
  # Build into a temp GOBIN and move atomically so a failed/partial build never leaves
  # a half-written binary where callers look for it.
  local tmp
  tmp="$(mktemp -d "$PRISM_CACHE_DIR/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  if ! GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -trimpath" go install "$MODULE" >&2; then
    log "ERROR: go install $MODULE failed"
    log "hint: if Go reports the module needs a newer toolchain, retry with e.g. GOTOOLCHAIN=go1.26.2"
    exit 1
  fi
  mv -f "$tmp/prism" "$BIN"
  rm -rf "$tmp"
  trap - EXIT
  end=$(date +%s)
  log "built $BIN in $((end - start))s ($(du -h "$BIN" | cut -f1))"
}

cmd="${1:-path}"
case "$cmd" in
  path)
    if [[ -x "$BIN" ]]; then
      log "cached: $BIN"
    else
      build
    fi
    ;;
  rebuild)
    rm -f "$BIN"
    build
    ;;
  -h|--help|help)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    log "usage: $0 [path|rebuild]"
    exit 2
    ;;
esac
echo "$BIN"
