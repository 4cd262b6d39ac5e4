#!/bin/bash
# Builds a Debian root from Debian's archive with debootstrap, or keeps the
# one already built: the Debian 13 (trixie) root the KVM labs run a node from
# (tests/lab/trixie-root.sh), and the Debian 12 userland the Xen lab's dom0
# runs its cluster from (tests/xen/build.sh).
#
# The root is a cache: it is rebuilt only when it is missing or when its stamp
# (the suite, the packages and this script's recipe version) differs from what
# this script would build. It is built in a temporary directory beside it and
# renamed into place only when complete, so an interrupted build never leaves
# a half root that looks done. Every mount the build makes (debootstrap's and
# apt's /proc, /sys, /dev) lives in a private mount namespace that ends with
# the build: none of them can be left on the host, and removing a failed
# build's directory never reaches through a mount into the host's /dev.
#
# Usage: tests/lab/debian-root.sh NAME SUITE ROOT PACKAGE...
#   NAME names the root in messages and in its stamp file (.ferry-NAME).
# FERRY_DEBIAN_MIRROR overrides the archive; by default it is the one this
# machine's apt uses (the only one reachable here).
set -euo pipefail
name=${1:?usage: debian-root.sh NAME SUITE ROOT PACKAGE...}
suite=${2:?suite}
root=${3:?root}
shift 3
packages=("$@")
# Bump when the recipe below changes in a way the package list does not show.
recipe=1
stamp_name=.ferry-$name
want="suite=$suite recipe=$recipe packages=${packages[*]}"

die() { echo "$name: $*" >&2; exit 1; }

if [ -f "$root/$stamp_name" ] && [ "$(cat "$root/$stamp_name")" = "$want" ]; then
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (make deps)"

# The archive this machine's apt reads Debian from: a deb822 URIs line or a
# one-line "deb URL suite" entry, whichever names .../debian.
mirror=${FERRY_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ') || true
fi
[ -n "$mirror" ] || die "no Debian archive in /etc/apt/sources.list*; set FERRY_DEBIAN_MIRROR"

# The build's mounts die with its mount namespace; check anyway before
# deleting, since rm -rf through a bind of /dev would wipe the host's.
remove_tree() {
  if findmnt -rn -o TARGET | grep -F "$1" >/dev/null; then
    echo "$name: $1 still has mounts; left in place" >&2
  else
    rm -rf "$1" "$1.log"
  fi
}

mkdir -p "$(dirname "$root")"
# One build of this root at a time; then what a killed build left (a
# .building or .old directory, never the root's own name) can go.
exec 9>"$root.lock"
flock 9
for d in "$root".building.* "$root".old.*; do
  [ ! -e "$d" ] || remove_tree "$d"
done
# Another build may have finished while this one waited for the lock.
if [ -f "$root/$stamp_name" ] && [ "$(cat "$root/$stamp_name")" = "$want" ]; then
  exit 0
fi
tmp=$(mktemp -d "$root.building.XXXXXX")
# mktemp's 0700 would become the root's /, which no user but root could then
# cross (the tests run ferry as nobody; QEMU may run as libvirt-qemu).
chmod 0755 "$tmp"
old=
cleanup() {
  local d
  for d in "$tmp" "$old"; do
    [ -z "$d" ] || [ ! -e "$d" ] || remove_tree "$d"
  done
}
trap cleanup EXIT
trap 'exit 143' INT TERM

started=$SECONDS
echo "$name: debootstrap $suite from $mirror into $tmp" >&2
# A failed build's log is kept beside the root (the cleanup removes the
# build's own): one debootstrap exited non-zero right after printing
# "Base system installed successfully", and its log was gone.
unshare --mount --propagation private -- \
  debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 ||
  { rc=$?; cp "$tmp.log" "$root.debootstrap-failed.log"; tail -n 20 "$tmp.log" >&2
    die "debootstrap failed (exit $rc; its log: $root.debootstrap-failed.log)"; }
rm -f "$tmp.log"

# No daemon may start while packages are configured (there is no init here),
# and the root needs no recommends: the lab starts exactly what it needs.
printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"
chmod 0755 "$tmp/usr/sbin/policy-rc.d"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$tmp/etc/apt/apt.conf.d/90ferry-lab"
# The chroot resolves the archive's name with the host's resolver.
cp /etc/resolv.conf "$tmp/etc/resolv.conf"

echo "$name: installing ${packages[*]}" >&2
# shellcheck disable=SC2016 # expanded by the inner shell, inside the namespace
unshare --mount --propagation private -- sh -c '
  set -e
  root=$1; shift
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --rbind /dev "$root/dev"
  chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get update -qq
  chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get install -y -qq "$@"
  chroot "$root" apt-get clean
' sh "$tmp" "${packages[@]}" >"$tmp.log" 2>&1 ||
  { tail -n 30 "$tmp.log" >&2; die "apt-get install in the root failed"; }
rm -f "$tmp.log"
# The package lists are 60 MB and the lab never runs apt: a rebuild fetches
# them again.
rm -rf "$tmp"/var/lib/apt/lists/*

echo "$want" > "$tmp/$stamp_name"
# Swap in the new root; an old one (other packages) is moved aside first and
# removed after, so the name only ever holds a complete root or nothing.
if [ -e "$root" ]; then
  old=$(mktemp -d "$root.old.XXXXXX")
  mv "$root" "$old/"
fi
mv "$tmp" "$root"
tmp=
echo "$name: $root built in $((SECONDS - started)) s, $(du -sh "$root" | cut -f1)" >&2
