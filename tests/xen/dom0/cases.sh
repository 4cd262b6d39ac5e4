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
  [ "$rc" = "$expect" ] || sed 's/^/FERRY-XEN-LOG /' /tmp/out
  sed -n 's/^ocf-exit-reason:/FERRY-XEN-REASON /p' /tmp/out
}
# The agent's own log of the last case, for the cases whose story matters
# when they pass too (migrations).
show_log() { sed "s/^/FERRY-XEN-AGENT $1: /" /tmp/out; }
now() { cut -d' ' -f1 /proc/uptime; }
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
