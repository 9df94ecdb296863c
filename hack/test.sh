#!/usr/bin/env bash
# Runs every test of the workspace against a real local control plane,
# building the control-plane binaries first if this machine lacks them.
# Extra arguments go to `cargo test` (e.g. `hack/test.sh -p operator-core`).
source "$(dirname "$0")/lib.sh"
require_toolchains
say "control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK)"
control_plane
cd "$ROOT"
say "cargo test ${*:---workspace --no-fail-fast}"
if [ $# -eq 0 ]; then set -- --workspace --no-fail-fast; fi
exec cargo test "$@"
