#!/usr/bin/env bash
# Copies dynamically linked ELF programs into a root-filesystem tree together
# with every shared library `ldd` resolves for them and the dynamic loader, at
# the same absolute paths they have on this machine. The tree is relocatable in
# the container sense: copy it to `/` of any image (even `FROM scratch`) and
# the programs run there without the host's libc (the loader finds the
# libraries in its default directories, no ld.so.cache needed).
#
#   images/bundle-elf.sh DEST FILE...
#
# FILE may also be a plain data file or a directory (firmware, modules): it is
# copied as is, symlinks inside it resolved. Shared objects among the files
# (QEMU's dlopen()ed modules) get their libraries bundled too.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 DEST FILE..." >&2; exit 2; }
dest=$1
shift
command -v ldd >/dev/null || { echo "error: ldd not found (Debian package libc-bin)" >&2; exit 1; }
mkdir -p "$dest"

# copy SRC: the file (dereferenced) to DEST/SRC, keeping the mode.
copy() {
  local src=$1
  mkdir -p "$dest$(dirname "$src")"
  cp -L --preserve=mode "$src" "$dest$src"
}

is_dynamic_elf() {
  # `ldd` prints "not a dynamic executable" (exit 1) for static and non-ELF files.
  [ -f "$1" ] && head -c 4 "$1" | grep -q "ELF" && ldd "$1" >/dev/null 2>&1
}

# Libraries of one ELF: absolute paths from `ldd` (`name => /path (addr)` and
# the loader's `/path (addr)` line); the vDSO has no file.
libraries() {
  local out
  out=$(ldd "$1") || { echo "error: ldd $1 failed" >&2; exit 1; }
  if grep -q "not found" <<<"$out"; then
    echo "error: $1 has unresolved libraries:" >&2
    grep "not found" <<<"$out" >&2
    exit 1
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
}

bundle_file() {
  local file=$1 lib
  copy "$file"
  if is_dynamic_elf "$file"; then
    while read -r lib; do
      [ -e "$dest$lib" ] || copy "$lib"
    done < <(libraries "$file")
  fi
}

for path in "$@"; do
  [ -e "$path" ] || { echo "error: $path does not exist" >&2; exit 1; }
  case "$path" in /*) ;; *) echo "error: $path: give absolute paths" >&2; exit 1 ;; esac
  if [ -d "$path" ]; then
    while IFS= read -r -d '' f; do bundle_file "$f"; done < <(find -L "$path" -type f -print0)
  else
    bundle_file "$path"
  fi
done
