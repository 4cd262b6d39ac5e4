# Sourced by lifecycle.sh and migration.sh inside dom0: the agent under test,
# its common environment, and how a case is reported. Each case prints
#   FERRY-XEN-CASE <host> <case> rc=<got> expect=<wanted>
# and, when they differ, the agent's output; tests/xen/run.sh asserts them.
A=/usr/lib/ocf/resource.d/ferry/Xen
export OCF_ROOT=/usr/lib/ocf OCF_RESOURCE_INSTANCE=xvm OCF_RESKEY_xmfile=/etc/xen/guest.cfg
LOG=/var/log/xen/console/guest-xguest.log
check() {
  name=$1 expect=$2; shift 2
  "$@" >/tmp/out 2>&1
  rc=$?
  echo "FERRY-XEN-CASE ${HOST:-single} $name rc=$rc expect=$expect"
  [ "$rc" = "$expect" ] || sed 's/^/FERRY-XEN-LOG /' /tmp/out
  sed -n 's/^ocf-exit-reason:/FERRY-XEN-REASON /p' /tmp/out
}
ticks() { grep -c 'ferry-tick' "$LOG" 2>/dev/null || echo 0; }
# wait_ticks N: the guest's console shows more than N ticks
wait_ticks() { for _ in $(seq 120); do [ "$(ticks)" -gt "$1" ] && return 0; sleep 1; done; return 1; }
# wait_file PATH SECONDS
wait_file() { for _ in $(seq "$2"); do [ -e "$1" ] && return 0; sleep 1; done; return 1; }
