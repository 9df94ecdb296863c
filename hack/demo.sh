#!/usr/bin/env bash
# Starts the local cluster with every operator's CRDs installed, runs the
# four operators against it, applies their samples, waits until they are up
# (at most DEMO_WAIT, default 120s), prints a table of where each stands and
# how to use kubectl and devctl against it, and keeps it all running until
# Ctrl-C.
source "$(dirname "$0")/lib.sh"
require_toolchains
say "control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK)"
control_plane
cd "$ROOT"
say "building the operators"
cargo build --bins --quiet
# Where cargo put them (CARGO_TARGET_DIR moves it).
BIN=$(realpath --relative-to="$ROOT" "${CARGO_TARGET_DIR:-$ROOT/target}/debug")
args=(up --kubeconfig "$ROOT/.demo/kubeconfig")
# The class the samples name (workshop-example.yaml, pvc-mydev-home.yaml),
# provisioned by KWOK like the default one.
args+=(--storage-class fast-ssd)
# Room for the gpu-large DevServer samples (ddp-dev's two ranks and
# my-dev-server), wherever the gpu-small one (ml-dev) lands.
args+=(--large-gpu-nodes 4)
# Claims the DevServer samples mount but do not define (hack/demo/).
args+=(--apply hack/demo)
for dir in deploy/*/; do
  op=$(basename "$dir")
  [ -d "$dir/crds" ] && args+=(--install "$dir/crds")
  [ -x "$BIN/$op" ] || die "$BIN/$op is missing after cargo build"
  args+=(--run "$BIN/$op")
  [ -d "$dir/samples" ] && args+=(--apply "$dir/samples")
done
args+=(--wait "${DEMO_WAIT:-120s}")
args+=(--hint "kubectl get workshops,devservers,devserverflavors,virtualmachines,workspaces -A")
args+=(--hint "kubectl describe workshop data-science-101")
args+=(--hint "$BIN/devctl flavors")
args+=(--hint "$BIN/devctl list")
args+=(--hint "$BIN/devctl describe <name>      # a DevServer from the list")
exec "$BIN/envtest" "${args[@]}"
