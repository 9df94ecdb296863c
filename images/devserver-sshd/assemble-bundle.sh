#!/bin/sh
# Assembles the relocatable OpenSSH bundle the devserver-operator injects into
# DevServer pods, from this machine's Debian OpenSSH server:
#
#   <out>/bin/sshd                 Debian's sshd, unmodified
#   <out>/bin/cat                  reads /proc/net/tcp{,6} for the idle check
#   <out>/lib/ld-linux-x86-64.so.2 the dynamic loader
#   <out>/lib/*.so*                every shared library they need, plus
#                                  libnss_wrapper.so (user `dev` without an
#                                  /etc/passwd entry in the user's image)
#
# Nothing is run through the image's own loader or libc: the container command
# is `<out>/lib/ld-linux-x86-64.so.2 --library-path <out>/lib --preload
# <out>/lib/libnss_wrapper.so <out>/bin/sshd -r ...`, so the bundle works in
# any x86-64 image (glibc, musl or none) and in any directory. Sessions run
# the image's own shell with a clean environment (no LD_* variables leak).
#
# The test (crates/devserver-operator/tests/ssh.rs) and the image build
# (Containerfile) both run this script, so they use the same layout.
#
# Usage: assemble-bundle.sh OUT_DIR
set -eu
out=${1:?usage: assemble-bundle.sh OUT_DIR}
sshd=${SSHD:-/usr/sbin/sshd}
nss_wrapper=${NSS_WRAPPER:-/usr/lib/x86_64-linux-gnu/libnss_wrapper.so}
cat_bin=${CAT:-/usr/bin/cat}
for f in "$sshd" "$nss_wrapper" "$cat_bin"; do
  [ -e "$f" ] || { echo "assemble-bundle: $f is missing (install openssh-server, libnss-wrapper)" >&2; exit 1; }
done
command -v ldd >/dev/null || { echo "assemble-bundle: ldd is missing (libc-bin)" >&2; exit 1; }

mkdir -p "$out/bin" "$out/lib"
cp -L "$sshd" "$out/bin/sshd"
cp -L "$cat_bin" "$out/bin/cat"
cp -L "$nss_wrapper" "$out/lib/libnss_wrapper.so"
# Every library ldd resolves (`name => /path (addr)`) plus the loader
# (`/lib64/ld-linux-x86-64.so.2 (addr)`), copied under their soname.
for bin in "$sshd" "$cat_bin" "$nss_wrapper"; do
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do
  cp -L "$lib" "$out/lib/$(basename "$lib")"
done
[ -e "$out/lib/ld-linux-x86-64.so.2" ] || { echo "assemble-bundle: no dynamic loader found by ldd" >&2; exit 1; }
chmod 0755 "$out" "$out/bin" "$out/lib" "$out/bin/"* "$out/lib/ld-linux-x86-64.so.2"
chmod 0644 $(find "$out/lib" -type f ! -name 'ld-linux-x86-64.so.2')
echo "assemble-bundle: $(ls "$out/lib" | wc -l) libraries in $out"
