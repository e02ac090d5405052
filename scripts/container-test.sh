#!/usr/bin/env bash
# Builds the test image (Dockerfile.test) with podman and runs the whole
# test suite in it, as CI does after the tests on the host. No container
# registry is needed: the base image is a debootstrapped Debian bookworm with
# this host's Node 20, its headers and npm copied in. Every podman call uses
# a private storage in a temp dir, which is removed at the end. Only the
# debootstrap root (as a tar) stays in the cache. Prints the time of each
# step and exits with the container's exit code.
#
# Usage: sudo scripts/container-test.sh [COMMAND...]
#   COMMAND runs in the container instead of its default, .ci/run (for
#   example: bash -c 'npm ci && npx vitest run test/conformance').
# Environment:
#   CONTAINER_TEST_CACHE  where the debootstrap root is kept between runs
#                         (default /var/cache/tsoverlay-test/container;
#                         empty: no cache)
#   DEBIAN_MIRROR         default http://deb.debian.org/debian
#   CONTAINER_TEST_KEEP   if set to 1, keep the temp dir and the storage
#   NODE_EXTRA_CA_CERTS   if set, this CA file goes into the image too, for
#                         hosts that reach the npm registry through a TLS proxy
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${CONTAINER_TEST_CACHE-/var/cache/tsoverlay-test/container}
DEBIAN_IMAGE=localhost/tsoverlay-debian:$SUITE
BASE_IMAGE=localhost/tsoverlay-base:latest
TEST_IMAGE=localhost/tsoverlay-test:latest
say() { printf 'container-test: %s\n' "$*"; }
die() { printf 'container-test: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/debian-base.sh
source "$REPO/scripts/lib/debian-base.sh"

START=$EPOCHREALTIME
TIMINGS=()
# step NAME CMD...: runs CMD, records and prints how long it took.
step() {
  local name=$1 t=$EPOCHREALTIME rc=0
  shift
  say "$name"
  "$@" || rc=$?
  TIMINGS+=("$(printf '%-28s %6s s' "$name" "$(elapsed "$t")")")
  say "$name: $(elapsed "$t") s"
  return $rc
}

if [[ $(id -u) -ne 0 ]]; then
  die "must run as root: podman runs the privileged test container rootful (try: sudo $0)"
fi

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v "$RUNTIME" >/dev/null || missing+=("$RUNTIME")
[[ ${#missing[@]} -eq 0 ]] || install_packages "${missing[@]}"
say "$(podman --version); $("$RUNTIME" --version | head -n 1)"

# A container cannot load kernel modules; the tests need both.
modprobe -q overlay 2>/dev/null || true
modprobe -q fuse 2>/dev/null || true
grep -qw overlay /proc/filesystems || die "the kernel has no overlay filesystem (modprobe overlay)"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing (modprobe fuse)"

# The host's Node goes into the base image: the binary, the headers that
# node-gyp compiles against (nothing can download them in the image) and npm.
NODE=$(command -v node) || die "node is not installed; Node.js 20 or later is required"
NODE=$(readlink -f "$NODE")
"$NODE" -e 'process.exit(+process.versions.node.split(".")[0] < 20 ? 1 : 0)' ||
  die "Node.js 20 or later is required (found $("$NODE" --version))"
NODE_PREFIX=$(dirname "$(dirname "$NODE")")
NODE_HEADERS=$NODE_PREFIX/include/node
[[ -f $NODE_HEADERS/node_api.h ]] || die "Node's headers are not in $NODE_HEADERS"
NPM=$(command -v npm) || die "npm is not installed"
NPM_DIR=$(dirname "$(dirname "$(readlink -f "$NPM")")")
[[ -f $NPM_DIR/bin/npm-cli.js && -f $NPM_DIR/package.json ]] ||
  die "cannot find npm's package directory (found $NPM_DIR)"
say "node $("$NODE" --version) from $NODE, npm $(npm --version) from $NPM_DIR"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tsoverlay-container.XXXXXX")
STORAGE=$TMP/storage
PODMAN=(podman --root "$STORAGE/root" --runroot "$STORAGE/run" --tmpdir "$STORAGE/tmp"
  --network-config-dir "$STORAGE/networks" --storage-driver overlay
  --cgroup-manager cgroupfs --events-backend file --runtime "$RUNTIME"
  --runtime-flag "root=$STORAGE/runtime")
# Image copies stage their files in TMPDIR (/var/tmp by default).
mkdir -p "$STORAGE/tmp" "$STORAGE/networks"
export TMPDIR=$STORAGE/tmp
PARTIAL=""     # a cache file being written, removed if we stop early
# Image copies also write a cache of blob digests under /var/lib/containers,
# regardless of --root, so remove it afterwards if this run created it.
BLOB_CACHE=/var/lib/containers/cache/blob-info-cache-v1.boltdb
[[ -e /var/lib/containers ]] && OWN_BLOB_CACHE=0 || OWN_BLOB_CACHE=1

unmount_under() {
  local dir=$1 target
  # Deepest first, so that nested mounts come off before their parents.
  findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d "/") == 1 || $0 == d' | sort -r |
    while read -r target; do umount "$target" 2>/dev/null || umount -l "$target"; done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -z $PARTIAL ]] || rm -f "$PARTIAL"
  if [[ ${CONTAINER_TEST_KEEP:-0} == 1 ]]; then
    say "kept $TMP (podman flags: ${PODMAN[*]:1})"
  else
    "${PODMAN[@]}" system reset --force >/dev/null 2>&1 || true
    unmount_under "$TMP" || true
    rm -rf "$TMP"
  fi
  if [[ $OWN_BLOB_CACHE == 1 ]]; then
    rm -f "$BLOB_CACHE"
    rmdir "$(dirname "$BLOB_CACHE")" /var/lib/containers 2>/dev/null || true
  fi
  if [[ ${#TIMINGS[@]} -gt 0 ]]; then
    say "timings:"
    printf '  %s\n' "${TIMINGS[@]}"
    printf '  %-28s %6s s\n' total "$(elapsed "$START")"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rootfs_tar

quietly() { "$@" >/dev/null; }
step "import debian image" quietly "${PODMAN[@]}" import --quiet "$ROOTFS_TAR" "$DEBIAN_IMAGE"

# link_or_copy SRC DST: hard links when on the same filesystem (the build
# only reads them), a copy otherwise.
link_or_copy() {
  cp -al "$1" "$2" 2>/dev/null || { rm -rf "$2" && cp -a "$1" "$2"; }
}

# The base image lays Node out as the official node images do, under
# /usr/local, with a global npmrc that points node-gyp at the headers.
make_base_context() {
  local ctx=$TMP/base usr=$TMP/base/usr-local
  mkdir -p "$usr/bin" "$usr/include" "$usr/lib/node_modules" "$usr/etc"
  link_or_copy "$NODE" "$usr/bin/node"
  link_or_copy "$NODE_HEADERS" "$usr/include/node"
  link_or_copy "$NPM_DIR" "$usr/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$usr/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$usr/bin/npx"
  {
    echo "nodedir=/usr/local"
    echo "registry=$(npm config get registry)"
    printf '%s\n' fund=false audit=false update-notifier=false
  } >"$usr/etc/npmrc"
  {
    echo "FROM $DEBIAN_IMAGE"
    echo "COPY usr-local/ /usr/local/"
    # A host behind a TLS proxy trusts an extra CA, so npm in the image must
    # trust it too to reach the registry. sudo drops the variable unless
    # run as sudo --preserve-env=NODE_EXTRA_CA_CERTS.
    if [[ -n ${NODE_EXTRA_CA_CERTS:-} && -r $NODE_EXTRA_CA_CERTS ]]; then
      cp "$NODE_EXTRA_CA_CERTS" "$ctx/extra-ca.crt"
      echo "COPY extra-ca.crt /usr/local/share/tsoverlay-test/extra-ca.crt"
      echo "ENV NODE_EXTRA_CA_CERTS=/usr/local/share/tsoverlay-test/extra-ca.crt"
    fi
    echo 'CMD ["bash"]'
  } >"$ctx/Containerfile"
}
make_base_context
step "build base image" quietly "${PODMAN[@]}" build --quiet --pull=never --network host \
  "${ULIMITS[@]}" -f "$TMP/base/Containerfile" -t "$BASE_IMAGE" "$TMP/base"

step "build test image" "${PODMAN[@]}" build --pull=never --network host "${ULIMITS[@]}" \
  --build-arg "BASE=$BASE_IMAGE" -f "$REPO/Dockerfile.test" -t "$TEST_IMAGE" "$REPO"

# The image declares /tmp a volume. podman mounts volumes nodev,nosuid
# unless the mount options include dev and suid, and the host's /tmp allows
# both.
RUN_FLAGS=(--rm --privileged --network host "${ULIMITS[@]}"
  --mount type=volume,dst=/tmp,dev=true,suid=true)
say "podman run ${RUN_FLAGS[*]} $TEST_IMAGE $*"
rc=0
step "run tests in container" "${PODMAN[@]}" run "${RUN_FLAGS[@]}" "$TEST_IMAGE" "$@" || rc=$?
say "the container exited with $rc"
exit $rc
