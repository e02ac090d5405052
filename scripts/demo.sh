#!/usr/bin/env bash
# The classic overlay walkthrough on real directories: two lowers with a
# file each and an empty upper, mounted by tsoverlay. Prints each step and
# unmounts at the end, also on failure.
set -euo pipefail

cd "$(dirname "$0")/.."
tsoverlay=(node dist/cli.js)
demo=$(mktemp -d /tmp/tsoverlay-demo.XXXXXX)
mkdir -p "$demo"/{lower1,lower2,upper,work,merged}

cleanup() {
  if findmnt "$demo/merged" >/dev/null 2>&1; then "${tsoverlay[@]}" umount "$demo/merged" || umount -l "$demo/merged"; fi
  rm -rf "$demo"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

echo "from lower1" > "$demo/lower1/file1"
echo "from lower2" > "$demo/lower2/file2"

step "Two lower layers with a file each, and an empty upper"
show ls -l "$demo/lower1" "$demo/lower2" "$demo/upper"

step "Mount: lowerdir=lower1:lower2 (lower1 on top), upperdir=upper"
show "${tsoverlay[@]}" mount -o "lowerdir=$demo/lower1:$demo/lower2,upperdir=$demo/upper,workdir=$demo/work" "$demo/merged"
show findmnt -n -o TARGET,FSTYPE "$demo/merged"

step "Both lower files are visible in the merged view"
show ls -l "$demo/merged"
show cat "$demo/merged/file1" "$demo/merged/file2"

step "A new file lands in the upper"
show sh -c "echo 'written through the mount' > '$demo/merged/new'"
show ls -l "$demo/upper"

step "Deleting a lower file keeps it in its lower and puts a whiteout (char device 0/0) in the upper"
show rm "$demo/merged/file2"
show ls -l "$demo/merged"
show ls -l "$demo/lower2"
show stat -c '%n: %F, device %t:%T' "$demo/upper/file2"

step "A file of the same name in the upper overrides the lowers"
show sh -c "echo 'edited through the mount' > '$demo/merged/file1'"
show cat "$demo/merged/file1"
show cat "$demo/lower1/file1"
show ls -l "$demo/upper"

step "Unmount"
show "${tsoverlay[@]}" umount "$demo/merged"
for _ in $(seq 50); do findmnt "$demo/merged" >/dev/null 2>&1 || break; sleep 0.1; done
show ls -l "$demo/merged"
echo
echo "demo: done"
