#!/usr/bin/env bash
# Builds the container images with buildah (no Docker engine needed) and
# pushes them to a registry.
#
#   hack/images.sh [build] [NAME...]         build every image, or the NAMEs
#   hack/images.sh push REGISTRY [NAME...]   push the built images to REGISTRY
#                                            (host:port/prefix; `REGISTRY=` prefix accepted)
#   hack/images.sh list                      print NAME, version tag, revision tag
#
# Images: one per operator (a static musl binary), plus the workloads' images
# (the NovaCron launcher with QEMU, the devserver SSH server). Each is
# images/<name>/Containerfile built from a context staged under
# target/images/context/<name>, so the same files build with Docker elsewhere.
# Tags: <crate version> and <crate version>-<git short revision>, under
# IMAGE_PREFIX (default ghcr.io/orchestra-operators, the path deploy/ uses).
#
# Environment:
#   IMAGE_PREFIX     local repository prefix (default ghcr.io/orchestra-operators)
#   IMAGES_STORAGE   buildah storage directory (default: buildah's own, /var/lib/containers)
#   IMAGE_REVISION   git commit (full) the tags and labels name (default: HEAD), so a
#                    build and a later push agree even if HEAD moves in between
source "$(dirname "$0")/lib.sh"

IMAGE_PREFIX=${IMAGE_PREFIX:-ghcr.io/orchestra-operators}
TARGET=x86_64-unknown-linux-musl
OUT="$ROOT/target/images"          # own target dir: release builds do not hold the dev build's lock
SOURCE_URL=https://github.com/orchestra-operators/operators

# name -> "<Containerfile dir> <crate giving the version> <kind>"
declare -A IMAGE=(
  [workshop-operator]="workshop-operator workshop-operator operator"
  [devserver-operator]="devserver-operator devserver-operator operator"
  [jvs-operator]="jvs-operator jvs-operator operator"
  [novacron-operator]="novacron-operator novacron-operator operator"
  [novacron-launcher]="novacron-launcher novacron-launcher launcher"
  [devserver-sshd]="devserver-sshd-staged devserver-operator sshd"
)
ORDER=(workshop-operator devserver-operator jvs-operator novacron-operator novacron-launcher devserver-sshd)

# Not built, and why (printed on every build so nobody takes its absence for success).
NOT_BUILT_JVS_RUNNER="jvs-runner is NOT built: it needs the jvs CLI (Go module github.com/jvs-project/jvs),
  which the Go module proxy reachable here refuses (403). images/jvs-runner/Containerfile documents
  how to stage and build it where the module is available."

# What the launcher image carries besides its binary (see its Containerfile).
QEMU_FILES=(
  /usr/bin/qemu-system-x86_64 /usr/bin/qemu-img /usr/bin/genisoimage
  /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so   # TCG is a module in Debian's QEMU
  /usr/share/seabios                                    # BIOS and VGA BIOS
  /usr/lib/ipxe/qemu                                    # NIC option ROMs (virtio-net, e1000, ...)
  /usr/share/qemu/kvmvapic.bin /usr/share/qemu/linuxboot.bin /usr/share/qemu/linuxboot_dma.bin
  /usr/share/qemu/multiboot.bin /usr/share/qemu/multiboot_dma.bin /usr/share/qemu/pvh.bin
  /usr/share/qemu/qboot.rom /usr/share/qemu/sgabios.bin
)
# What the SSH server image's `install` script runs.
SSHD_INSTALL_TOOLS=(/bin/sh /usr/bin/cp /usr/bin/head)

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

crate_version() {
  local id
  id=$(cd "$ROOT" && cargo pkgid -q -p "$1" 2>/dev/null) || die "cargo pkgid -p $1 failed (is crates/$1 in the workspace?)"
  echo "${id##*[#@]}"
}


# Revision (full for the image label, short for the binaries' `version`),
# marked when the tree has uncommitted changes: such a build is not that commit.
dirty_suffix() {
  [ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] || echo -dirty
}

check_names() {
  local n
  for n in "$@"; do
    [ "$n" = jvs-runner ] && die "$NOT_BUILT_JVS_RUNNER"
    [ -n "${IMAGE[$n]:-}" ] || die "unknown image '$n' (images: ${ORDER[*]})"
  done
}

buildah_() {
  local args=(--storage-driver vfs)
  if [ -n "${IMAGES_STORAGE:-}" ]; then
    args+=(--root "$IMAGES_STORAGE/root" --runroot "$IMAGES_STORAGE/run")
  fi
  buildah "${args[@]}" "$@"
}

require_buildah() {
  command -v buildah >/dev/null || die "buildah not found: apt-get install buildah (Debian package)"
  # vfs storage + chroot isolation without user namespaces: needs root here.
  [ "$(id -u)" -eq 0 ] || die "hack/images.sh builds with buildah as root (vfs storage, chroot isolation); run it as root (sudo), or build with Docker from the staged contexts (see the header of each images/*/Containerfile)"
}

# One cargo invocation for every binary the selected images need.
build_binaries() {
  local crates=() n kind args=()
  for n in "$@"; do
    read -r _ _ kind <<<"${IMAGE[$n]}"
    case $kind in operator | launcher) crates+=("$n") ;; esac
  done
  [ ${#crates[@]} -gt 0 ] || return 0
  rustup target list --installed 2>/dev/null | grep -qx "$TARGET" \
    || rustup target add "$TARGET" >/dev/null 2>&1 \
    || die "the Rust target $TARGET is missing: rustup target add $TARGET"
  command -v musl-gcc >/dev/null || die "musl-gcc not found: apt-get install musl-tools (ring's C code for the static musl build)"
  for n in "${crates[@]}"; do args+=(-p "$n"); done
  say "cargo build --release --target $TARGET ${args[*]}"
  (cd "$ROOT" && CARGO_TARGET_DIR="$OUT" GIT_REVISION="$REVISION$DIRTY" CARGO_PROFILE_RELEASE_STRIP=symbols \
    nice -n 10 cargo build --release --target "$TARGET" "${args[@]}") || die "cargo build failed"
  for n in "${crates[@]}"; do
    local bin="$OUT/$TARGET/release/$n" out
    [ -x "$bin" ] || die "$bin was not built"
    # Static: no dynamic loader, so it runs on an empty base image.
    out=$(ldd "$bin" 2>&1 || true)
    grep -Eq "not a dynamic executable|statically linked" <<<"$out" || die "$bin is not static: $out"
  done
}

stage_base() {
  local ctx=$1
  rm -rf "$ctx"
  mkdir -p "$ctx/etc/ssl/certs"
  cp "$ROOT/images/base/etc/passwd" "$ROOT/images/base/etc/group" "$ctx/etc/"
  [ -f /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt missing: apt-get install ca-certificates"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/etc/ssl/certs/"
}

stage() {
  local name=$1 kind=$2 ctx="$OUT/context/$1"
  stage_base "$ctx"
  case $kind in
    operator)
      mkdir -p "$ctx/bin" && cp "$OUT/$TARGET/release/$name" "$ctx/bin/"
      ;;
    launcher)
      mkdir -p "$ctx/bin" && cp "$OUT/$TARGET/release/$name" "$ctx/bin/"
      local f
      for f in "${QEMU_FILES[@]}"; do
        [ -e "$f" ] || die "$f missing: apt-get install qemu-system-x86 qemu-utils genisoimage"
      done
      "$ROOT/images/bundle-elf.sh" "$ctx/rootfs" "${QEMU_FILES[@]}" || die "bundling QEMU failed"
      mkdir -m 1777 "$ctx/rootfs/tmp"   # inside rootfs/: COPY keeps a copied directory's mode
      ;;
    sshd)
      # The devserver-operator's own bundle script and entrypoint, unchanged.
      sh "$ROOT/images/devserver-sshd/assemble-bundle.sh" "$ctx/bundle" >/dev/null || die "images/devserver-sshd/assemble-bundle.sh failed"
      cp "$ROOT/images/devserver-sshd/install" "$ctx/install" && chmod 0755 "$ctx/install"
      "$ROOT/images/bundle-elf.sh" "$ctx/rootfs" "${SSHD_INSTALL_TOOLS[@]}" || die "bundling /bin/sh, cp, head failed"
      mkdir -m 1777 "$ctx/rootfs/tmp"
      ;;
  esac
}

build() {
  local names=("$@") n dir crate kind version
  [ ${#names[@]} -gt 0 ] || names=("${ORDER[@]}")
  check_names "${names[@]}"
  require_buildah
  build_binaries "${names[@]}"
  for n in "${names[@]}"; do
    read -r dir crate kind <<<"${IMAGE[$n]}"
    version=$(crate_version "$crate")
    say "image $n:$version ($IMAGE_PREFIX/$n)"
    stage "$n" "$kind"
    buildah_ bud --isolation chroot --quiet \
      -f "$ROOT/images/$dir/Containerfile" \
      --build-arg "VERSION=$version" --build-arg "REVISION=$REVISION_LABEL" --build-arg "SOURCE=$SOURCE_URL" \
      -t "$IMAGE_PREFIX/$n:$version" -t "$IMAGE_PREFIX/$n:$version-$REVISION" \
      "$OUT/context/$n" >/dev/null || die "buildah bud $n failed"
  done
  say "built (uncompressed sizes):"
  for n in "${names[@]}"; do
    read -r _ crate _ <<<"${IMAGE[$n]}"
    buildah_ images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE_PREFIX/$n:$(crate_version "$crate")" >&2
  done
  printf 'note: %s\n' "$NOT_BUILT_JVS_RUNNER" >&2
}

# Loopback registries serve plain HTTP (Debian's docker-registry default);
# anything else must have a verified certificate.
tls_flag() {
  case ${1%%/*} in
    127.0.0.1:* | localhost:* | \[::1\]:* | 127.0.0.1 | localhost) echo --tls-verify=false ;;
    *) echo --tls-verify=true ;;
  esac
}

push() {
  local registry=${1:-}
  registry=${registry#REGISTRY=}
  [ -n "$registry" ] || die "usage: hack/images.sh push REGISTRY [NAME...]   (REGISTRY = host:port/prefix)"
  shift
  local names=("$@") n crate version tag tls
  [ ${#names[@]} -gt 0 ] || names=("${ORDER[@]}")
  check_names "${names[@]}"
  require_buildah
  tls=$(tls_flag "$registry")
  for n in "${names[@]}"; do
    read -r _ crate _ <<<"${IMAGE[$n]}"
    version=$(crate_version "$crate")
    for tag in "$version" "$version-$REVISION"; do
      buildah_ images -q "$IMAGE_PREFIX/$n:$tag" >/dev/null 2>&1 \
        || die "$IMAGE_PREFIX/$n:$tag is not built: run hack/images.sh build first"
      say "push $registry/$n:$tag"
      buildah_ push --quiet "$tls" "$IMAGE_PREFIX/$n:$tag" "docker://$registry/$n:$tag" \
        || die "buildah push $registry/$n:$tag failed"
    done
  done
}

list() {
  local n crate version
  for n in "${ORDER[@]}"; do
    read -r _ crate _ <<<"${IMAGE[$n]}"
    version=$(crate_version "$crate")
    printf '%s\t%s\t%s\n' "$n" "$version" "$version-$REVISION"
  done
}

FULL_REVISION=${IMAGE_REVISION:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)}
REVISION=${FULL_REVISION:0:12}
DIRTY=$(dirty_suffix)
REVISION_LABEL="$FULL_REVISION$DIRTY"
cmd=${1:-build}
[ $# -eq 0 ] || shift
case $cmd in
  build) build "$@" ;;
  push) push "$@" ;;
  list) list ;;
  -h | --help | help) usage ;;
  *) build "$cmd" "$@" ;;   # `hack/images.sh NAME...`
esac
