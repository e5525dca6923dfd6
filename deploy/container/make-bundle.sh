#!/bin/sh
# make-bundle.sh BINARY PREFIX
#
# Makes a self-contained copy of loopguard that runs in any Linux image of the same CPU
# architecture, with or without the shared libraries it was linked against (an application's
# image usually lacks libuv, yaml-cpp, spdlog, fmt and re2; it may even be musl-based):
#
#   PREFIX/bin/loopguard   the binary; its ELF interpreter is PREFIX/lib/ld-linux-*.so.*
#                          and its DT_RPATH is $ORIGIN/../lib:PREFIX/lib
#   PREFIX/lib/            every shared library it loads, glibc and the dynamic loader included
#
# Nothing is taken from the image it runs in: not LD_LIBRARY_PATH (never set, so the pool
# workers that loopguard starts see the app image's own environment), not the image's libc.
# PREFIX must be the path the bundle is used at (the Dockerfile uses /opt/loopguard, and the
# Kubernetes manifests mount the bundle there). Copied elsewhere it still runs through its loader
# (DIR/lib/ld-linux-x86-64.so.2 DIR/bin/loopguard version: install-loopguard.sh checks a copy so),
# but not with pools: loopguard starts its workers by re-executing /proc/self/exe, which is then
# the loader.
#
# Runs at image build time (deploy/Dockerfile). Needs ldd and patchelf.
set -eu

bin=${1:?usage: make-bundle.sh BINARY PREFIX}
prefix=${2:?usage: make-bundle.sh BINARY PREFIX}
case "$prefix" in /*) ;; *) echo "make-bundle: PREFIX must be absolute" >&2; exit 2 ;; esac

mkdir -p "$prefix/bin" "$prefix/lib"
install -m 0755 "$bin" "$prefix/bin/loopguard"

interp=$(patchelf --print-interpreter "$bin")
# ldd lines: "libuv.so.1 => /lib/x86_64-linux-gnu/libuv.so.1 (0x...)" and the loader's own line.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | while read -r lib; do
  cp -L "$lib" "$prefix/lib/$(basename "$lib")"
done
cp -L "$interp" "$prefix/lib/$(basename "$interp")"
chmod 0755 "$prefix/lib/"*

patchelf --set-interpreter "$prefix/lib/$(basename "$interp")" "$prefix/bin/loopguard"
# DT_RPATH (not RUNPATH): it also applies to the libraries' own dependencies and to glibc's dlopen.
# $ORIGIN needs /proc (the loader reads /proc/self/exe); PREFIX/lib is the fallback without it.
patchelf --force-rpath --set-rpath "\$ORIGIN/../lib:$prefix/lib" "$prefix/bin/loopguard"

# Check: the real loader resolves every library inside the bundle, and the binary runs.
trace=$(env -i LD_TRACE_LOADED_OBJECTS=1 "$prefix/bin/loopguard")
outside=$(printf '%s\n' "$trace" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }' \
  | while read -r path; do readlink -f "$path"; done | grep -v "^$prefix/lib/" || true)
if [ -n "$outside" ]; then
  echo "make-bundle: libraries resolved outside $prefix/lib:" >&2
  printf '%s\n' "$trace" >&2
  exit 1
fi
env -i "$prefix/bin/loopguard" version
echo "make-bundle: $prefix ($(du -sh "$prefix" | cut -f1)): $(ls "$prefix/lib" | tr '\n' ' ')"
