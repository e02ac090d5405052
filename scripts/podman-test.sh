#!/usr/bin/env bash
# End-to-end check that podman can use tsoverlay as the mount_program of its
# overlay storage driver. The script imports a debootstrapped Debian bookworm
# as the base image, without a registry. It builds an image with two RUN
# steps: the first installs a package with apt-get, the second deletes a
# directory of the lower layers and replaces another one. Then it runs the
# image with --rm and as a kept container, and runs `podman info`, which calls
# the mount program with --version.
#
# podman calls tsoverlay through a small wrapper that logs each call, so the
# script can print and check the calls. Every podman call uses a private
# storage in a temp dir, which is removed at the end. Only the debootstrap
# root (as a tar) stays in the cache, which scripts/container-test.sh shares.
# Prints the time of each step and a summary, and exits 1 if a check failed.
#
# Usage: sudo scripts/podman-test.sh    (after `npm ci`, which builds dist/)
# Environment:
#   PODMAN_TEST_CACHE      where the debootstrap root is kept between runs
#                          (default /var/cache/tsoverlay-test/container, as for
#                          container-test.sh; empty: no cache)
#   DEBIAN_MIRROR          default http://deb.debian.org/debian
#   PODMAN_TEST_KEEP       if set to 1, keep the temp dir (logs, the wrapper's
#                          call log, daemon logs); the storage is still reset
#   PODMAN_TEST_LOG_LEVEL  log level of the tsoverlay daemons (default info);
#                          each mount logs to its own file under the temp dir
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TSOVERLAY=$REPO/bin/tsoverlay
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${PODMAN_TEST_CACHE-/var/cache/tsoverlay-test/container}
LOG_LEVEL=${PODMAN_TEST_LOG_LEVEL:-info}
BASE_IMAGE=localhost/tsoverlay-podman-base:$SUITE
TEST_IMAGE=localhost/tsoverlay-podman-test:latest
KEPT_NAME=tsoverlay-podman-test-kept
PACKAGE=hello
# Deleted by the second RUN step; it has files from the base image and from
# the package, so the whiteout must hide both lower layers.
DELETED_DIR=/usr/share/doc
# Removed and made again by the second RUN step, with one new file: the new
# directory must be opaque to the base image's files.
REPLACED_DIR=/etc/apt/apt.conf.d
REPLACED_FILE=99tsoverlay-podman-test
say() { printf 'podman-test: %s\n' "$*"; }
die() { printf 'podman-test: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/debian-base.sh
source "$REPO/scripts/lib/debian-base.sh"

START=$EPOCHREALTIME
TIMINGS=()
PASSED=()
FAILED=()
pass() { PASSED+=("$1"); say "ok: $1"; }
fail() { FAILED+=("$1"); say "FAIL: $1"; }
# check NAME CMD...: a pass if CMD succeeds, a failure otherwise.
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
# step NAME CMD...: runs CMD, records and prints how long it took. CMD
# records its own checks. If it returns non-zero, the steps that need it are
# skipped.
declare -A STEP_OK
step() {
  local name=$1 t=$EPOCHREALTIME rc=0
  shift
  say "--- $name"
  "$@" || rc=$?
  TIMINGS+=("$(printf '%-34s %7s s' "$name" "$(elapsed "$t")")")
  say "$name: $(elapsed "$t") s"
  [[ $rc -eq 0 ]] && STEP_OK[$name]=1
  return 0
}
# needs STEP NEXT: returns 0 if STEP succeeded. Otherwise records NEXT as
# skipped, which counts as a failure, and returns 1.
needs() {
  [[ -n ${STEP_OK[$1]:-} ]] && return 0
  fail "skipped '$2': '$1' did not succeed"
  return 1
}

if [[ $(id -u) -ne 0 ]]; then
  die "must run as root: podman's rootful storage and FUSE mounts with allow_other need it (try: sudo $0)"
fi
[[ -f $REPO/dist/cli.js ]] || die "$REPO/dist/cli.js is missing; run 'npm ci' (or 'npx tsc -p .') in $REPO first"
NODE=$(command -v node) || die "node is not installed; Node.js 20 or later is required"

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v "$RUNTIME" >/dev/null || missing+=("$RUNTIME")
command -v fusermount3 >/dev/null || missing+=(fuse3)
[[ ${#missing[@]} -eq 0 ]] || install_packages "${missing[@]}"
for tool in podman "$RUNTIME" conmon fusermount3 findmnt tar; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed (apt-get install podman runc fuse3)"
done
[[ -c /dev/fuse ]] || die "/dev/fuse is missing (modprobe fuse)"
say "$(podman --version); $("$RUNTIME" --version | head -n 1); tsoverlay $("$NODE" "$TSOVERLAY" --version)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tsoverlay-podman.XXXXXX")
WRAPPER=$TMP/mount-program
CALLS=$TMP/mount-program.calls
DAEMON_LOGS=$TMP/daemon-logs
PODMAN=(podman --root "$TMP/root" --runroot "$TMP/runroot" --tmpdir "$TMP/podman-tmp"
  --network-config-dir "$TMP/networks" --storage-driver overlay
  --storage-opt "overlay.mount_program=$WRAPPER"
  --cgroup-manager cgroupfs --events-backend file --runtime "$RUNTIME")
# No --runtime-flag root=DIR for a private runc state: with it, podman 4.3
# left runc's state of exited containers in DIR, so `podman start` of the
# kept container failed with "container with given ID already exists".
# Image copies stage their files in TMPDIR (/var/tmp by default).
mkdir -p "$TMP/podman-tmp" "$TMP/networks" "$TMP/staging" "$DAEMON_LOGS"
export TMPDIR=$TMP/staging
PARTIAL=""     # a cache file being written, removed if we stop early
# Image copies also write a cache of blob digests under /var/lib/containers,
# regardless of --root, so remove it afterwards if this run created it.
BLOB_CACHE=/var/lib/containers/cache/blob-info-cache-v1.boltdb
[[ -e /var/lib/containers ]] && OWN_BLOB_CACHE=0 || OWN_BLOB_CACHE=1

# The wrapper logs each call and its exit status to $CALLS. Each mount's
# daemon logs to $DAEMON_LOGS/LAYER.log.
cat >"$WRAPPER" <<EOF
#!/bin/bash
# mount_program for podman-test.sh: logs the call, then runs tsoverlay.
calls=$(printf '%q' "$CALLS")
{
  printf '%s %s argv:' "\$(date +%T.%3N)" "\$\$"
  for arg; do
    if [[ \$arg == *[[:space:]\'\"\\\\]* ]]; then
      printf ' %q' "\$arg"
    else
      printf ' %s' "\$arg"
    fi
  done
  printf '\n'
} >>"\$calls"
extra=()
if [[ " \$* " == *" -o "* ]]; then
  layer=\$(basename "\$(dirname "\${*: -1}")")
  extra=(--log-file $(printf '%q' "$DAEMON_LOGS")/"\$layer.log" --log-level $(printf '%q' "$LOG_LEVEL"))
fi
rc=0
$(printf '%q %q' "$NODE" "$TSOVERLAY") "\${extra[@]}" "\$@" || rc=\$?
printf '%s %s exit %s\n' "\$(date +%T.%3N)" "\$\$" "\$rc" >>"\$calls"
exit "\$rc"
EOF
chmod 755 "$WRAPPER"
: >"$CALLS"

# Mount targets at or below $1, deepest first.
mounts_under() {
  findmnt -rn -o TARGET | awk -v d="$1" '$0 == d || index($0, d "/") == 1' | sort -r
}

# Unmounts everything at or below $1; the last attempts are lazy.
unmount_under() {
  local dir=$1 target i
  for i in 1 2 3 4; do
    [[ -z $(mounts_under "$dir") ]] && return 0
    while read -r target; do
      [[ -n $target ]] || continue
      if [[ $i -lt 3 ]]; then
        fusermount3 -u "$target" 2>/dev/null || umount "$target" 2>/dev/null || true
      else
        umount -l "$target" 2>/dev/null || true
      fi
    done < <(mounts_under "$dir")
  done
  [[ -z $(mounts_under "$dir") ]]
}

# Prints the pids of tsoverlay daemons serving a mount under $TMP. Only this
# run's podman uses $TMP, so this run started them.
our_daemons() {
  local p arg ours daemon
  local -a args
  for p in /proc/[0-9]*; do
    mapfile -d '' -t args 2>/dev/null <"$p/cmdline" || continue
    ours=0 daemon=0
    for arg in "${args[@]}"; do
      [[ $arg == "$TSOVERLAY" ]] && ours=1
      [[ $arg == --foreground && $ours == 1 ]] && daemon=1
    done
    [[ $daemon == 1 ]] || continue
    for arg in "${args[@]}"; do
      if [[ $arg == "$TMP"/* ]]; then echo "${p#/proc/}"; break; fi
    done
  done
}

# Waits up to 10 s for the daemons under $TMP to exit, then prints the pids
# of those still running.
wait_daemons() {
  local i left
  for i in $(seq 100); do
    left=$(our_daemons)
    [[ -z $left ]] && return 0
    sleep 0.1
  done
  echo "$left"
  return 1
}

cleanup() {
  local rc=$? pid left
  set +e
  trap - EXIT INT TERM
  [[ -z $PARTIAL ]] || rm -f "$PARTIAL"
  "${PODMAN[@]}" system reset --force >/dev/null 2>&1 || say "podman system reset failed"
  unmount_under "$TMP" || say "could not unmount everything under $TMP"
  left=$(wait_daemons)
  for pid in $left; do
    say "stopping tsoverlay daemon $pid, still running after its unmount"
    kill "$pid" 2>/dev/null
  done
  if [[ -n $(mounts_under "$TMP") ]]; then
    say "leaving $TMP in place: something is still mounted under it"
    [[ $rc -ne 0 ]] || rc=1
  elif [[ ${PODMAN_TEST_KEEP:-0} == 1 ]]; then
    # The reset removed the storage's files. The logs stay.
    rm -rf --one-file-system "$TMP/root" "$TMP/runroot" "$TMP/staging"
    say "kept $TMP"
  else
    rm -rf --one-file-system "$TMP"
  fi
  if [[ $OWN_BLOB_CACHE == 1 ]]; then
    rm -f "$BLOB_CACHE"
    rmdir "$(dirname "$BLOB_CACHE")" /var/lib/containers 2>/dev/null
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT
trap 'say terminated; exit 143' TERM

# logged LOG CMD...: runs CMD with its output in $TMP/LOG. If CMD fails,
# prints the last lines of LOG.
logged() {
  local log=$TMP/$1 rc=0
  shift
  "$@" >"$log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    say "'$1' failed with exit status $rc; last lines of $log:"
    tail -n 25 "$log" | sed 's/^/    /'
  fi
  return $rc
}

# --- the base image: a minbase Debian root, as a tar ----------------------

rootfs_tar
BASE_VERSION=$(tar -xOf "$ROOTFS_TAR" ./etc/debian_version) ||
  die "./etc/debian_version not found in $ROOTFS_TAR; delete the tar to build it again"

# --- the steps -----------------------------------------------------------

step_info() {
  local out version
  logged info.log "${PODMAN[@]}" info --format '{{json .Store.GraphOptions}}' || {
    fail "podman info"
    return 1
  }
  out=$(cat "$TMP/info.log")
  say "graph options: $out"
  version=$("$NODE" "$TSOVERLAY" --version)
  check "podman info calls --version" grep -q ' argv: --version$' "$CALLS"
  check "podman info shows version $version" grep -qF "\"Version\":\"$version\"" <<<"$out"
}

step_import() {
  if logged import.log "${PODMAN[@]}" import --quiet "$ROOTFS_TAR" "$BASE_IMAGE"; then
    pass "podman import"
  else
    fail "podman import"
    return 1
  fi
}

step_build() {
  local ctx=$TMP/context
  mkdir -p "$ctx"
  cat >"$ctx/Containerfile" <<EOF
FROM $BASE_IMAGE
RUN apt-get -o Acquire::Retries=3 update && \\
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGE && \\
    rm -rf /var/lib/apt/lists/*
RUN test -d $DELETED_DIR/$PACKAGE && test -f $REPLACED_DIR/70debconf && \\
    rm -rf $DELETED_DIR $REPLACED_DIR && \\
    mkdir $REPLACED_DIR && echo '// podman-test' >$REPLACED_DIR/$REPLACED_FILE
EOF
  if logged build.log "${PODMAN[@]}" build --pull=never --network host "${ULIMITS[@]}" \
      -f "$ctx/Containerfile" -t "$TEST_IMAGE" "$ctx"; then
    pass "podman build"
  else
    fail "podman build"
    return 1
  fi
}

# The container prints one line per probe, compared with the expected line.
PROBE='
echo "hello: $(hello 2>&1)"
echo "deleted dir: $(ls -d '"$DELETED_DIR"' 2>&1)"
echo "base file: $(cat /etc/debian_version)"
echo "replaced dir: $(ls -A '"$REPLACED_DIR"' | tr "\n" " ")"
echo "dpkg: $(dpkg-query -W -f "\${Package} \${db:Status-Abbrev}" '"$PACKAGE"')"
echo "markers: $(find / -xdev -name ".wh.*" | head -n 5 | tr "\n" " ")"
'

step_run_rm() {
  local got expected line i
  logged run-rm.log "${PODMAN[@]}" run --rm --pull=never --network none "${ULIMITS[@]}" \
    "$TEST_IMAGE" sh -c "$PROBE" || { fail "podman run --rm"; return 1; }
  pass "podman run --rm"
  mapfile -t got <"$TMP/run-rm.log"
  expected=(
    "hello: Hello, world!"
    "deleted dir: ls: cannot access '$DELETED_DIR': No such file or directory"
    "base file: $BASE_VERSION"
    "replaced dir: $REPLACED_FILE "
    "dpkg: $PACKAGE ii "
    "markers: "
  )
  for i in "${!expected[@]}"; do
    line=${got[$i]:-}
    if [[ $line == "${expected[$i]}" ]]; then
      pass "in the container: $line"
    else
      fail "in the container: expected '${expected[$i]}', got '$line'"
    fi
  done
}

# Runs a kept container twice: the second run must see the file that the
# first wrote, and podman diff (which mounts it again) must show that file.
step_kept() {
  local out rc=0
  if logged kept-run.log "${PODMAN[@]}" run --name "$KEPT_NAME" --pull=never --network none \
      "${ULIMITS[@]}" "$TEST_IMAGE" sh -c 'echo run >>/root/runs && wc -l </root/runs'; then
    check "first run writes the file" [ "$(cat "$TMP/kept-run.log")" = 1 ]
  else
    fail "podman run (kept)"
    rc=1
  fi
  if logged kept-start.log "${PODMAN[@]}" start --attach "$KEPT_NAME"; then
    check "podman start sees the file" [ "$(cat "$TMP/kept-start.log")" = 2 ]
  else
    fail "podman start --attach"
    rc=1
  fi
  if logged kept-diff.log "${PODMAN[@]}" diff "$KEPT_NAME"; then
    check "podman diff shows the file" grep -qx 'A /root/runs' "$TMP/kept-diff.log"
  else
    fail "podman diff"
    rc=1
  fi
  out=$("${PODMAN[@]}" ps -a --filter "name=^$KEPT_NAME\$" --format '{{.Status}}' 2>&1) || true
  say "kept container status: $out"
  if logged kept-rm.log "${PODMAN[@]}" rm "$KEPT_NAME"; then
    pass "podman rm"
  else
    fail "podman rm"
    rc=1
  fi
  return $rc
}

# Prints the calls podman made, as the wrapper logged them, and checks them.
# NOTE: the three option forms checked are those podman 4.3.1 passed here;
# other podman versions may not use all of them.
step_calls() {
  local mounts bad
  say "mount_program calls (time, wrapper pid, argv or exit status):"
  sed 's/^/    /' "$CALLS"
  mounts=$(grep -c ' argv: -o ' "$CALLS" || true)
  check "mounts through mount_program ($mounts)" [ "$mounts" -gt 0 ]
  check "options ending in ,,volatile" grep -q ' argv: -o [^ ]*,,volatile ' "$CALLS"
  check "options ending in a comma" grep -q ' argv: -o [^ ]*, ' "$CALLS"
  check "read-only mount, lowerdir alone" grep -q ' argv: -o lowerdir=[^ ,]* ' "$CALLS"
  bad=$(grep ' exit ' "$CALLS" | grep -v ' exit 0$' || true)
  check "every call exited 0" [ -z "$bad" ]
  [[ -z $bad ]] || sed 's/^/    /' <<<"$bad"
}

# Checks that podman unmounted every layer it mounted, that every daemon
# exited, and that the daemons logged no error.
step_leftovers() {
  local left mounts
  left=$(wait_daemons) || true
  check "no daemon left running${left:+ (pids: ${left//$'\n'/ })}" [ -z "$left" ]
  mounts=$(mounts_under "$TMP")
  check "nothing mounted under $TMP${mounts:+ (${mounts//$'\n'/ })}" [ -z "$mounts" ]
  # pino's levels: 50 error, 60 fatal.
  local errors
  errors=$(grep -h '"level":[56]0' "$DAEMON_LOGS"/*.log 2>/dev/null | head -n 20 || true)
  check "no errors in daemon logs" [ -z "$errors" ]
  [[ -z $errors ]] || sed 's/^/    /' <<<"$errors"
}

step "podman info" step_info
step "podman import" step_import
needs "podman import" "podman build" && step "podman build" step_build
needs "podman build" "podman run --rm" && step "podman run --rm" step_run_rm
needs "podman build" "kept container" && step "kept container" step_kept
step "mount_program calls" step_calls
step "leftover mounts and daemons" step_leftovers

# --- summary -------------------------------------------------------------

echo
say "timings:"
printf '  %s\n' "${TIMINGS[@]}"
printf '  %-34s %7s s\n' total "$(elapsed "$START")"
say "${#PASSED[@]} checks passed, ${#FAILED[@]} failed"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  printf 'podman-test: FAIL: %s\n' "${FAILED[@]}"
  if [[ ${PODMAN_TEST_KEEP:-0} == 1 ]]; then
    say "the logs are in $TMP"
  else
    say "to keep the logs (podman's output, the calls, the daemon logs), run with PODMAN_TEST_KEEP=1"
  fi
  exit 1
fi
say "PASS"
