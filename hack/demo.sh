#!/usr/bin/env bash
# Starts the local cluster with every operator's CRDs installed, runs the
# operators against it, applies their samples, and keeps it all running
# until Ctrl-C. Prints how to point kubectl at it.
source "$(dirname "$0")/lib.sh"
require_toolchains
say "control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK)"
control_plane
cd "$ROOT"
say "building the operators"
cargo build --bins --quiet
args=(up --kubeconfig "$ROOT/.demo/kubeconfig")
for dir in deploy/*/; do
  op=$(basename "$dir")
  [ -d "$dir/crds" ] && args+=(--install "$dir/crds")
  [ -x "target/debug/$op" ] && args+=(--run "target/debug/$op")
  [ -d "$dir/samples" ] && args+=(--apply "$dir/samples")
done
exec target/debug/envtest "${args[@]}"
