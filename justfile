# Recipes for day-to-day work. The two newcomer commands (README) are plain
# scripts so a fresh machine needs nothing but Rust and Go; `hack/just.sh`
# fetches `just` itself (pinned) and prints its path.

# Where `just push` sends the images when no registry is named on its line
# (`just REGISTRY=host:port/prefix push`, or the REGISTRY environment variable).
REGISTRY := env("REGISTRY", "")

default:
    @just --list

# Start the local cluster with the operators and their samples (Ctrl-C stops).
demo:
    hack/demo.sh

# Every test against the real local control plane.
test *ARGS:
    hack/test.sh {{ARGS}}

# What CI runs: formatting, lints, tests.
ci:
    .ci/run

# Build the control-plane binaries into the cache (no-op when present).
control-plane:
    hack/control-plane.sh

# Regenerate every operator's CRDs under deploy/.
crds:
    for op in workshop-operator devserver-operator jvs-operator novacron-operator; do cargo run -q -p $op -- crd --out-dir deploy/$op/crds; done

# Container images of every operator and workload, built with buildah (hack/images.sh).
images *NAMES:
    hack/images.sh build {{NAMES}}

# Push the built images: `just push REGISTRY=host:port/prefix [NAME...]`.
push *ARGS:
    hack/images.sh push {{ if REGISTRY != "" { "REGISTRY=" + REGISTRY } else { "" } }} {{ARGS}}

# Cold and warm cluster start times.
bench-cluster:
    cargo bench -p envtest --bench cluster_start

fmt:
    cargo fmt --all

lint:
    cargo clippy --workspace --all-targets -- -D warnings
