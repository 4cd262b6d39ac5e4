#!/bin/bash
# Runs a command on a Debian 13 (trixie) "machine": private mount, PID, UTS
# and network namespaces whose root is build/trixie-root (tests/lab/trixie-root.sh
# builds it), so every tool the command finds - libvirtd, QEMU, virsh,
# Pacemaker's, xmllint - is trixie's, not this Debian 12 host's.
#
# Why these pieces (tests/lab and the lab recipes say more):
# - pivot_root, not chroot: a process that enters a chroot's mount namespace
#   with nsenter -m (as with-libvirtd.sh and two-nodes.sh do) lands in the
#   namespace's real root, the host's, and runs the host's binaries there.
# - the root is bind-mounted onto itself first: pivot_root needs a mount
#   point, and libvirt, which makes a guest's mount propagation private, fails
#   ("Failed disable mount propagation out of the root filesystem") if the
#   root is not one.
# - PID 1 reaps: trixie's bash running this script is PID 1 of the new PID
#   namespace and waits for the command; bash reaps every child that ends,
#   orphans included, whereas a PID 1 that never waits leaves libvirtd's QEMU
#   probes as zombies libvirtd then waits on.
# - /proc is the namespace's own, /sys is mounted anew for its network
#   namespace, /dev is the host's (for /dev/kvm, /dev/net/tun, /dev/null),
#   with a private /dev/shm; /tmp and /run are empty tmpfs.
# - The project (this worktree) and the guest images are bound at the paths
#   they have on the host: the test binaries, built on the host, have their
#   own path and CARGO_BIN_EXE_ferry (an absolute path into the target
#   directory) baked in. The host's Rust toolchain is bound too, for `make
#   install` (which runs `cargo build`, a no-op on a tree built on the host);
#   nothing can be compiled inside: the root has no C linker.
#
# Cleanup: everything lives in the namespaces, and they die with PID 1 - the
# kernel kills every process of a PID namespace whose PID 1 exits, and the
# mounts go with the last process of the mount namespace. Nothing is mounted
# on the host, nothing is ended by name. unshare's --kill-child takes PID 1
# down if unshare itself is killed, and an INT or TERM to this script kills
# unshare.
#
# Usage: tests/lab/in-trixie.sh CMD [ARGS...]    (run from anywhere; CMD runs
#        in the current directory if it is under the project, else in it)
# FERRY_TRIXIE_ROOT overrides the root (default: build/trixie-root).
set -euo pipefail

die() { echo "in-trixie: $*" >&2; exit 1; }
# shellcheck source=tests/lab/pivot.sh
. "$(dirname "$0")/pivot.sh"

# Inside the new namespaces, before and after pivot_root.
setup() {
  local root=$1 repo=$2 p
  mount --make-rprivate /
  mount --bind "$root" "$root"
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --rbind /dev "$root/dev"
  mount --make-rslave "$root/dev"
  mount -t tmpfs -o size=64m,mode=1777 tmpfs "$root/dev/shm"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mkdir -p "$root/run/lock"
  # The project, the guest images (build/guest may be a link out of the
  # worktree) and the target directory, each at its host path.
  bind_at_host_paths "$root" "$repo" "$(readlink -f "$repo/build/guest" 2>/dev/null || true)" "${CARGO_TARGET_DIR:-}" \
    "${CARGO_HOME:-$HOME/.cargo}" "${RUSTUP_HOME:-$HOME/.rustup}"
  pivot_into "$root"
  hostname trixie
  ip link set lo up
}

case "${1:-}" in
  __pid1)
    # Sets up the mounts, then hands PID 1 over to trixie's own bash.
    shift
    root=$1 repo=$2; shift 2
    setup "$root" "$repo"
    exec /bin/bash "$0" __run "$@"
    ;;
  __run)
    shift
    cd "$1"; shift
    export PATH=${CARGO_HOME:-$HOME/.cargo}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    # PID 1 gets no signal it has no handler for: pass an interrupt on.
    child=
    trap '[ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true; exit 143' INT TERM
    "$@" <&0 &
    child=$!
    set +e
    wait "$child"
    exit $?
    ;;
esac

[ $# -gt 0 ] || { sed -n '/^# Usage/,/^# FERRY/p' "$0" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "run as root (namespaces, pivot_root)"
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=$(readlink -f "${FERRY_TRIXIE_ROOT:-$repo/build/trixie-root}")
[ -f "$root/.ferry-trixie-root" ] || die "no trixie root at $root (make trixie-root)"
# The command runs where it was asked from if the namespace can see that.
wd=$PWD
case "$wd/" in "$repo"/*) ;; *) wd=$repo ;; esac

# unshare --fork ignores SIGINT and SIGTERM while it waits, so a TERM sent to
# this script (a timeout, a test runner) would end nothing: on either, unshare
# is SIGKILLed, and --kill-child then takes PID 1, and with it every process
# of the namespaces, down too. stdin is passed on explicitly: a background
# command's would be /dev/null.
unshare --mount --propagation private --pid --fork --kill-child --uts --net --ipc -- \
  "$here/in-trixie.sh" __pid1 "$root" "$repo" "$wd" "$@" <&0 &
ns=$!
trap 'kill -KILL "$ns" 2>/dev/null; wait "$ns" 2>/dev/null || true; exit 143' INT TERM
wait "$ns"
