#!/usr/bin/env bash
# Fetches `just` (the command runner of the justfile) into a cache outside the
# repository and prints the binary's path. `just` is a Rust program; its
# official static Linux build is published on PyPI as the `rust-just` wheel,
# which is fetched with pip (no install, no virtualenv: the wheel is a zip)
# and checked against a pinned digest. A second run does nothing.
#
# Usage: hack/just.sh            fetch (if needed) and print the path to just
#        hack/just.sh --print    print the path only
#
# Environment:
#   TOOLS_CACHE  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/operators-tools)
set -euo pipefail

JUST_VERSION=1.59.0
WHEEL=rust_just-$JUST_VERSION-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
WHEEL_SHA256=3ee47f26e3aff917107602d57a08ede20df447f78dc4f9ceb08e57a883c56eb9
CACHE_ROOT=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/operators-tools}
BIN="$CACHE_ROOT/just-$JUST_VERSION/just"

log() { printf '[just] %s\n' "$*" >&2; }

if [ "${1:-}" = "--print" ] || [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

[ "$(uname -m)" = x86_64 ] || { log "only x86_64 is pinned here; install just $JUST_VERSION yourself (cargo install just)"; exit 1; }
PYTHON=$(command -v python3 || true)
[ -n "$PYTHON" ] || { log "python3 with pip is required to fetch just; none found on PATH"; exit 1; }
mkdir -p "$CACHE_ROOT"
WORK=$(mktemp -d "$CACHE_ROOT/just.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log "fetching just $JUST_VERSION (the rust-just wheel)"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "$WORK" "rust-just==$JUST_VERSION" >&2
echo "$WHEEL_SHA256  $WORK/$WHEEL" | sha256sum --check --quiet - \
  || { log "digest mismatch for $WHEEL"; exit 1; }
"$PYTHON" -m zipfile -e "$WORK/$WHEEL" "$WORK/unpacked" >&2
mkdir -p "$(dirname "$BIN")"
install -m 0755 "$WORK/unpacked/rust_just-$JUST_VERSION.data/scripts/just" "$WORK/just"
"$WORK/just" --version >&2
mv "$WORK/just" "$BIN"
echo "$BIN"
