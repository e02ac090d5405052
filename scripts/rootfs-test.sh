#!/usr/bin/env bash
# End-to-end check that tsoverlay can serve a Debian root filesystem. The
# same apt and dpkg commands run in a chroot on kernel overlayfs and on
# tsoverlay, both over one debootstrapped lower layer. The two upper layers
# must then match in paths, types, modes, owners, whiteouts, opaque dirs
# and xattrs. Each merged tree then also serves as the root of a pivot_root
# in new namespaces whose pid 1 kills every process it can see. Prints the
# time of each step on both mounts.
#
# Usage: sudo scripts/rootfs-test.sh    (after `npm ci`, which builds dist/)
# Environment:
#   ROOTFS_CACHE   where the debootstrap root is kept between runs
#                  (default /var/cache/tsoverlay-test; empty: no cache)
#   DEBIAN_MIRROR  default http://deb.debian.org/debian
#   ROOTFS_KEEP    if set to 1, keep the temp dir (logs, uppers) on failure
#   ROOTFS_SELF_CHECK  if set to 1, use kernel overlayfs on both sides, to
#                  check that two kernel runs give no differences
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLI="$REPO/dist/cli.js"
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${ROOTFS_CACHE-/var/cache/tsoverlay-test}
PACKAGES=(hello less netbase)
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SIDES=(kernel ours)

# Paths left out of the upper comparison, as extended regexes on the path
# relative to the upper. Keep this list minimal and give the reason for each.
EXCLUDE_RE=(
)

# Overlay xattrs that only the kernel writes, as optional caches: origin
# (file handle of the lower, since ext4 can export handles) and impure.
# Their absence is not an error, so they are left out of the comparison
# and only counted.
OPTIONAL_XATTR_RE='^trusted\.overlay\.(origin|impure)$'

say() { printf 'rootfs-test: %s\n' "$*"; }
# Traps run inside whatever redirection was active when the signal came (a
# step's log file), so they report on copies of the original outputs.
exec 8>&1 9>&2
die() { printf 'rootfs-test: error: %s\n' "$*" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
  die "must run as root: it mounts overlays and bind mounts and runs chroot (try: sudo $0)"
fi
[[ -f $CLI ]] || die "$CLI is missing; run 'npm ci' (or 'npx tsc -p .') in $REPO first"
for tool in node findmnt getfattr chroot mount umount; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed"
done
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  apt-get install -y debootstrap >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y debootstrap >/dev/null; } ||
    die "installing debootstrap failed; install it with 'apt-get install debootstrap'"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tsoverlay-rootfs.XXXXXX")
BUILD_DIR=""       # a debootstrap in progress, removed if we stop early
declare -A DAEMON  # tsoverlay daemon pid per merged dir

# Mount targets at or below $1, deepest first.
mounts_under() {
  findmnt -rn -o TARGET | awk -v d="$1" '$0 == d || index($0, d "/") == 1' | LC_ALL=C sort -r
}

# Unmounts everything at or below $1. The last attempts are lazy, so an
# interrupted run cannot leave a mount behind.
unmount_under() {
  local dir=$1 target i
  for i in 1 2 3 4 5; do
    [[ -z $(mounts_under "$dir") ]] && return 0
    while read -r target; do
      [[ -n $target ]] || continue
      if [[ $i -lt 3 ]]; then umount "$target" 2>/dev/null || true
      else umount -l "$target" 2>/dev/null || true
      fi
    done < <(mounts_under "$dir")
  done
  [[ -z $(mounts_under "$dir") ]]
}

# Waits for a tsoverlay daemon to exit after its unmount. A daemon still
# running after 10 s gets SIGTERM (this script started it).
reap_daemon() {
  local merged=$1 pid=${DAEMON[$1]:-} i
  [[ -n $pid ]] || return 0
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { unset "DAEMON[$merged]"; return 0; }
    sleep 0.1
  done
  say "tsoverlay daemon $pid for $merged still runs 10 s after its unmount; stopping it"
  kill "$pid" 2>/dev/null || true
  unset "DAEMON[$merged]"
  return 1
}

cleanup() {
  local rc=$? merged
  set +e
  trap - INT TERM
  exec 1>&8 2>&9
  unmount_under "$TMP" || say "could not unmount everything under $TMP"
  for merged in "${!DAEMON[@]}"; do reap_daemon "$merged"; done
  if [[ -n $BUILD_DIR ]]; then
    unmount_under "$BUILD_DIR" && rm -rf --one-file-system "$BUILD_DIR"
  fi
  if [[ -n $(mounts_under "$TMP") ]]; then
    # Removing files through a leftover bind of /dev or /proc would be fatal.
    say "leaving $TMP in place: something is still mounted under it"
  elif [[ $rc -ne 0 && ${ROOTFS_KEEP:-0} == 1 ]]; then
    say "kept $TMP"
  else
    rm -rf --one-file-system "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say interrupted >&8; exit 130' INT
trap 'say terminated >&8; exit 143' TERM

# --- 1. the lower layer: a minbase Debian root ----------------------------

debootstrap_into() {
  local dir=$1 log="$TMP/debootstrap.log" start=$EPOCHREALTIME
  say "debootstrap --variant=minbase $SUITE into $dir"
  if ! debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >"$log" 2>&1; then
    tail -n 20 "$log"
    [[ -f $dir/debootstrap/debootstrap.log ]] && tail -n 20 "$dir/debootstrap/debootstrap.log"
    die "debootstrap failed (log lines above); check that $MIRROR is reachable"
  fi
  # debootstrap unmounts what it mounted, but make sure before caching.
  unmount_under "$dir" || die "unmounting what debootstrap left under $dir failed"
  say "debootstrap took $(elapsed "$start") s"
}

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

ROOTFS=""
if [[ -n $CACHE_DIR ]] && mkdir -p "$CACHE_DIR" 2>/dev/null && [[ -w $CACHE_DIR ]]; then
  cached="$CACHE_DIR/$SUITE-minbase"
  # Builds interrupted by SIGKILL leave NAME.new.PID behind.
  for stale in "$cached".new.*; do
    [[ -d $stale ]] || continue
    kill -0 "${stale##*.}" 2>/dev/null && continue
    unmount_under "$stale" && rm -rf --one-file-system "$stale"
  done
  if [[ ! -x $cached/usr/bin/apt-get ]]; then
    BUILD_DIR="$cached.new.$$"
    debootstrap_into "$BUILD_DIR"
    # -T: fail rather than move into a root another run finished first.
    if mv -T "$BUILD_DIR" "$cached" 2>/dev/null; then BUILD_DIR=""; fi
  else
    say "reusing $cached"
  fi
  ROOTFS=$cached
else
  [[ -z $CACHE_DIR ]] || say "cannot write $CACHE_DIR; building without a cache"
  ROOTFS="$TMP/rootfs"
  debootstrap_into "$ROOTFS"
fi
[[ -f $ROOTFS/etc/resolv.conf && ! -L $ROOTFS/etc/resolv.conf ]] ||
  die "$ROOTFS/etc/resolv.conf is not a regular file to bind the host's over"
# Anything in the lower changed after this moment was written through a mount.
touch "$TMP/start-stamp"

# --- 2. the two mounts ----------------------------------------------------

# Records the pid of the daemon `tsoverlay mount` left serving $1.
find_daemon() {
  local merged=$1 p cmd
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    if [[ $cmd == *"$CLI mount $merged "*"--foreground"* ]]; then
      DAEMON[$merged]=${p#/proc/}
      return 0
    fi
  done
  say "cannot find the tsoverlay daemon serving $merged"
  return 1
}

# mount_side SIDE DIR [EXTRA_OPTIONS]: an empty upper over the Debian root.
mount_side() {
  local side=$1 dir=$2 extra=${3:-}
  mkdir -p "$dir/upper" "$dir/work" "$dir/merged"
  local opts="lowerdir=$ROOTFS,upperdir=$dir/upper,workdir=$dir/work$extra"
  if [[ $side == kernel || ${ROOTFS_SELF_CHECK:-0} == 1 ]]; then
    mount -t overlay overlay -o "$opts" "$dir/merged"
  else
    # The daemon must not keep the copies of our outputs open.
    node "$CLI" mount -o "$opts" "$dir/merged" --log-file "$dir/tsoverlay.log" 8>&- 9>&-
    find_daemon "$dir/merged"
  fi
}

# unmount_side SIDE DIR: the tsoverlay one through its own umount command.
unmount_side() {
  local side=$1 merged=$2/merged
  if [[ $side == kernel || ${ROOTFS_SELF_CHECK:-0} == 1 ]]; then
    umount "$merged"
  else
    node "$CLI" umount "$merged" || return 1
    reap_daemon "$merged"
  fi
}

# Bind-mounts what apt and dpkg need inside the chroot, read-only where
# they allow it.
bind_chroot() {
  local m=$1 d
  for d in proc sys dev; do
    mount --bind "/$d" "$m/$d"
    mount -o remount,bind,ro "$m/$d"
  done
  mount --bind /etc/resolv.conf "$m/etc/resolv.conf"
  mount -o remount,bind,ro "$m/etc/resolv.conf"
}

unbind_chroot() {
  local m=$1 t rc=0
  for t in etc/resolv.conf dev sys proc; do umount "$m/$t" || rc=1; done
  return "$rc"
}

in_chroot() {
  local m=$1
  shift
  env -i PATH="$CHROOT_PATH" HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive \
    chroot "$m" "$@"
}

# --- 3. the steps, each run on both mounts --------------------------------

# Prints the status line of `passwd -S nobody` run as uid 65534. passwd is
# setuid root, so when setuid works it can read /etc/shadow and prints 7
# fields ("nobody L DATE 0 99999 7 -1"). Without setuid it prints 2
# fields ("nobody P").
setuid_probe() {
  env -i PATH="$CHROOT_PATH" LC_ALL=C \
    chroot --userspec=65534:65534 "$1" passwd -S nobody
}

step_update() { in_chroot "$1" apt-get -o Acquire::Retries=3 update; }
step_install() {
  in_chroot "$1" apt-get -o Dpkg::Use-Pty=0 install -y --no-install-recommends "${PACKAGES[@]}"
}
step_hello() { [[ $(in_chroot "$1" hello) == 'Hello, world!' ]]; }
# dpkg --verify prints one line per file whose checksum or metadata differs.
step_verify() {
  local out rc=0
  out=$(in_chroot "$1" dpkg --verify "${PACKAGES[@]}") || rc=$?
  printf '%s' "${out:+$out$'\n'}"
  [[ $rc -eq 0 && -z $out ]]
}
step_verify_all() { in_chroot "$1" dpkg --verify; }
step_setuid() {
  local out rc=0
  out=$(setuid_probe "$1") || rc=$?
  printf '%s\n' "$out"
  [[ $rc -eq 0 && $(awk '{ print NF }' <<<"$out") == 7 ]]
}

# The merged tree as the root of new mount and pid namespaces, as an init
# would use it after switching root. Inside, the host's /dev bind is dropped
# so the lower's own device nodes serve (mounted with `dev`, they need no
# copy-up). Then pid 1 of the namespace kills every other process it can
# see. The overlay must keep serving: the tsoverlay daemon runs outside the
# namespace, so the kill cannot reach it.
step_pivot() {
  local m=$1 pid=${DAEMON[$1]:-}
  unshare --mount --pid --fork --propagation private \
    sh -c 'cd "$1" && pivot_root . mnt && exec chroot . /bin/sh -s' pivot "$m" <<'EOF'
set -e
umount -l /mnt
umount -l /dev
echo probe >/dev/null
test "$(head -c 3 /dev/zero | od -An -tx1 | tr -d ' \n')" = 000000
sleep 600 &
sleep 600 &
kill -KILL -1
wait || true
test -f /etc/debian_version
hello
chroot --userspec=65534:65534 / passwd -S nobody | awk '{ print; exit NF == 7 ? 0 : 1 }'
echo "pivot_root probes passed as pid $$"
EOF
  if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
    echo "the tsoverlay daemon $pid died during the pivot_root step"
    return 1
  fi
  stat -c '%n %s' "$m/etc/debian_version"
}

STEPS=(update install hello verify verify_all setuid pivot)
declare -A STEP_LABEL=(
  [update]="apt-get update" [install]="apt-get install ${PACKAGES[*]}"
  [hello]="run hello" [verify]="dpkg --verify ${PACKAGES[*]}"
  [verify_all]="dpkg --verify (all)" [setuid]="setuid passwd -S"
  [pivot]="pivot_root, lower /dev, kill -KILL -1"
)
# A step is skipped on a mount where the step it needs did not succeed.
declare -A STEP_NEEDS=([install]=update [hello]=install [verify]=install [pivot]=install)
declare -A SECONDS_TAKEN PASSED
FAILURES=()

run_step() {
  local step=$1 side merged log start rc need=${STEP_NEEDS[$1]:-}
  for side in "${SIDES[@]}"; do
    if [[ -n $need && -z ${PASSED[$need,$side]:-} ]]; then
      say "skipping ${STEP_LABEL[$step]} on $side: ${STEP_LABEL[$need]} did not succeed"
      continue
    fi
    merged="$TMP/$side/merged"
    log="$TMP/$side/$step.log"
    start=$EPOCHREALTIME
    if "step_$step" "$merged" >"$log" 2>&1; then rc=0; else rc=$?; fi
    SECONDS_TAKEN[$step,$side]=$(elapsed "$start")
    if [[ $rc -eq 0 ]]; then
      PASSED[$step,$side]=1
    else
      FAILURES+=("${STEP_LABEL[$step]} failed on $side (exit $rc)")
      say "${STEP_LABEL[$step]} failed on $side (exit $rc); last lines of its output:"
      tail -n 25 "$log" | sed 's/^/    /'
    fi
  done
}

for side in "${SIDES[@]}"; do
  mount_side "$side" "$TMP/$side" ",dev,suid"
  bind_chroot "$TMP/$side/merged"
done
for step in "${STEPS[@]}"; do
  say "${STEP_LABEL[$step]}"
  run_step "$step"
done

for side in "${SIDES[@]}"; do
  if [[ -f $TMP/$side/verify_all.log ]]; then
    say "dpkg --verify output on $side ($(wc -l <"$TMP/$side/verify_all.log") lines):"
    sed 's/^/    /' "$TMP/$side/verify_all.log"
  fi
done
if [[ -f $TMP/kernel/verify_all.log && -f $TMP/ours/verify_all.log ]] &&
  ! cmp -s "$TMP/kernel/verify_all.log" "$TMP/ours/verify_all.log"; then
  FAILURES+=("dpkg --verify output differs between kernel and tsoverlay")
  diff -u "$TMP/kernel/verify_all.log" "$TMP/ours/verify_all.log" || true
fi

# --- 4. unmount, bind mounts first ----------------------------------------

for side in "${SIDES[@]}"; do
  if ! unbind_chroot "$TMP/$side/merged"; then
    FAILURES+=("unmounting the bind mounts in $side/merged failed")
    for t in etc/resolv.conf dev sys proc; do unmount_under "$TMP/$side/merged/$t" || true; done
  fi
  unmount_side "$side" "$TMP/$side" || FAILURES+=("unmount of the $side overlay failed")
  unmount_under "$TMP/$side/merged" || true
done

# The probe must fail where setuid is off, or it proves nothing.
for side in "${SIDES[@]}"; do
  dir="$TMP/nosuid-$side"
  # FUSE mounts are nosuid unless asked, so tsoverlay gets just dev here.
  if [[ $side == kernel || ${ROOTFS_SELF_CHECK:-0} == 1 ]]; then
    mount_side "$side" "$dir" ",nosuid"
  else
    mount_side ours "$dir" ",dev"
  fi
  out=$(setuid_probe "$dir/merged" 2>&1 || true)
  if [[ $(awk '{ print NF }' <<<"$out") == 7 ]]; then
    FAILURES+=("setuid probe passed on $side without suid: '$out'")
  fi
  say "setuid probe on $side without suid: $out"
  unmount_side "$side" "$dir" || FAILURES+=("unmount of the nosuid $side overlay failed")
done

# --- 5. compare the uppers ------------------------------------------------

# One line per path of an upper: path, type (whiteout for a 0/0 char
# device), mode, owner, link count (not for dirs), symlink target, xattrs.
describe_upper() {
  local upper=$1 out=$2
  # The upper's root is listed as "." (its xattrs belong to the format too).
  (cd "$upper" && find . -printf '%P\t%y\t%m\t%U:%G\t%n\t%l\n' | sed 's/^\t/.\t/') >"$out.find"
  (cd "$upper" && find . -mindepth 1 -type c -printf '%P\0' |
    xargs -0 -r stat -c $'%n\t%t:%T') >"$out.rdev"
  (cd "$upper" && getfattr -R -h -P -d -m - -e hex .) >"$out.xattr" 2>"$out.xattr-errors"
  if [[ -s $out.xattr-errors ]]; then
    say "getfattr complained about $upper:"
    sed 's/^/    /' "$out.xattr-errors"
  fi
  awk -F '\t' -v optional="$OPTIONAL_XATTR_RE" -v info="$out.optional" '
    FILENAME ~ /rdev$/ { rdev[$1] = $2; next }
    FILENAME ~ /xattr$/ {
      if ($0 ~ /^# file: /) { file = substr($0, 9); next }
      if ($0 == "") next
      eq = index($0, "="); name = substr($0, 1, eq - 1); value = substr($0, eq + 1)
      if (name ~ optional) { print file "\t" name > info; next }
      if (name == "trusted.overlay.opaque" && value == "0x79") value = "y"
      # The kernel makes a random uuid for each new upper: compare presence.
      if (name == "trusted.overlay.uuid") value = "(uuid)"
      xattrs[file] = xattrs[file] " " name "=" value
      next
    }
    {
      type = $2
      if (type == "c") type = rdev[$1] == "0:0" ? "whiteout" : "chr " rdev[$1]
      # The kernel hard-links its whiteouts to one shared inode while it can,
      # an optimisation the format does not require: their counts are noise.
      nlink = type == "d" || type == "whiteout" ? "-" : $5
      print $1 "\t" type "\t" $3 "\t" $4 "\t" nlink "\t" $6 "\t" substr(xattrs[$1], 2)
    }' "$out.rdev" "$out.xattr" "$out.find" | LC_ALL=C sort >"$out.all"
  touch "$out.optional"
  if [[ ${#EXCLUDE_RE[@]} -gt 0 ]]; then
    local re
    re=$(IFS='|'; echo "${EXCLUDE_RE[*]}")
    awk -F '\t' -v re="^($re)\$" '$1 !~ re' "$out.all" >"$out"
  else
    cp "$out.all" "$out"
  fi
}

# Counts the differing paths by kind, and each xattr by the side that has it
# alone, so the cause of a long diff is clear from a few lines.
summarize_differences() {
  awk -F '\t' '
    function xattr_names(field, names,    n, i, parts, tokens) {
      delete names
      n = split(field, tokens, " ")
      for (i = 1; i <= n; i++) { split(tokens[i], parts, "="); names[parts[1]] = tokens[i] }
    }
    NR == FNR { kernel[$1] = $0; next }
    { ours[$1] = $0 }
    END {
      split("path type mode owner links target xattrs", field_name, " ")
      for (p in kernel) if (!(p in ours)) kinds["only on kernel"]++
      for (p in ours) {
        if (!(p in kernel)) { kinds["only on tsoverlay"]++; continue }
        split(kernel[p], k, "\t"); split(ours[p], o, "\t")
        for (i = 2; i <= 7; i++) if (k[i] != o[i]) kinds[field_name[i]]++
        if (k[7] == o[7]) continue
        xattr_names(k[7], kx); xattr_names(o[7], ox)
        for (x in kx) if (!(x in ox)) xattrs[x " on kernel only"]++
          else if (kx[x] != ox[x]) xattrs[x " with other values"]++
        for (x in ox) if (!(x in kx)) xattrs[x " on tsoverlay only"]++
      }
      for (kind in kinds) printf "    %s: %d path(s)\n", kind, kinds[kind]
      for (x in xattrs) printf "    xattr %s: %d path(s)\n", x, xattrs[x]
    }' "$1" "$2" | sort
}

for side in "${SIDES[@]}"; do describe_upper "$TMP/$side/upper" "$TMP/$side.upper"; done
K="$TMP/kernel.upper"
O="$TMP/ours.upper"
compared=$(cut -f1 "$K" "$O" | LC_ALL=C sort -u | wc -l)
excluded=$(( $(wc -l <"$K.all") - $(wc -l <"$K") ))
differences=$(LC_ALL=C comm -3 "$K" "$O" | sed 's/^\t//' | cut -f1 | LC_ALL=C sort -u | wc -l)
if [[ $differences -ne 0 ]]; then
  say "upper layers differ (- kernel, + tsoverlay; path, type, mode, owner, links, target, xattrs):"
  diff -U0 "$K" "$O" | grep -v '^@@' | head -n 400 || true
  [[ $(diff -U0 "$K" "$O" | grep -vc '^@@') -le 400 ]] ||
    say "(diff cut at 400 lines; ROOTFS_KEEP=1 keeps $K and $O)"
  say "differences by kind:"
  summarize_differences "$K" "$O"
  FAILURES+=("the upper layers differ in $differences paths")
fi
say "optional overlay xattrs (not compared): kernel $(wc -l <"$K.optional"), tsoverlay $(wc -l <"$O.optional")"

# --- 6. nothing changed in the lower, nothing left mounted ----------------

changed=$(find "$ROOTFS" -cnewer "$TMP/start-stamp" -print 2>/dev/null | head -n 20)
if [[ -n $changed ]]; then
  FAILURES+=("the lower layer was modified through a mount")
  say "changed in the lower layer $ROOTFS:"
  sed 's/^/    /' <<<"$changed"
  # A damaged cache would spoil later runs.
  [[ $ROOTFS == "$TMP"/* ]] || rm -rf --one-file-system "$ROOTFS"
fi
left=$(mounts_under "$TMP")
if [[ -n $left ]]; then
  FAILURES+=("still mounted under $TMP: ${left//$'\n'/ }")
fi

# --- summary --------------------------------------------------------------

echo
printf '%-36s %9s %9s %7s\n' step kernel tsoverlay ratio
for step in "${STEPS[@]}"; do
  k=${SECONDS_TAKEN[$step,kernel]:-}
  o=${SECONDS_TAKEN[$step,ours]:-}
  ratio=$(awk -v k="$k" -v o="$o" 'BEGIN { if (k > 0 && o != "") printf "%.1fx", o / k; else print "-" }')
  printf '%-36s %9s %9s %7s\n' "${STEP_LABEL[$step]}" "${k:--}" "${o:--}" "$ratio"
done
say "$excluded paths excluded from the comparison"
echo "rootfs: $compared paths compared, $differences differences"
if [[ ${#FAILURES[@]} -gt 0 ]]; then
  printf 'rootfs-test: FAIL: %s\n' "${FAILURES[@]}"
  exit 1
fi
say "PASS"
