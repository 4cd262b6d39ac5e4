#!/bin/bash
# Benchmark: the cost of a monitor of a running guest and of a probe of a
# stopped guest, ferry against resource-agents' heartbeat:VirtualDomain on the
# same guest in the same run. Prints medians (wall time) and ratios.
set -euo pipefail
. "$(dirname "$0")/lab/common.sh"
stage_install
runs=${FERRY_BENCH_RUNS:-30}
ferry=$agent_dir/VirtualDomain
anchor=/usr/lib/ocf/resource.d/heartbeat/VirtualDomain
[ -x "$anchor" ] || { echo "bench: $anchor missing (resource-agents)" >&2; exit 1; }
up="ferry-bench-up-$$"; down="ferry-bench-down-$$"
write_guest "$up" "$work/up.xml" "$work/up.log"
# The running guest has a guest agent, for the depth-10 row.
sed -i "s|</devices>|<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices>|" "$work/up.xml"
write_guest "$down" "$work/down.xml" "$work/down.log"
export OCF_ROOT=/usr/lib/ocf OCF_RESKEY_CRM_meta_timeout=30000
OCF_RESOURCE_INSTANCE=bench-up OCF_RESKEY_config=$work/up.xml "$ferry" start 2>/dev/null

# median_ms INTERVAL CONFIG AGENT: median wall time of $runs monitors, in ms (3 decimals).
# Each guest is its own resource, as in a cluster: ferry finds a resource's
# guest by its owner mark too, so two guests under one resource name would be
# one resource running under another name.
median_ms() {
  local interval=$1 config=$2 agent=$3 i t0 t1 rc
  local instance="bench-$(basename "$config" .xml)"
  for i in $(seq "$runs"); do
    t0=$(date +%s%N)
    set +e
    OCF_RESOURCE_INSTANCE=$instance OCF_RESKEY_config=$config OCF_RESKEY_CRM_meta_interval=$interval "$agent" monitor >/dev/null 2>&1
    rc=$?
    set -e
    t1=$(date +%s%N)
    echo "$((t1 - t0)) $rc"
  done > "$work/samples"
  awk '{print $2}' "$work/samples" | sort -u | tr '\n' ' ' > "$work/codes"
  awk '{print $1}' "$work/samples" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m/1e6}'
}

row() {
  local what=$1 interval=$2 config=$3 expect=$4
  local a f ca cf
  a=$(median_ms "$interval" "$config" "$anchor"); ca=$(cat "$work/codes")
  f=$(median_ms "$interval" "$config" "$ferry"); cf=$(cat "$work/codes")
  [ "$ca" = "$expect " ] && [ "$cf" = "$expect " ] || { echo "bench: $what: exit codes anchor [$ca] ferry [$cf], expected $expect" >&2; exit 1; }
  printf '%-32s %12s ms %12s ms %9.1fx\n' "$what" "$a" "$f" "$(awk -v a="$a" -v f="$f" 'BEGIN {print a / f}')"
}

t0=$(date +%s%N); for _ in $(seq "$runs"); do virsh -c qemu:///system domstate "$up" >/dev/null; done; t1=$(date +%s%N)
echo "ferry bench: $runs runs each, median wall time; guest $up (TCG), libvirt $(virsh --version)"
printf 'reference: one virsh domstate    %.3f ms (mean)\n\n' "$(awk -v t=$((t1 - t0)) -v n="$runs" 'BEGIN {print t / n / 1e6}')"
printf '%-32s %15s %15s %10s\n' "operation" "heartbeat" "ferry" "ratio"
row "monitor, running guest" 10000 "$work/up.xml" 0
row "probe, stopped guest" 0 "$work/down.xml" 7
# Depth 10: ferry also asks the guest (guest-ping through its agent);
# heartbeat has no depth 10 and runs its depth-0 monitor. Measured once the
# agent answers, not in the boot grace that skips the question.
for _ in $(seq 60); do
  OCF_CHECK_LEVEL=10 OCF_RESOURCE_INSTANCE=bench-up OCF_RESKEY_config=$work/up.xml OCF_RESKEY_CRM_meta_interval=10000 "$ferry" monitor >/dev/null 2>&1 || true
  grep -q 'guest-ping answered' "$work/up.log" && break
  sleep 1
done
grep -q 'guest-ping answered' "$work/up.log" || { echo "bench: the guest agent never answered" >&2; exit 1; }
export OCF_CHECK_LEVEL=10
row "monitor, depth 10 (guest-ping)" 10000 "$work/up.xml" 0
unset OCF_CHECK_LEVEL
OCF_RESOURCE_INSTANCE=bench-up OCF_RESKEY_config=$work/up.xml OCF_RESKEY_force_stop=1 "$ferry" stop 2>/dev/null
