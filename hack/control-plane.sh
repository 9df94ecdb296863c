#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, kwokctl) from their public Go modules into a
# cache outside the repository, keyed by version. A second run does nothing.
#
# Usage: hack/control-plane.sh            build (if needed) and print the bin dir
#        hack/control-plane.sh --print    print the bin dir only (no build)
#
# Environment:
#   CONTROL_PLANE_CACHE  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/operators-control-plane)
set -euo pipefail

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0

CACHE_ROOT=${CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/operators-control-plane}
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
BIN_DIR="$CACHE_ROOT/$KEY/bin"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl)
# KWOK's CRDs (Stage, Exec, PortForward, ...) and its stock stages, copied from the
# kwok module next to the binaries; the envtest harness applies them to each cluster.
KWOK_ASSETS="$CACHE_ROOT/$KEY/kwok"

log() { printf '[control-plane] %s\n' "$*" >&2; }

all_present() {
  for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
  [ -f "$KWOK_ASSETS/stages/pod-ready.yaml" ] && [ -f "$KWOK_ASSETS/crds/kwok.x-k8s.io_stages.yaml" ]
}

if [ "${1:-}" = "--print" ]; then echo "$BIN_DIR"; exit 0; fi
if all_present; then echo "$BIN_DIR"; exit 0; fi

command -v go >/dev/null || { log "Go is required (https://go.dev/dl); none found on PATH"; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$BIN_DIR"
WORK=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
step() { log "[$(( $(date +%s) - start ))s] $*"; }

# --- Kubernetes: wrapper module, every staging module replaced by its v0.N.M tag.
if ! { [ -x "$BIN_DIR/kube-apiserver" ] && [ -x "$BIN_DIR/kube-controller-manager" ] \
       && [ -x "$BIN_DIR/kube-scheduler" ] && [ -x "$BIN_DIR/kubectl" ]; }; then
  step "resolving k8s.io/kubernetes@$K8S_VERSION"
  mkdir -p "$WORK/k8s" && cd "$WORK/k8s"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
  staging_version="v0.${K8S_VERSION#v1.}"
  {
    echo "module local/k8s-wrapper"
    echo "go $(sed -n 's/^go //p' "$gomod")"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    sed -n 's#^\s*\(k8s.io/[^ ]*\) => ./staging/src/.*#\1#p' "$gomod" |
      while read -r m; do echo "replace $m => $m $staging_version"; done
  } > go.mod
  step "$(grep -c '^replace' go.mod) staging modules replaced with $staging_version"
  pkgs=(cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubectl)
  step "downloading module graph (first run: a few minutes)"
  targets=()
  for p in "${pkgs[@]}"; do targets+=("k8s.io/kubernetes/$p@$K8S_VERSION"); done
  # -x shows each module archive as it is fetched: progress for a long first run.
  go get -x "${targets[@]}" 2>&1 | sed -n 's#^\# get .*/\(.*\)/@v/\(.*\)\.zip$#  fetched \1 \2#p' >&2
  go get "${targets[@]}"
  grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod || { log "module graph moved k8s.io/kubernetes off $K8S_VERSION"; exit 1; }
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/component-base/version.gitTreeState=clean \
    -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
    -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  for p in "${pkgs[@]}"; do
    name=${p#cmd/}
    step "building $name $K8S_VERSION (several minutes on 2 cores)"
    go build -trimpath -ldflags "$ldflags" -o "$WORK/$name" "k8s.io/kubernetes/$p"
    mv "$WORK/$name" "$BIN_DIR/$name"
  done
fi

# --- etcd: wrapper module, since the server module's go.mod has relative replaces.
if [ ! -x "$BIN_DIR/etcd" ]; then
  step "building etcd $ETCD_VERSION"
  mkdir -p "$WORK/etcd" && cd "$WORK/etcd"
  printf 'module local/etcd-wrapper\ngo 1.25\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$WORK/etcd.bin" go.etcd.io/etcd/server/v3
  mv "$WORK/etcd.bin" "$BIN_DIR/etcd"
fi

# --- KWOK: plain go install.
for tool in kwok kwokctl; do
  if [ ! -x "$BIN_DIR/$tool" ]; then
    step "building $tool $KWOK_VERSION"
    GOBIN="$WORK/gobin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/$tool@$KWOK_VERSION"
    mv "$WORK/gobin/$tool" "$BIN_DIR/$tool"
  fi
done

# --- KWOK assets: CRDs and the node/pod/volume "fast" stages of the pinned release.
if [ ! -f "$KWOK_ASSETS/stages/pod-ready.yaml" ]; then
  step "copying KWOK $KWOK_VERSION CRDs and stages"
  kwok_src=$(cd "$CACHE_ROOT" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$KWOK_ASSETS/crds" "$KWOK_ASSETS/stages"
  cp "$kwok_src"/kustomize/crd/bases/*.yaml "$KWOK_ASSETS/crds/"
  for d in node/fast node/heartbeat-with-lease pod/fast volume/fast; do
    for f in "$kwok_src/kustomize/stage/$d"/*.yaml; do
      case "$(basename "$f")" in kustomization.yaml) ;; *) cp "$f" "$KWOK_ASSETS/stages/" ;; esac
    done
  done
  chmod -R u+w "$KWOK_ASSETS"
fi

all_present || { log "build finished but binaries are missing in $BIN_DIR"; exit 1; }
step "control plane ready in $BIN_DIR"
echo "$BIN_DIR"
