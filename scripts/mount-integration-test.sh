#!/usr/bin/env bash
# Checks that tsoverlay mounts like any other filesystem through the
# standard tools. util-linux mount runs /sbin/mount.fuse3, which runs
# `tsoverlay SOURCE MERGED -o OPTS`.
#   steps 1-8: mount -t, an fstab line, findmnt and /proc/mounts, umount,
#     busy and crashed mounts, signals and bad options
#   steps 9-10: a non-empty mount point and layer mounts that move away,
#     with kernel overlayfs as the reference
#   steps 11-12: the root layouts of docs/boot.md rehearsed in a chroot,
#     and the initrd helper in examples/initrd
# Each check prints PASS or FAIL. The last line is the summary, and the exit
# status is 1 when any check failed.
#
# Usage: sudo scripts/mount-integration-test.sh   (after `npm ci` built dist/)
# Environment:
#   MIT_STEPS   space-separated step numbers to run (default: all, 1-12)
#   MIT_KEEP    if 1, keep the temp dir (logs, layers) at the end
#
# The script re-runs itself in a private mount namespace. mount(8) starts
# helpers with PATH removed from the environment, so the /bin/sh that
# mount.fuse3 runs finds `tsoverlay` only in the shell's default PATH, which
# starts with /usr/local/sbin. Inside the namespace, and only there, a temp
# dir holding a logging `tsoverlay` wrapper is bind-mounted over
# /usr/local/sbin; the host's /usr/local/sbin and /etc/fstab stay untouched.
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLI=$REPO/dist/cli.js
SELF=$REPO/scripts/$(basename "${BASH_SOURCE[0]}")
WAIT_EXIT=5    # seconds a daemon may take to exit after its mount is gone
WAIT_MOUNT=15  # seconds a mount may take to appear

die() { printf 'mount-integration: error: %s\n' "$*" >&2; exit 2; }

if [[ ${MIT_NAMESPACE:-} != 1 ]]; then
  [[ $(id -u) -eq 0 ]] || die "must run as root: it mounts filesystems (try: sudo $0)"
  for tool in node mount umount findmnt unshare pgrep timeout md5sum chroot ldd stat; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed"
  done
  [[ -x /sbin/mount.fuse3 ]] || die "/sbin/mount.fuse3 is missing; install the fuse3 package"
  [[ -c /dev/fuse ]] || die "/dev/fuse is missing; load the fuse module (modprobe fuse)"
  [[ -f $CLI ]] || die "$CLI is missing; run 'npm ci' (or 'npx tsc -p .') in $REPO first"
  exec unshare --mount --propagation private -- env MIT_NAMESPACE=1 bash "$SELF" "$@"
fi

NODE=$(command -v node)
T=$(mktemp -d /tmp/tsoverlay-mit.XXXXXX)
RESULTS=$T/results   # one PASS/FAIL line per check, written by the step subshells
PIDS=$T/pids         # "pid start-time" of processes this script started
MOUNTS=$T/mounts     # mount points this script mounted on, for the cleanup
DAEMON_LOG=$T/daemon.log
ARGV_LOG=$T/argv.log
: >"$RESULTS"
: >"$PIDS"
: >"$MOUNTS"

is_mounted() { awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; }
mount_count() { awk -v m="$1" '$5 == m { n++ } END { print n + 0 }' /proc/self/mountinfo; }
# Succeeds while any thread of $1 is not a zombie. A zombie group leader can
# outlive its other threads, whose exit closes the /dev/fuse fd.
alive() {
  local task st
  for task in /proc/"$1"/task/*/stat; do
    st=$(cat "$task" 2>/dev/null) || continue
    st=${st##*) }
    [[ ${st%% *} == Z ]] || return 0
  done
  return 1
}

# Prints the start time of process $1 (field 22 of its stat), which
# distinguishes it from a later process that reuses the pid.
start_time() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  set -- $st
  echo "${20}"
}

# Prints the recorded pids that still belong to the processes this script
# started.
own_processes() {
  local pid start
  while read -r pid start; do
    [[ $(start_time "$pid" 2>/dev/null) == "$start" ]] && alive "$pid" && echo "$pid"
  done < <(tac "$PIDS")
}

cleanup() {
  local rc=$? pid m
  set +e
  trap - EXIT INT TERM
  for pid in $(own_processes); do kill -TERM "$pid"; done
  for _ in $(seq 30); do
    [[ -z $(own_processes) ]] && break
    sleep 0.1
  done
  for m in $(tac "$MOUNTS"); do
    for _ in 1 2 3; do
      is_mounted "$m" || break
      umount "$m" 2>/dev/null || umount -l "$m"
    done
  done
  for pid in $(own_processes); do kill -KILL "$pid"; done
  is_mounted /usr/local/sbin && umount -l /usr/local/sbin
  if grep -q " ${T}[/ ]" /proc/self/mountinfo; then
    printf 'mount-integration: mounts remain under %s, so it was not removed\n' "$T" >&2
  elif [[ ${MIT_KEEP:-} == 1 ]]; then
    printf 'mount-integration: kept %s\n' "$T" >&2
  else
    rm -rf "$T"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pass() { printf 'PASS %s\n' "$1" | tee -a "$RESULTS"; }
fail() {
  printf 'FAIL %s\n' "$1" | tee -a "$RESULTS"
  local line
  for line in "${@:2}"; do printf '       %s\n' "$line"; done
}
info() { printf '     %s\n' "$*"; }
# check NAME CONDITION [DETAIL...]: evaluates the shell condition, prints
# PASS or FAIL (with the details), and never stops the step.
check() {
  if eval "$2"; then pass "$1"; else fail "$1" "${@:3}"; fi
}

# Runs a command without stopping the step, and sets RC, OUT and ERR.
run() {
  OUT=$("$@" 2>"$T/stderr") && RC=0 || RC=$?
  ERR=$(<"$T/stderr")
}

track_pid() { echo "$1 $(start_time "$1" || echo gone)" >>"$PIDS"; }
track_mount() { echo "$1" >>"$MOUNTS"; }

# Prints the pid of the newest daemon serving mount point $1 (its argv
# contains `cli.js mount MERGED -o ...`).
daemon_pid() { pgrep -n -f -- "cli\\.js mount $1 -o" || true; }

# Records a mount of $1 and sets DPID to its daemon's pid.
register() {
  track_mount "$1"
  DPID=$(daemon_pid "$1")
  [[ -z $DPID ]] || track_pid "$DPID"
}

wait_mounted() {
  local i
  for i in $(seq $((WAIT_MOUNT * 10))); do
    is_mounted "$1" && return 0
    sleep 0.1
  done
  return 1
}

wait_exit() {
  local i
  for i in $(seq $((WAIT_EXIT * 10))); do
    alive "$1" || return 0
    sleep 0.1
  done
  return 1
}

# Succeeds when daemon $1 logged a clean stop: "unmounted", and nothing at
# error (50) or fatal (60) level. The log contains pino JSON lines.
logged_clean_stop() {
  grep -qE "\"pid\":$1,.*\"msg\":\"unmounted\"" "$DAEMON_LOG" &&
    ! grep -qE "\"level\":(50|60),\"time\":[0-9]+,\"pid\":$1," "$DAEMON_LOG"
}

# Unmounts $1 with umount(8), unlazily or lazily, and waits for daemon $2.
unmount_and_wait() {
  if is_mounted "$1"; then umount "$1" 2>/dev/null || umount -l "$1"; fi
  [[ -z ${2:-} ]] || wait_exit "$2" || true
}

# Creates a layer stack in $T/$1: two lowers, an empty upper and workdir.
# Sets S (the stack dir), M (its mount point) and OPTS (the -o string).
new_stack() {
  S=$T/$1
  mkdir -p "$S"/{lower1/dir,lower2/dir,upper,work,merged}
  echo "a from lower1" >"$S/lower1/a"
  echo "a from lower2" >"$S/lower2/a"
  echo "b from lower2" >"$S/lower2/b"
  echo "x from lower1" >"$S/lower1/dir/x"
  echo "y from lower2" >"$S/lower2/dir/y"
  M=$S/merged
  OPTS="lowerdir=$S/lower1:$S/lower2,upperdir=$S/upper,workdir=$S/work"
}

# Mounts $1 with `mount -t fuse.tsoverlay tsoverlay $1 -o $2`, as an admin
# would type it.
mount_fuse() {
  run mount -t fuse.tsoverlay tsoverlay "$1" -o "$2"
  if is_mounted "$1"; then register "$1"; else DPID=""; fi
}

# Prints a sorted listing of a tree: path, type, permissions, link target
# and content digest. Times and inode numbers are left out.
snapshot() {
  (
    cd "$1"
    find . -mindepth 1 | sort | while IFS= read -r p; do
      if [[ -L $p ]]; then
        printf '%s link %s\n' "$p" "$(readlink "$p")"
      elif [[ -d $p ]]; then
        printf '%s dir %s\n' "$p" "$(stat -c %a "$p")"
      elif [[ -f $p ]]; then
        printf '%s file %s %s\n' "$p" "$(stat -c %a "$p")" "$(md5sum <"$p" | cut -c1-32)"
      else
        printf '%s %s\n' "$p" "$(stat -c '%F %a' "$p")"
      fi
    done
  )
}

is_whiteout() { [[ $(stat -c '%F %t:%T' "$1" 2>/dev/null) == 'character special file 0:0' ]]; }

# Creates the wrapper that mount.fuse3 runs. It logs its argv and the PATH
# it was given, then runs the checkout's CLI with a log file, which records
# how the daemon stops.
setup_wrapper() {
  mkdir -p "$T/bin"
  cat >"$T/bin/tsoverlay" <<EOF
#!/bin/bash
# Test wrapper: records how it was called, then runs the daemon.
caller_path=\$(tr '\\0' '\\n' </proc/\$\$/environ | sed -n 's/^PATH=//p')
{ printf 'caller PATH=%s argv:' "\${caller_path:-(none)}"; printf ' %q' "\$0" "\$@"; printf '\\n'; } >>'$ARGV_LOG'
printf '%s\\0' "\$@" >'$T/last-argv'
exec '$NODE' '$CLI' "\$@" --log-file '$DAEMON_LOG'
EOF
  chmod 755 "$T/bin/tsoverlay"
  # Keep the contents of /usr/local/sbin reachable next to the wrapper.
  local f
  for f in /usr/local/sbin/*; do
    [[ -e $f && $(basename "$f") != tsoverlay ]] && ln -s "$f" "$T/bin/"
  done
  mount --bind "$T/bin" /usr/local/sbin
  export PATH=$T/bin:$PATH
}

# ---------------------------------------------------------------------------

step1() {
  echo "== step 1: mount -t fuse.tsoverlay through mount.fuse3"
  new_stack s1
  mount_fuse "$M" "$OPTS"
  check "1.1 mount -t fuse.tsoverlay exits 0" '[[ $RC == 0 ]]' "exit $RC: $ERR"
  info "mount.fuse3 ran: $(tail -n1 "$ARGV_LOG" 2>/dev/null)"
  local -a args=()
  [[ -f $T/last-argv ]] && mapfile -d '' args <"$T/last-argv"
  check "1.2 helper gets SOURCE MERGED -o OPTS" \
    '[[ ${args[0]:-} == tsoverlay && ${args[1]:-} == "$M" && ${args[2]:-} == -o &&
      ${args[3]:-} == *"$OPTS"* ]]'
  check "1.3 lower files visible" \
    '[[ $(cat "$M/a" 2>&1) == "a from lower1" && $(cat "$M/b" 2>&1) == "b from lower2" &&
      $(ls "$M/dir" 2>&1 | tr "\n" " ") == "x y " ]]'
  echo "new through mount" >"$M/new" || true
  check "1.4 new file lands in upper" '[[ $(cat "$S/upper/new" 2>&1) == "new through mount" ]]'
  echo "appended" >>"$M/b" || true
  check "1.5 write copies lower file up" \
    '[[ $(cat "$S/upper/b" 2>&1) == $'"'"'b from lower2\nappended'"'"' &&
      $(cat "$S/lower2/b") == "b from lower2" ]]'
  rm -f "$M/a" || true
  check "1.6 delete leaves whiteout in upper" 'is_whiteout "$S/upper/a"'
  unmount_and_wait "$M" "$DPID"

  # The legacy form names the program by absolute path in the source, so
  # it needs no PATH lookup at all.
  new_stack s1b
  run mount -t fuse "$T/bin/tsoverlay#tsoverlay" "$M" -o "$OPTS"
  if is_mounted "$M"; then register "$M"; else DPID=""; fi
  check "1.7 mount -t fuse PROGRAM#SOURCE works" \
    '[[ $RC == 0 && $(findmnt -n -o FSTYPE "$M") == fuse.tsoverlay &&
      $(cat "$M/a" 2>&1) == "a from lower1" ]]' "exit $RC: $ERR"
  unmount_and_wait "$M" "$DPID"
}

step2() {
  echo "== step 2: fstab line of type fuse.tsoverlay"
  new_stack s2
  local fstab=$T/fstab
  # nofail and x-systemd.* are for mount(8) and systemd, so the program
  # must not see them.
  printf 'tsoverlay %s fuse.tsoverlay %s,nofail,x-systemd.requires-mounts-for=%s 0 0\n' \
    "$M" "$OPTS" "$S/lower1" >"$fstab"
  info "fstab: $(cat "$fstab")"
  run mount -T "$fstab" "$M"
  if is_mounted "$M"; then register "$M"; fi
  check "2.1 mount -T FSTAB MERGED works" \
    '[[ $RC == 0 && $(cat "$M/a" 2>&1) == "a from lower1" ]]' "exit $RC: $ERR"
  check "2.2 fstab-only options not passed on" \
    '! tail -n1 "$ARGV_LOG" | grep -qE "nofail|x-systemd"' "$(tail -n1 "$ARGV_LOG")"
  unmount_and_wait "$M" "$DPID"

  run mount -a -T "$fstab"
  if is_mounted "$M"; then register "$M"; fi
  check "2.3 mount -a -T FSTAB works" \
    '[[ $RC == 0 && $(cat "$M/b" 2>&1) == "b from lower2" ]]' "exit $RC: $ERR"
  # Kernel overlayfs: a second `mount -a` prints "already mounted" and exits 0.
  run mount -a -T "$fstab"
  local count
  count=$(mount_count "$M")
  [[ $count -lt 2 ]] || register "$M"
  check "2.4 second mount -a is a no-op" '[[ $RC == 0 && $count == 1 ]]' \
    "exit $RC, $count mounts on MERGED: $ERR"
  while is_mounted "$M"; do umount "$M" || umount -l "$M"; done
  wait_exit "$DPID" || true
}

step3() {
  echo "== step 3: findmnt and /proc/mounts show type and layers"
  new_stack s3
  mount_fuse "$M" "$OPTS"
  local fstype source line
  fstype=$(findmnt -n -o FSTYPE "$M" 2>&1 || true)
  source=$(findmnt -n -o SOURCE "$M" 2>&1 || true)
  info "findmnt SOURCE: $source"
  check "3.1 findmnt type is fuse.tsoverlay" '[[ $fstype == fuse.tsoverlay ]]' "$fstype"
  check "3.2 findmnt source names lowerdir" '[[ $source == *"lowerdir=$S/lower1:$S/lower2"* ]]'
  check "3.3 findmnt source names upperdir" '[[ $source == *"upperdir=$S/upper"* ]]'
  check "3.4 findmnt source names workdir" '[[ $source == *"workdir=$S/work"* ]]'
  line=$(awk -v m="$M" '$2 == m' /proc/mounts)
  check "3.5 /proc/mounts has type and layers" \
    '[[ $(awk "{ print \$3 }" <<<"$line") == fuse.tsoverlay &&
      $line == *"lowerdir=$S/lower1:$S/lower2"* && $line == *"upperdir=$S/upper"* &&
      $line == *"workdir=$S/work"* ]]' "$line"
  unmount_and_wait "$M" "$DPID"
}

step4() {
  echo "== step 4: umount stops the daemon"
  new_stack s4
  mount_fuse "$M" "$OPTS"
  local pid=$DPID
  run umount "$M"
  check "4.1 umount MERGED exits 0" '[[ $RC == 0 ]]' "exit $RC: $ERR"
  check "4.2 MERGED no longer mounted" '! is_mounted "$M"'
  check "4.3 daemon exits within ${WAIT_EXIT}s" 'wait_exit "$pid"'
  check "4.4 daemon log shows clean stop" 'logged_clean_stop "$pid"'

  mount_fuse "$M" "$OPTS"
  pid=$DPID
  run "$NODE" "$CLI" umount "$M"
  check "4.5 tsoverlay umount exits 0" '[[ $RC == 0 && -z $ERR ]]' "exit $RC: $ERR"
  check "4.6 MERGED no longer mounted" '! is_mounted "$M"'
  check "4.7 daemon exits, log clean" 'wait_exit "$pid" && logged_clean_stop "$pid"'
  info "a daemon started by mount(8) is not our child: its exit status shows only in step 7"
}

# Starts a process with its cwd in $1/dir and $1/b open on fd 3. Sets HOLDER.
start_holder() {
  (cd "$1/dir" && exec sleep 300) 3<"$1/b" &
  HOLDER=$!
  track_pid "$HOLDER"
  sleep 0.3
}

stop_holder() {
  kill "$HOLDER" 2>/dev/null || true
  wait "$HOLDER" 2>/dev/null || true
}

step5() {
  echo "== step 5: unmounting while files are open"
  new_stack s5
  mount_fuse "$M" "$OPTS"
  local pid=$DPID
  start_holder "$M"

  run umount "$M"
  check "5.1 plain umount fails as busy" '[[ $RC != 0 && $ERR == *busy* ]]' "exit $RC: $ERR"
  check "5.2 mount stays after failed umount" 'is_mounted "$M"'

  run "$NODE" "$CLI" umount "$M"
  info "tsoverlay umount while busy: exit $RC, stderr: ${ERR:-(none)}"
  if [[ $RC != 0 ]]; then
    check "5.3 tsoverlay umount says busy" '[[ $ERR == *busy* ]]'
    check "5.4 mount kept after refusal" 'is_mounted "$M"'
    umount -l "$M" || true
  else
    check "5.3 tsoverlay umount says busy" '[[ $ERR == *busy* ]]'
    check "5.4 MERGED detached from the tree" '! is_mounted "$M"'
  fi
  check "5.5 open file still readable" \
    '[[ $(cat "/proc/$HOLDER/fd/3" 2>&1) == "b from lower2" ]]'
  check "5.6 open cwd still listable" \
    '[[ $(ls "/proc/$HOLDER/cwd/" 2>&1 | tr "\n" " ") == "x y " ]]'
  check "5.7 daemon serves until last close" 'alive "$pid"'
  stop_holder
  check "5.8 daemon exits after last close" 'wait_exit "$pid" && logged_clean_stop "$pid"'

  mount_fuse "$M" "$OPTS"
  pid=$DPID
  start_holder "$M"
  run umount -l "$M"
  check "5.9 umount -l detaches busy mount" '[[ $RC == 0 ]] && ! is_mounted "$M"' "exit $RC: $ERR"
  check "5.10 open file readable after -l" \
    '[[ $(cat "/proc/$HOLDER/fd/3" 2>&1) == "b from lower2" ]]'
  stop_holder
  check "5.11 daemon exits after last close" 'wait_exit "$pid" && logged_clean_stop "$pid"'
}

# Writes a mix of changes through $1: new files, copy-ups, whiteouts.
write_changes() {
  mkdir "$1/newdir"
  local i
  for i in $(seq 20); do echo "file $i" >"$1/newdir/f$i"; done
  echo "appended" >>"$1/b"
  chmod 600 "$1/dir/x"
  rm "$1/a" "$1/dir/y"
  ln -s newdir/f1 "$1/link"
  dd if=/dev/urandom of="$1/big" bs=1M count=4 status=none
}

# Checks that a dead mount fails at once with ENOTCONN instead of hanging.
check_dead_mount() {
  run timeout 5 ls "$M"
  check "$1 dead mount fails at once" '[[ $RC != 0 && $RC != 124 ]]' "exit $RC"
  check "$1.1 error is ENOTCONN" '[[ $ERR == *"Transport endpoint is not connected"* ]]' "$ERR"
}

differences() { diff <(echo "$1") <(echo "$2") | head -20 | tr '\n' '|'; }

step6() {
  echo "== step 6: daemon killed with SIGKILL"
  new_stack s6
  mount_fuse "$M" "$OPTS"
  local pid=$DPID before after
  if [[ -z $pid ]]; then
    fail "6.0 mount for the kill test" "exit $RC: $ERR"
    return
  fi
  write_changes "$M" || true
  sync
  # Written after the sync: write(2) returned, so the data is in the upper.
  echo "after sync" >"$M/unsynced" || true
  before=$(snapshot "$M")
  kill -KILL "$pid"
  wait_exit "$pid" || true
  check_dead_mount 6.1
  check "6.2 findmnt still lists dead mount" 'is_mounted "$M"'
  run "$NODE" "$CLI" umount "$M"
  check "6.3 tsoverlay umount clears it" '[[ $RC == 0 ]] && ! is_mounted "$M"' "exit $RC: $ERR"

  mount_fuse "$M" "$OPTS"
  pid=$DPID
  check "6.4 remount of same upper works" '[[ $RC == 0 ]]' "exit $RC: $ERR"
  after=$(snapshot "$M" 2>&1 || true)
  check "6.5 remount shows all writes" '[[ "$after" == "$before" ]]' \
    "diff: $(differences "$before" "$after")"

  if [[ -z $pid ]]; then return; fi
  echo "round 2" >"$M/round2" || true
  rm -f "$M/newdir/f2" || true
  before=$(snapshot "$M")
  kill -KILL "$pid"
  wait_exit "$pid" || true
  check_dead_mount 6.6
  run umount -l "$M"
  check "6.7 umount -l clears it" '[[ $RC == 0 ]] && ! is_mounted "$M"' "exit $RC: $ERR"
  mount_fuse "$M" "$OPTS"
  pid=$DPID
  after=$(snapshot "$M" 2>&1 || true)
  check "6.8 second remount shows all writes" '[[ $RC == 0 && "$after" == "$before" ]]' \
    "exit $RC; diff: $(differences "$before" "$after")"
  unmount_and_wait "$M" "$pid"

  # The upper the killed daemons left must read the same under the kernel.
  run mount -t overlay overlay -o "$OPTS" "$M"
  if is_mounted "$M"; then track_mount "$M"; fi
  after=$(snapshot "$M" 2>&1 || true)
  check "6.9 kernel overlay shows same view" '[[ $RC == 0 && "$after" == "$before" ]]' \
    "exit $RC; diff: $(differences "$before" "$after")"
  unmount_and_wait "$M"
}

# Waits at most WAIT_EXIT seconds for child $1. Returns its exit status, or
# 124 on timeout.
timeout_wait() {
  wait_exit "$1" || return 124
  wait "$1"
}

# Runs the daemon in the foreground as our child and stops it with signal $2.
signal_foreground() {
  local n=$1 sig=$2 log=$T/fg-$2.log rc
  "$NODE" "$CLI" mount -f -o "$OPTS" "$M" 2>"$log" &
  local pid=$!
  track_pid "$pid"
  track_mount "$M"
  if ! wait_mounted "$M"; then
    fail "$n foreground mount for SIG$sig" "$(head -c 500 "$log")"
    return
  fi
  kill "-$sig" "$pid"
  timeout_wait "$pid" && rc=0 || rc=$?
  check "$n SIG$sig: foreground exits 0" '[[ $rc == 0 ]]' "exit $rc"
  check "$n.1 SIG$sig: MERGED unmounted" '! is_mounted "$M"'
  check "$n.2 SIG$sig: log shows clean stop" 'grep -q "\"msg\":\"unmounted\"" "$log"'
}

# Signals a daemon that mount(8) started.
signal_background() {
  local n=$1 sig=$2
  mount_fuse "$M" "$OPTS"
  local pid=$DPID
  kill "-$sig" "$pid"
  check "$n SIG$sig: daemon exits" 'wait_exit "$pid"'
  check "$n.1 SIG$sig: MERGED unmounted" '! is_mounted "$M"'
  check "$n.2 SIG$sig: log shows clean stop" 'logged_clean_stop "$pid"'
}

step7() {
  echo "== step 7: SIGTERM and SIGINT unmount cleanly"
  new_stack s7
  signal_foreground 7.1 TERM
  signal_foreground 7.2 INT
  signal_background 7.3 TERM
  signal_background 7.4 INT

  # SIGTERM while a file is open: the name must not turn into a dead
  # endpoint, and the daemon must exit 0 once the last file closes.
  local log=$T/fg-busy.log rc
  "$NODE" "$CLI" mount -f -o "$OPTS" "$M" 2>"$log" &
  local pid=$!
  track_pid "$pid"
  if ! wait_mounted "$M"; then
    fail "7.5 foreground mount for busy SIGTERM" "$(head -c 500 "$log")"
    return
  fi
  start_holder "$M"
  kill -TERM "$pid"
  sleep 1
  run timeout 5 stat "$M"
  info "after SIGTERM while busy: mounted=$(is_mounted "$M" && echo yes || echo no)," \
    "daemon alive=$(alive "$pid" && echo yes || echo no)"
  check "7.5 SIGTERM while busy: no dead mount" '[[ $RC == 0 ]]' "$ERR"
  stop_holder
  timeout_wait "$pid" && rc=0 || rc=$?
  check "7.6 SIGTERM while busy: exits 0" '[[ $rc == 0 ]]' "exit $rc"
  check "7.7 SIGTERM while busy: unmounted" '! is_mounted "$M"'
}

step8() {
  echo "== step 8: bad options through mount -t fuse.tsoverlay"
  new_stack s8
  local L=$S/lower1 U=$S/upper W=$S/work
  local -a cases=(
    "unknown option|lowerdir=$L,upperdir=$U,workdir=$W,bogus|bogus"
    "missing lowerdir|upperdir=$U,workdir=$W|lowerdir"
    "upperdir without workdir|lowerdir=$L,upperdir=$U|workdir"
    "missing layer directory|lowerdir=$S/nonexistent,upperdir=$U,workdir=$W|$S/nonexistent"
    "unsupported value|lowerdir=$L,upperdir=$U,workdir=$W,index=on|index=on"
    "workdir same as upperdir|lowerdir=$L,upperdir=$U,workdir=$U|workdir"
  )
  local i=0 entry what opts word
  for entry in "${cases[@]}"; do
    i=$((i + 1))
    IFS='|' read -r what opts word <<<"$entry"
    mount_fuse "$M" "$opts"
    info "$what: exit $RC: $ERR"
    check "8.$i $what: non-zero exit" '[[ $RC != 0 ]]'
    check "8.$i.1 $what: message names it" '[[ $ERR == *"$word"* ]]'
    check "8.$i.2 $what: nothing left behind" '! is_mounted "$M" && [[ -z $(daemon_pid "$M") ]]'
    unmount_and_wait "$M" "$DPID"
  done
}

step9() {
  echo "== step 9: mount point that is not empty"
  new_stack s9
  echo "under the mount" >"$M/hidden"
  local K=$T/s9k
  mkdir -p "$K"/{lower,upper,work,merged}
  echo "a from lower" >"$K/lower/a"
  echo "under the mount" >"$K/merged/hidden"
  run mount -t overlay overlay -o "lowerdir=$K/lower,upperdir=$K/upper,workdir=$K/work" "$K/merged"
  if is_mounted "$K/merged"; then track_mount "$K/merged"; fi
  info "kernel overlayfs on a non-empty dir: exit $RC $ERR"
  local kernel_rc=$RC
  unmount_and_wait "$K/merged"

  mount_fuse "$M" "$OPTS"
  info "tsoverlay on a non-empty dir: exit $RC: $ERR"
  check "9.1 mounts like kernel overlayfs" \
    '[[ $RC == "$kernel_rc" && $(cat "$M/a" 2>&1) == "a from lower1" ]]'
  check "9.2 any failure names its cause" '[[ $RC == 0 || $ERR == *empty* ]]'
  unmount_and_wait "$M" "$DPID"
}

# Mounts kernel overlayfs and tsoverlay on layers in a tmpfs, then does $1
# to that tmpfs. "move" moves it elsewhere, as an initrd does with /run.
# "detach" unmounts it lazily, as systemd's switch-root does with the
# initrd's mounts. Kernel overlayfs keeps references to its layers, and its
# result is the expected one. Sets KERNEL_READ, KERNEL_WRITE, OURS_READ and
# OURS_WRITE.
layers_gone() {
  local how=$1 side base o got read pid=""
  for side in kernel ours; do
    base=$T/s10-$how-$side
    mkdir -p "$base"/{layers,moved,merged}
    mount -t tmpfs tmpfs "$base/layers"
    track_mount "$base/layers"
    mkdir -p "$base/layers"/{lower,upper,work}
    echo "from lower" >"$base/layers/lower/f"
    o="lowerdir=$base/layers/lower,upperdir=$base/layers/upper,workdir=$base/layers/work"
    if [[ $side == kernel ]]; then
      mount -t overlay overlay -o "$o" "$base/merged"
      track_mount "$base/merged"
    else
      mount_fuse "$base/merged" "$o"
      pid=$DPID
    fi
    if [[ $how == move ]]; then
      mount --move "$base/layers" "$base/moved"
      track_mount "$base/moved"
    else
      # Keep a way to the upper to look at, then detach the layers.
      mount --bind "$base/layers" "$base/moved"
      track_mount "$base/moved"
      umount -l "$base/layers"
    fi
    read=$(cat "$base/merged/f" 2>&1 || true)
    got=$( (echo new >"$base/merged/new" && cat "$base/moved/upper/new") 2>&1 || true)
    info "$side after $how: read '$read', write '$got'"
    if [[ $side == kernel ]]; then KERNEL_READ=$read KERNEL_WRITE=$got; else OURS_READ=$read OURS_WRITE=$got; fi
    unmount_and_wait "$base/merged" "$pid"
    umount "$base/moved"
  done
}

step10() {
  echo "== step 10: layer mounts moved or detached after mounting"
  layers_gone move
  check "10.1 lower still read after move" '[[ $OURS_READ == "$KERNEL_READ" ]]'
  check "10.2 writes still land after move" '[[ $OURS_WRITE == "$KERNEL_WRITE" ]]'
  layers_gone detach
  check "10.3 lower still read after detach" '[[ $OURS_READ == "$KERNEL_READ" ]]'
  check "10.4 writes still land after detach" '[[ $OURS_WRITE == "$KERNEL_WRITE" ]]'
}

# Copies bash and the libraries it needs into $1: a root a chroot can run.
mini_root() {
  local lib bash
  bash=$(readlink -f /bin/bash)
  mkdir -p "$1"/{proc,etc}
  cp --parents "$bash" "$1"
  ln -s "$bash" "$1/bash"
  for lib in $(ldd "$bash" | grep -o '/[^ ]*'); do
    cp --parents -L "$lib" "$1"
  done
}

# Builds the initrd's root in $R: the system's /usr, the program, and the
# layers under /.tsoverlay (lower root and upper storage), a path the new
# root cannot reach.
build_initrd() {
  local B=$1
  mkdir -p "$B"/{initrd,lowerroot,upperfs}
  mini_root "$B/lowerroot"
  echo "lower root" >"$B/lowerroot/etc/marker"
  mount -t tmpfs tmpfs "$B/upperfs"
  track_mount "$B/upperfs"
  mkdir -p "$B/upperfs"/{upper,work}
  R=$B/initrd
  mount -t tmpfs tmpfs "$R"
  track_mount "$R"
  mkdir -p "$R"/{usr,etc,dev,proc,newroot,.tsoverlay/lower,.tsoverlay/upperfs} "$R$REPO"
  ln -s usr/bin "$R/bin"
  ln -s usr/lib "$R/lib"
  [[ ! -e /lib64 ]] || ln -s usr/lib64 "$R/lib64"
  ln -s usr/sbin "$R/sbin"
  local src dst
  for src in /usr /etc /dev "$REPO" "$B/lowerroot" "$B/upperfs"; do
    case $src in
      "$B/lowerroot") dst=$R/.tsoverlay/lower ;;
      "$B/upperfs") dst=$R/.tsoverlay/upperfs ;;
      *) dst=$R$src ;;
    esac
    mount --bind "$src" "$dst"
    track_mount "$dst"
  done
  mount -t proc proc "$R/proc"
  track_mount "$R/proc"
}

# Starts the daemon chrooted in the initrd's root, as a root storage daemon
# (argv[0] begins with @), serving /newroot. Sets BOOT_PID.
start_root_daemon() {
  local o="lowerdir=/.tsoverlay/lower,upperdir=/.tsoverlay/upperfs/upper"
  o+=",workdir=/.tsoverlay/upperfs/work,dev,suid"
  chroot "$R" /bin/bash -c "exec -a @tsoverlay node $CLI mount -f -o $o \
    --log-file /.tsoverlay/upperfs/daemon.log /newroot" 2>"$T/s11/daemon.err" &
  BOOT_PID=$!
  track_pid "$BOOT_PID"
  track_mount "$R/newroot"
  wait_mounted "$R/newroot"
}

# What the new system checks from inside its root, with bash builtins only.
NEW_ROOT_PROBE='
  read -r marker </etc/marker && echo "marker=$marker"
  if [[ -e /.tsoverlay ]]; then echo "layers=visible"; else echo "layers=hidden"; fi
  [[ -e /proc/self/cmdline ]] && echo "proc=yes"
  n=0 at=0
  for d in /proc/[0-9]*; do
    n=$((n + 1))
    IFS= read -r -d "" arg0 <"$d/cmdline" || true
    [[ $arg0 == @* ]] && at=$((at + 1))
  done
  echo "procs=$n at=$at"
  echo "$1" >"/$1" && echo "write=ok"'

step11() {
  echo "== step 11: boot rehearsal (docs/boot.md)"
  build_initrd "$T/s11"
  local B=$T/s11 rc

  # A: the new system runs in its own PID and mount namespaces, and the
  # switch to the new root happens inside them. So the daemon's view of its
  # layers never changes, and the new system cannot see or kill it.
  if ! start_root_daemon; then
    fail "11.1 daemon mounts the new root" "$(head -c 500 "$B/daemon.err")"
    return
  fi
  pass "11.1 daemon mounts the new root"
  run unshare --pid --fork --mount --propagation private -- bash -c '
    mount --move "$1/newroot" "$1" &&
      exec unshare --mount-proc --root="$1" /bash -c "$2" probe booted-a' \
    switch "$R" "$NEW_ROOT_PROBE"
  info "new root says: $(tr '\n' ' ' <<<"$OUT") $ERR"
  check "11.2 new root shows lower root" '[[ $OUT == *"marker=lower root"* ]]'
  check "11.3 new root cannot see layers" '[[ $OUT == *"layers=hidden"* ]]'
  check "11.4 new root cannot see daemon" \
    '[[ $OUT == *"proc=yes"* && $OUT == *" at=0"* && $OUT == *"write=ok"* ]]'
  check "11.5 new root writes reach upper" \
    '[[ $(cat "$B/upperfs/upper/booted-a" 2>&1) == booted-a ]]'
  check "11.6 daemon's mount unmoved outside" 'is_mounted "$R/newroot" && alive "$BOOT_PID"'
  # Shutdown: once the new system is gone, unmounting the root stops the
  # daemon.
  umount "$R/newroot" || umount -l "$R/newroot"
  timeout_wait "$BOOT_PID" && rc=0 || rc=$?
  check "11.7 daemon exits 0 at unmount" '[[ $rc == 0 ]]' "exit $rc"

  # B: switch-root in the same namespaces, as systemd's switch_root() in
  # src/shared/switch-root.c does it when pivot_root is not possible. It
  # detaches every other mount of the initrd lazily, layers included, then
  # moves the new root over the initrd's root. argv[0] '@' keeps the daemon
  # out of systemd's killing spree. Kernel overlayfs would keep serving,
  # because it keeps references to its layers.
  if ! start_root_daemon; then
    fail "11.8 daemon mounts the new root again" "$(head -c 500 "$B/daemon.err")"
    return
  fi
  check "11.8 daemon argv[0] starts with @" '[[ $(head -c1 "/proc/$BOOT_PID/cmdline") == @ ]]'
  (
    cd "$R/newroot"
    umount -l "$R/.tsoverlay/lower" "$R/.tsoverlay/upperfs"
    mount --move . "$R"
  )
  track_mount "$R"
  run unshare --mount-proc --root="$R" /bash -c "$NEW_ROOT_PROBE" probe booted-b
  info "new root says: $(tr '\n' ' ' <<<"$OUT") $ERR"
  check "11.9 switched root shows lower root" '[[ $OUT == *"marker=lower root"* ]]'
  check "11.10 switched root sees @ daemon" '[[ $OUT == *"proc=yes"* && $OUT != *" at=0"* ]]'
  check "11.11 switched root writes reach upper" \
    '[[ $(cat "$B/upperfs/upper/booted-b" 2>&1) == booted-b ]]'
  check "11.12 daemon alive after the switch" 'alive "$BOOT_PID"'
  umount "$R" || umount -l "$R"
  timeout_wait "$BOOT_PID" && rc=0 || rc=$?
  check "11.13 daemon exits 0 at unmount" '[[ $rc == 0 ]]' "exit $rc"
}

step12() {
  echo "== step 12: initrd root helper (examples/initrd/tsoverlay-root-helper)"
  new_stack s12
  local helper=$S/tsoverlay-root-helper log=$S/daemon.log pid
  sed -e "s#^NODE=.*#NODE=$NODE#" -e "s#^CLI=.*#CLI=$CLI#" -e "s#^LOG=.*#LOG=$log#" \
    "$REPO/examples/initrd/tsoverlay-root-helper" >"$helper"
  chmod 755 "$helper"
  # The PROGRAM#SOURCE form runs the helper by path, as the initrd's
  # /usr/sbin/tsoverlay would run for type fuse.tsoverlay.
  run mount -t fuse "$helper#tsoverlay" "$M" -o "$OPTS"
  local mounted_on_return=no
  if is_mounted "$M"; then
    mounted_on_return=yes
    track_mount "$M"
  fi
  pid=$(pgrep -n -f -- "cli\\.js tsoverlay $M -o" || true)
  [[ -z $pid ]] || track_pid "$pid"
  check "12.1 mount through helper exits 0" '[[ $RC == 0 ]]' "exit $RC: $ERR"
  check "12.2 mounted when mount returns" '[[ $mounted_on_return == yes ]]'
  check "12.3 daemon argv[0] starts with @" \
    '[[ -n $pid && $(head -c1 "/proc/$pid/cmdline") == @ ]]'
  check "12.4 lower files visible" '[[ $(cat "$M/a" 2>&1) == "a from lower1" ]]'
  run umount "$M"
  check "12.5 umount stops the daemon" \
    '[[ $RC == 0 ]] && wait_exit "$pid" && grep -q "\"msg\":\"unmounted\"" "$log"'

  run mount -t fuse "$helper#tsoverlay" "$M" -o "$OPTS,bogus"
  if is_mounted "$M"; then track_mount "$M"; fi
  check "12.6 bad option fails with message" '[[ $RC != 0 && $ERR == *bogus* ]]' "exit $RC: $ERR"
  check "12.7 nothing left after failure" \
    '! is_mounted "$M" && [[ -z $(pgrep -f -- "cli\\.js tsoverlay $M -o") ]]'

  # `tsoverlay mount` started as @tsoverlay passes the mark to its daemon.
  run bash -c 'exec -a @tsoverlay "$1" "$2" mount -o "$3" "$4"' mark "$NODE" "$CLI" "$OPTS" "$M"
  if is_mounted "$M"; then track_mount "$M"; fi
  pid=$(pgrep -n -f -- "cli\\.js mount $M " || true)
  [[ -z $pid ]] || track_pid "$pid"
  check "12.8 background daemon keeps @ argv[0]" \
    '[[ $RC == 0 && -n $pid && $(head -c1 "/proc/$pid/cmdline") == @ ]]' "exit $RC: $ERR"
  run umount "$M"
  check "12.9 umount stops the marked daemon" '[[ $RC == 0 ]] && wait_exit "$pid"'
}

# ---------------------------------------------------------------------------

setup_wrapper
steps=${MIT_STEPS:-1 2 3 4 5 6 7 8 9 10 11 12}
for n in $steps; do
  declare -F "step$n" >/dev/null || die "no step $n"
  # Each step runs in a subshell with errexit, so an unexpected failure ends
  # only that step, which then counts as a failed check.
  set +e
  (
    set -eE
    trap 'printf "       stopped at line %s: %s\n" "$LINENO" "$BASH_COMMAND"' ERR
    "step$n"
  )
  rc=$?
  set -e
  if [[ $rc != 0 ]]; then fail "$n step ended early (status $rc)"; fi
done

passed=$(grep -c '^PASS' "$RESULTS" || true)
failed=$(grep -c '^FAIL' "$RESULTS" || true)
echo
if [[ $failed != 0 ]]; then
  echo "failed checks:"
  grep '^FAIL' "$RESULTS" | sed 's/^/  /'
fi
echo "mount-integration: $passed passed, $failed failed"
[[ $failed == 0 ]]
