# Sourced by lifecycle.sh and migration.sh inside dom0: the agent under test,
# its common environment, and how a case is reported. Each case prints
#   FERRY-XEN-CASE <host> <case> rc=<got> expect=<wanted>
# and, when they differ, the agent's output; tests/xen/run.sh asserts them.
A=/usr/lib/ocf/resource.d/ferry/Xen
export OCF_ROOT=/usr/lib/ocf OCF_RESOURCE_INSTANCE=xvm OCF_RESKEY_xmfile=/etc/xen/guest.cfg
CONSOLES=/var/log/xen/console
check() {
  name=$1 expect=$2; shift 2
  "$@" >/tmp/out 2>&1
  rc=$?
  echo "FERRY-XEN-CASE ${HOST:-single} $name rc=$rc expect=$expect"
  [ "$rc" = "$expect" ] || { FAILED=$((${FAILED:-0} + 1)); sed 's/^/FERRY-XEN-LOG /' /tmp/out; }
  sed -n 's/^ocf-exit-reason:/FERRY-XEN-REASON /p' /tmp/out
}
# The agent's own log of the last case, for the cases whose story matters
# when they pass too (migrations).
show_log() { sed "s/^/FERRY-XEN-AGENT $1: /" /tmp/out; }
# A guest's console as xenconsoled logs it. A migrated guest's console may
# be logged under the name it arrived with (NAME--incoming), so both count.
console() { cat "$CONSOLES/guest-$1.log" "$CONSOLES/guest-$1--incoming.log" 2>/dev/null; }
ticks() { console "${1:-xguest}" | grep -c 'ferry-tick'; }
# wait_ticks N [GUEST]: the guest's console shows more than N ticks
wait_ticks() { for _ in $(seq 120); do [ "$(ticks "$2")" -gt "$1" ] && return 0; sleep 1; done; return 1; }
# wait_file PATH SECONDS
wait_file() { for _ in $(seq "$2"); do [ -e "$1" ] && return 0; sleep 1; done; return 1; }
# Every guest console, line by line, to the serial console as it is
# written, where the host stamps it: the host keeps each console and
# measures the guest's downtime across a migration from its ticks.
forward_consoles() {
  local g
  for g in "$@"; do
    (tail -n +1 -F "$CONSOLES/guest-$g.log" 2>/dev/null | while IFS= read -r line; do echo "FERRY-XEN-GUEST $g: $line"; done) &
  done
}
now() { cut -d' ' -f1 /proc/uptime; }
time_of() { echo "FERRY-XEN-TIME $1 $2 $(now)"; }

# lab_link a|b: this host's end of the two hosts' private link (10.77.0.1
# for a, .2 for b), the shared directory at /shared (9p, uncached: the hosts
# hand files to each other through it), and xl's migration receiver for
# incoming streams (each gets its own, whose messages are kept and whose PID
# is known, so a stuck one can be ended by it).
lab_link() {
  insmod /lib/modules/e1000.ko
  ip link set lo up
  ip link set eth0 up
  if [ "$1" = a ]; then ip addr add 10.77.0.1/24 dev eth0; else ip addr add 10.77.0.2/24 dev eth0; fi
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p; do
    insmod /lib/modules/$m.ko
  done
  mkdir -p /shared /run/receive
  mount -t 9p -o trans=virtio,version=9p2000.L shared /shared
  cat > /bin/xl-receive <<'SH'
#!/bin/sh
echo $$ > /run/receiver.pid
exec xl migrate-receive 2>/run/receive/$$.log
SH
  chmod +x /bin/xl-receive
}
