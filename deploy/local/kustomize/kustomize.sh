#!/usr/bin/env bash
# Build (once) and print the path of the kustomize CLI, pinned, from the Go module proxy.
# Used to render deploy/k8s overlays (tests/unit/test_deploy_k8s.py) without kubectl.
#
#   deploy/local/kustomize/kustomize.sh          # build if needed, print the binary path
#   deploy/local/kustomize/kustomize.sh path     # same (explicit)
#   deploy/local/kustomize/kustomize.sh rebuild  # force a rebuild
#   $(deploy/local/kustomize/kustomize.sh) build deploy/k8s/overlays/gke-prod
#
# Env: KUSTOMIZE_VERSION (default 5.8.2: its module declares `go 1.26.0`, so the local
#      Go 1.26 builds it as is; 5.8.3 declares go 1.27 and would need GOTOOLCHAIN),
#      KUSTOMIZE_CACHE_DIR (default <repo>/.cache/kustomize).
# Progress goes to stderr; stdout is only the binary path, so `$(kustomize.sh)` works.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-5.8.2}"
KUSTOMIZE_CACHE_DIR="${KUSTOMIZE_CACHE_DIR:-$REPO/.cache/kustomize}"
BIN_DIR="$KUSTOMIZE_CACHE_DIR/v$KUSTOMIZE_VERSION/bin"
BIN="$BIN_DIR/kustomize"
MODULE="sigs.k8s.io/kustomize/kustomize/v5@v$KUSTOMIZE_VERSION"

log() { echo "[kustomize] $*" >&2; }

build() {
  if ! command -v go >/dev/null 2>&1; then
    log "ERROR: 'go' is not on PATH; install Go >= 1.26 to build kustomize ($MODULE)"
    exit 3
  fi
  mkdir -p "$BIN_DIR"
  log "building $MODULE with $(go version | awk '{print $3}')"
  local start end tmp
  start=$(date +%s)
  # Temp GOBIN + atomic move: a failed build never leaves a half-written binary.
  tmp="$(mktemp -d "$KUSTOMIZE_CACHE_DIR/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  if ! GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -trimpath" go install "$MODULE" >&2; then
    log "ERROR: go install $MODULE failed"
    exit 1
  fi
  mv -f "$tmp/kustomize" "$BIN"
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
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    log "usage: $0 [path|rebuild]"
    exit 2
    ;;
esac
echo "$BIN"
