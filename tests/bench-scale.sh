#!/bin/bash
# Benchmark (issue 26): what one invocation costs as the node's guests grow,
# ferry against heartbeat:VirtualDomain in the same run. The node holds N
# guests: the resource's own running test guest, and N-1 others that halt
# in the firmware, paused (32 MiB, no disk: no CPU under TCG). For N in
# FERRY_SCALE_SIZES (1 100 500) it prints, as medians of FERRY_BENCH_RUNS:
#   - monitor of the running guest, probe and stop of a resource whose guest
#     runs nowhere, each with its growth from the first N;
#   - a node join: N probes of N such resources, 4 at a time, as Pacemaker
#     probes every resource when a node joins;
#   - for ferry's probe: libvirt round trips (writes to its socket), bytes
#     read from it, the highest file descriptor and the peak RSS, so that
#     what grows with N shows where.
# Run through tests/lab/with-libvirtd.sh (make bench).
set -euo pipefail
. "$(dirname "$0")/lab/common.sh"
stage_install
runs=${FERRY_BENCH_RUNS:-20}
sizes=${FERRY_SCALE_SIZES:-1 100 500}
ferry=$agent_dir/VirtualDomain
anchor=/usr/lib/ocf/resource.d/heartbeat/VirtualDomain
[ -x "$anchor" ] || { echo "bench-scale: $anchor missing (resource-agents)" >&2; exit 1; }
export OCF_ROOT=/usr/lib/ocf OCF_RESKEY_CRM_meta_timeout=60000
up="ferry-scale-up-$$"; absent="ferry-scale-absent-$$"
write_guest "$up" "$work/up.xml" "$work/up.log"
write_guest "$absent" "$work/absent.xml" "$work/absent.log"
OCF_RESOURCE_INSTANCE=scale-up OCF_RESKEY_config=$work/up.xml "$ferry" start 2>/dev/null

fillers=0
# Adds paused guests until the node holds $1 in all (the running one included).
fill_to() {
  local want=$(($1 - 1)) name
  while [ "$fillers" -lt "$want" ]; do
    # Not in domains_to_clean: destroying hundreds one by one takes
    # minutes, and tests/lab/with-libvirtd.sh ends every QEMU of its node.
    name="ferry-scale-fill-$$-$fillers"
    cat > "$work/fill.xml" <<EOF
<domain type='qemu'><name>$name</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os><devices/></domain>
EOF
    virsh -q -c qemu:///system create --paused "$work/fill.xml" >/dev/null
    fillers=$((fillers + 1))
  done
}

# median_ms AGENT ACTION INSTANCE CONFIG INTERVAL EXPECT: median wall time, ms.
median_ms() {
  local agent=$1 action=$2 instance=$3 config=$4 interval=$5 expect=$6 i t0 t1 rc
  for i in $(seq "$runs"); do
    t0=$(date +%s%N)
    set +e
    OCF_RESOURCE_INSTANCE=$instance OCF_RESKEY_config=$config OCF_RESKEY_CRM_meta_interval=$interval "$agent" "$action" >/dev/null 2>&1
    rc=$?
    set -e
    t1=$(date +%s%N)
    [ "$rc" = "$expect" ] || { echo "bench-scale: $agent $action $instance answered $rc, expected $expect" >&2; exit 1; }
    echo "$((t1 - t0))"
  done | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1e6}'
}

# join_s AGENT N: seconds for N probes of N resources that run nowhere, 4 at once.
join_s() {
  local agent=$1 n=$2 t0 t1
  t0=$(date +%s%N)
  seq "$n" | OCF_RESKEY_config=$work/absent.xml OCF_RESKEY_CRM_meta_interval=0 \
    xargs -P4 -I{} env OCF_RESOURCE_INSTANCE=join-{} "$agent" monitor >/dev/null 2>&1 || true
  t1=$(date +%s%N)
  awk -v t=$((t1 - t0)) 'BEGIN {printf "%.2f", t / 1e9}'
}

# What one ferry probe of the absent resource does: round trips (writes to
# libvirt's socket), bytes read from it, the highest fd, peak RSS (KiB).
probe_cost() {
  strace -f -qq -y -e trace=read,write,sendto,recvfrom,openat,socket,connect -e signal=none -o "$work/trace" \
    /usr/bin/time -f '%M' -o "$work/rss" \
    env OCF_RESOURCE_INSTANCE=scale-absent OCF_RESKEY_config="$work/absent.xml" OCF_RESKEY_CRM_meta_interval=0 "$ferry" monitor >/dev/null 2>&1 || true
  # Only ferry's own lines: /usr/bin/time's process is traced too.
  local pid
  pid=$(grep -m1 'execve\|connect(' "$work/trace" | awk '{print $1}')
  awk -v pid="$pid" '
    $1 != pid { next }
    /(write|sendto)\([0-9]+<(UNIX|socket)/ { trips++ }
    /(read|recvfrom)\([0-9]+<(UNIX|socket)/ { n = $NF; if (n ~ /^[0-9]+$/) bytes += n }
    { if (match($0, /= [0-9]+<?/)) { f = substr($0, RSTART + 2, RLENGTH - 2); sub(/<$/, "", f); if (/openat|socket\(/ && f + 0 > fd) fd = f + 0 } }
    END { printf "%d %d %d", trips, bytes, fd }' "$work/trace"
  printf ' %s' "$(tail -n1 "$work/rss")"
}

echo "ferry scale bench: $runs runs each, median wall time; libvirt $(virsh --version), $(nproc) cores"
printf '%-6s %-26s %12s %12s %9s\n' "guests" "operation" "heartbeat" "ferry" "ratio"
declare -A first
for n in $sizes; do
  fill_to "$n"
  row() {
    local what=$1 action=$2 instance=$3 config=$4 interval=$5 expect=$6 a f
    a=$(median_ms "$anchor" "$action" "$instance" "$config" "$interval" "$expect")
    f=$(median_ms "$ferry" "$action" "$instance" "$config" "$interval" "$expect")
    first[$what/a]=${first[$what/a]:-$a}; first[$what/f]=${first[$what/f]:-$f}
    printf '%-6s %-26s %9s ms %9s ms %8.1fx   growth from N=%s: heartbeat %.2fx, ferry %.2fx\n' "$n" "$what" "$a" "$f" \
      "$(awk -v a="$a" -v f="$f" 'BEGIN {print a / f}')" "${sizes%% *}" \
      "$(awk -v a="$a" -v b="${first[$what/a]}" 'BEGIN {print a / b}')" "$(awk -v a="$f" -v b="${first[$what/f]}" 'BEGIN {print a / b}')"
  }
  # The daemon's own pace at this N: one virsh domstate of the running guest.
  t0=$(date +%s%N); for _ in $(seq "$runs"); do virsh -c qemu:///system domstate "$up" >/dev/null; done; t1=$(date +%s%N)
  printf '%-6s reference: one virsh domstate %.1f ms (mean)\n' "$n" "$(awk -v t=$((t1 - t0)) -v n="$runs" 'BEGIN {print t / n / 1e6}')"
  row "monitor, running guest" monitor scale-up "$work/up.xml" 10000 0
  row "probe, runs nowhere" monitor scale-absent "$work/absent.xml" 0 7
  row "stop, runs nowhere" stop scale-absent "$work/absent.xml" 0 0
  ja=$(join_s "$anchor" "$n"); jf=$(join_s "$ferry" "$n")
  printf '%-6s %-26s %10s s %10s s %8.1fx\n' "$n" "join: $n probes, 4 at once" "$ja" "$jf" "$(awk -v a="$ja" -v f="$jf" 'BEGIN {print a / f}')"
  read -r trips bytes fd rss <<<"$(probe_cost)"
  printf '%-6s ferry probe: %s libvirt round trips, %s bytes read from libvirt, highest fd %s, peak RSS %s KiB\n' "$n" "$trips" "$bytes" "$fd" "$rss"
done
OCF_RESOURCE_INSTANCE=scale-up OCF_RESKEY_config=$work/up.xml OCF_RESKEY_force_stop=1 "$ferry" stop 2>/dev/null
