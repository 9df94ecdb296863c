# Shared helpers for hack/ scripts. Source it; do not run it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Rust and Go are the only prerequisites; say how to get them when absent.
require_toolchains() {
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs)"
  command -v go >/dev/null || die "go not found: install Go 1.26+ (https://go.dev/dl) to build the control plane"
}

# Builds (first time) or finds the control-plane binaries; exports their dir.
control_plane() {
  ENVTEST_BIN_DIR=$("$ROOT/hack/control-plane.sh")
  export ENVTEST_BIN_DIR
  export PATH="$ENVTEST_BIN_DIR:$PATH"   # kubectl of the same version
}
