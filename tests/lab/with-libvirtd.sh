#!/bin/bash
# Runs a command with a libvirtd of its own: one lab node (a network, mount
# and UTS namespace, as tests/lab/two-nodes.sh makes them) with private /run,
# /etc/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and
# /dev/shm, and its own virtlogd and libvirtd. Inside it qemu:///system is
# that daemon, so the command (tests, ferry) uses the default URI as on any
# node. A libvirtd the host already runs is neither used, stopped nor
# reconfigured. The command may stop and restart the node's libvirtd (the
# pid file is /run/libvirtd.pid): FERRY_TEST_OWNS_LIBVIRTD=1 says so.
#
# On exit - also on failure or interrupt - every process of the node's
# network namespace (its daemons and any QEMU they left) is ended by PID,
# then the namespace and the node's directory are removed.
# Usage: tests/lab/with-libvirtd.sh CMD [ARGS...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/ferry-solo.XXXXXX)
ns="ferry-solo-${dir##*.}"
child=

cleanup() {
  "$here/two-nodes.sh" __end "$ns"
  rm -rf "$dir"
}
trap cleanup EXIT
# Forward an interrupt to the command, then clean up at once (bash would only
# run the trap after a foreground command finished).
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; exit 143' INT TERM

# libvirtd refuses to start without these accounts; without
# libvirt-daemon-system nothing creates them.
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
# Mount points the node's private directories go over.
mkdir -p /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt

ip netns add "$ns" || exit 1
ip -n "$ns" link set lo up
"$here/two-nodes.sh" __config "$dir" solo || exit 1
ip netns exec "$ns" unshare -m -u -- "$here/two-nodes.sh" __init solo "$dir/solo" || { echo "with-libvirtd: the node did not start" >&2; exit 1; }
anchor=$(cat "$dir/solo/run/virtlogd.pid")
sock="$dir/solo/run/libvirt/libvirt-sock"
for _ in $(seq 100); do
  virsh -q -c "qemu+unix:///system?socket=$sock" uri >/dev/null 2>&1 && break
  sleep 0.1
done
virsh -q -c "qemu+unix:///system?socket=$sock" uri >/dev/null 2>&1 || { echo "with-libvirtd: libvirtd does not answer" >&2; exit 1; }
echo "with-libvirtd: private libvirtd up in $ns ($dir)" >&2

FERRY_TEST_OWNS_LIBVIRTD=1 nsenter -t "$anchor" -n -m -u --wd="$PWD" -- "$@" &
child=$!
wait "$child"
