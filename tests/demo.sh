#!/bin/bash
# The main job, shown: a real QEMU guest driven through ocf:ferry:VirtualDomain
# exactly as Pacemaker would drive it, each step with its exit code and time.
set -euo pipefail
. "$(dirname "$0")/lab/common.sh"
stage_install
agent=$agent_dir/VirtualDomain
name="ferry-demo-$$"
write_guest "$name" "$work/guest.xml" "$work/console.log"
export OCF_ROOT=/usr/lib/ocf OCF_RESOURCE_INSTANCE=demo-vm OCF_RESKEY_config=$work/guest.xml

step() {
  local what=$1; shift
  local t0 t1 rc
  t0=$(date +%s%N)
  set +e; "$@" 2>"$work/stderr"; rc=$?; set -e
  t1=$(date +%s%N)
  printf '%-34s exit %-3s %6d ms\n' "$what" "$rc" $(((t1 - t0) / 1000000))
  sed 's/^/      | /' "$work/stderr" | grep -v DEBUG || true
}

echo "ferry demo: $agent -> $(readlink "$agent")"
echo "guest: $name (TCG Linux, busybox init, ACPI power button), config $work/guest.xml"
echo
meta=$("$agent" meta-data)
echo "parameters: $(grep -o '<parameter name="[^"]*"' <<<"$meta" | cut -d'"' -f2 | tr '\n' ' ')" | fold -s -w 100 | sed '2,$s/^/            /'
echo "actions:    $(grep -o '<action name="[^"]*"' <<<"$meta" | cut -d'"' -f2 | tr '\n' ' ')"
echo; echo
step "validate-all"                      "$agent" validate-all
step "probe (monitor, interval 0)"       env OCF_RESKEY_CRM_meta_interval=0 "$agent" monitor
step "start"                             "$agent" start
step "monitor"                           env OCF_RESKEY_CRM_meta_interval=10000 "$agent" monitor
echo "  domain mark: $(virsh -c qemu:///system dumpxml "$name" | grep -o '<ferry:owner[^>]*>')"
for _ in $(seq 60); do grep -q 'ferry-tick 2' "$work/console.log" 2>/dev/null && break; sleep 1; done
echo "  guest console: $(grep -a 'ferry-tick' "$work/console.log" | tail -1)"
step "start again (idempotent)"          "$agent" start
mv "$work/guest.xml" "$work/guest.xml.away"
step "monitor, config file missing"      env OCF_RESKEY_CRM_meta_interval=10000 "$agent" monitor
mv "$work/guest.xml.away" "$work/guest.xml"
step "stop (graceful: ACPI power off)"   "$agent" stop
echo "  guest console: $(grep -a 'Power down' "$work/console.log" | tail -1)"
step "monitor"                           env OCF_RESKEY_CRM_meta_interval=10000 "$agent" monitor
step "stop again (idempotent)"           "$agent" stop
echo
echo "exit codes: 0 success, 7 not running, 190 degraded (running, but the config file is missing here)"
