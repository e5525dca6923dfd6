#!/bin/sh
# install-loopguard DEST
#
# Copies the self-contained loopguard bundle of this image (/opt/loopguard: bin/loopguard plus
# every shared library it needs, glibc and its loader included; see make-bundle.sh) into DEST,
# then checks that the copy runs. Installed in the loopguard image as
# /usr/local/bin/install-loopguard, for an init container that shares loopguard with an
# application's image through an emptyDir volume:
#
#   initContainers:
#     - name: install-loopguard
#       image: loopguard:0.1.0
#       command: ["install-loopguard", "/bundle"]
#       volumeMounts: [{name: loopguard-bundle, mountPath: /bundle}]
#
# The container that runs it must mount that volume at /opt/loopguard (the path the binary's
# loader is set to) and start /opt/loopguard/bin/loopguard. Nothing from its own image is used,
# so it works in an image without libuv, yaml-cpp, spdlog, fmt or re2, or even without glibc.
set -eu

src=${LOOPGUARD_BUNDLE:-/opt/loopguard}
dest=${1:?usage: install-loopguard DEST}
[ -x "$src/bin/loopguard" ] || { echo "install-loopguard: no bundle at $src" >&2; exit 1; }

mkdir -p "$dest"
cp -R "$src/." "$dest/"
# The copy is not at $src yet (it is only mounted there in the next container), so start it
# through its own loader: proves the copy is complete and readable.
loader=$(ls "$dest/lib/" | grep '^ld-linux' | head -n 1)
"$dest/lib/$loader" --library-path "$dest/lib" "$dest/bin/loopguard" version >/dev/null
echo "install-loopguard: copied $src to $dest ($("$dest/lib/$loader" --library-path "$dest/lib" "$dest/bin/loopguard" version))"
