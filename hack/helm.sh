#!/usr/bin/env bash
# Builds helm from its public Go module (helm.sh/helm/v3/cmd/helm) into a cache
# outside the repository, keyed by version, and prints the binary's path.
# A second run does nothing.
#
# Usage: hack/helm.sh            build (if needed) and print the path to helm
#        hack/helm.sh --print    print the path only (no build)
#
# Environment:
#   TOOLS_CACHE  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/operators-tools)
set -euo pipefail

HELM_VERSION=v3.22.0
CACHE_ROOT=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/operators-tools}
BIN="$CACHE_ROOT/helm-$HELM_VERSION/helm"

log() { printf '[helm] %s\n' "$*" >&2; }

if [ "${1:-}" = "--print" ] || [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || { log "Go is required (https://go.dev/dl); none found on PATH"; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$(dirname "$BIN")"
WORK=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
log "building helm $HELM_VERSION from its Go module (first run: a few minutes)"
go mod init local/helm-wrapper >/dev/null 2>&1
go get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  -o "$WORK/helm" helm.sh/helm/v3/cmd/helm
"$WORK/helm" version --short >&2
mv "$WORK/helm" "$BIN"
echo "$BIN"
