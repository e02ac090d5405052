# Helpers shared by container-test.sh and podman-test.sh: timing, Debian
# packages installed on demand, a debootstrapped minbase root as a tar,
# cached between runs, and podman's limits and runtime. Source it after
# defining say, die and unmount_under, and setting TMP, SUITE, MIRROR and
# CACHE_DIR.

# podman's default limits are higher than root may set on hosts where root
# lacks CAP_SYS_RESOURCE. The runtime is runc because crun is reported to
# fail on the cgroup v1 layout of the CI host.
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096)
RUNTIME=runc

# elapsed START: seconds since START (an EPOCHREALTIME), to a tenth.
elapsed() {
  local us=$((${EPOCHREALTIME/./} - ${1/./}))
  printf '%d.%d' $((us / 1000000)) $((us % 1000000 / 100000))
}

install_packages() {
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } ||
    die "installing $* failed; install it with 'apt-get install $*'"
}

# debootstrap_tar OUT: writes a tar of a fresh minbase root to OUT.
debootstrap_tar() {
  local out=$1 root=$TMP/rootfs start=$EPOCHREALTIME
  command -v debootstrap >/dev/null || install_packages debootstrap
  say "debootstrap --variant=minbase $SUITE"
  if ! debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
    tail -n 20 "$TMP/debootstrap.log" >&2
    return 1
  fi
  # debootstrap unmounts what it mounted, but make sure before packing.
  unmount_under "$root" || return 1
  tar -C "$root" --numeric-owner --xattrs -cf "$out" . || return 1
  rm -rf --one-file-system "$root"
  say "debootstrap took $(elapsed "$start") s"
}

# Sets ROOTFS_TAR to the minbase tar, built first unless the cache has it.
# PARTIAL names a tar still being written, for the caller's clean-up.
rootfs_tar() {
  local cached
  ROOTFS_TAR=$TMP/rootfs.tar
  if [[ -n $CACHE_DIR ]] && mkdir -p "$CACHE_DIR" 2>/dev/null && [[ -w $CACHE_DIR ]]; then
    cached=$CACHE_DIR/$SUITE-minbase.tar
    if [[ -s $cached ]]; then
      say "reusing $cached"
    else
      PARTIAL=$cached.new.$$
      debootstrap_tar "$PARTIAL" || die "debootstrap failed; check that $MIRROR is reachable"
      mv -f "$PARTIAL" "$cached"
      PARTIAL=""
    fi
    ROOTFS_TAR=$cached
  else
    [[ -z $CACHE_DIR ]] || say "cannot write $CACHE_DIR; building without a cache"
    debootstrap_tar "$ROOTFS_TAR" || die "debootstrap failed; check that $MIRROR is reachable"
  fi
}
