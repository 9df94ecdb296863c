#!/usr/bin/env bash
# Runs every test of the workspace against a real local control plane,
# building the control-plane binaries first if this machine lacks them.
# Extra arguments go to `cargo test` (e.g. `hack/test.sh -p operator-core`).
source "$(dirname "$0")/lib.sh"
require_toolchains
say "tools the tests run for real (QEMU, OpenSSH, buildah, skopeo, registry)"
require_packages
say "control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK)"
control_plane
say "helm (for the chart tests)"
HELM=$("$ROOT/hack/helm.sh")
export HELM
say "just (the image test builds and pushes through the justfile)"
JUST=$("$ROOT/hack/just.sh")
export JUST
cd "$ROOT"
if [ $# -eq 0 ]; then set -- --workspace --no-fail-fast; fi
say "cargo test $*"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run: cargo prints one per test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, g }' "$log"
exit "$status"
