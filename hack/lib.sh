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

# Debian packages the tests use for real tools: QEMU (novacron launcher),
# OpenSSH (devserver SSH), buildah/skopeo/docker-registry (images), genisoimage
# (cloud-init seeds), nss_wrapper (the devserver SSH bundle), musl-tools (musl-gcc
# for ring's C code in the images' static musl builds), nginx (the workshop
# sessions' path proxy configuration, run for real). Installed with
# apt-get when a command (or, for a library, an absolute path) is missing.
TEST_PACKAGES=(qemu-system-x86:qemu-system-x86_64 qemu-utils:qemu-img openssh-server:sshd
  openssh-client:ssh buildah:buildah skopeo:skopeo docker-registry:docker-registry
  genisoimage:genisoimage libnss-wrapper:/usr/lib/x86_64-linux-gnu/libnss_wrapper.so
  musl-tools:musl-gcc nginx-light:nginx)
require_packages() {
  local missing=() entry
  for entry in "${TEST_PACKAGES[@]}"; do
    command -v "${entry#*:}" >/dev/null || [ -x "/usr/sbin/${entry#*:}" ] || [ -e "${entry#*:}" ] \
      || missing+=("${entry%%:*}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing Debian packages: ${missing[*]} (install them with apt-get as root)"
    sudo=sudo
  fi
  command -v apt-get >/dev/null || die "missing packages: ${missing[*]} (no apt-get here: install them with your package manager)"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}
