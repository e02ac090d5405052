#!/usr/bin/env bash
# Installs the Debian packages tsoverlay needs to build, run and test:
# libfuse 2.9 and its headers (the FUSE binding links against them), fuse3
# for fusermount3, a C toolchain and pkg-config for the native addons, and
# the tools the tests drive (attr, libcap2-bin, debootstrap, procps).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (apt-get installs packages): sudo $0" >&2
  exit 1
fi
if ! command -v node >/dev/null || ! node -e 'process.exit(Number(process.versions.node.split(".")[0] < 20))'; then
  echo "error: Node.js 20 or later is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

packages=(libfuse2 libfuse-dev fuse3 pkg-config build-essential python3 attr libcap2-bin debootstrap util-linux kmod procps)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Kernel overlayfs is the reference the tests compare against.
modprobe overlay 2>/dev/null || true
modprobe fuse 2>/dev/null || true
if [ ! -e /dev/fuse ]; then
  echo "error: /dev/fuse is missing; load the fuse module (modprobe fuse) or run the container with --device /dev/fuse" >&2
  exit 1
fi
