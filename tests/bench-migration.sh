#!/bin/bash
# Benchmark: live migration between the two lab nodes, in one run, of
#   - raw `virsh migrate --live --p2p` (the floor: no agent at all),
#   - ferry: migrate_to on the source + migrate_from on the target,
#   - resource-agents' heartbeat:VirtualDomain, the same two actions,
# on an idle guest (medians of FERRY_BENCH_MIGRATIONS moves each, alternating
# direction); then the same guest over each stream ferry offers (TLS beside
# raw `virsh migrate --tls`, tunnelled, TLS with parallel connections); then on a guest that dirties 48 MiB continuously behind a
# 30 MiB/s link, which QEMU's defaults never converge, with a 60 s operation
# timeout for each. Downtime is libvirt's own (domjobinfo --completed on the
# target). Run inside the lab: tests/lab/with-two-nodes.sh (make bench).
set -euo pipefail
. "$(dirname "$0")/lab/common.sh"
lab=${FERRY_LAB_DIR:?run through tests/lab/with-two-nodes.sh}
stage_install
runs=${FERRY_BENCH_MIGRATIONS:-5}
ferry=$agent_dir/VirtualDomain
anchor=/usr/lib/ocf/resource.d/heartbeat/VirtualDomain
[ -x "$anchor" ] || { echo "bench: $anchor missing (resource-agents)" >&2; exit 1; }
on() { "$repo/tests/lab/two-nodes.sh" on "$lab" "$@"; }
uri() { echo "qemu+unix:///system?socket=$lab/$1/run/libvirt/libvirt-sock"; }
other() { [ "$1" = nodea ] && echo nodeb || echo nodea; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
export OCF_ROOT=/usr/lib/ocf OCF_RESKEY_migration_transport=tcp

cleanup_guests() {
  local n d
  for d in "${domains_to_clean[@]}"; do
    for n in nodea nodeb; do virsh -c "$(uri $n)" destroy "$d" >/dev/null 2>&1 || true; done
  done
}
trap 'cleanup_guests; cleanup_common' EXIT

# where NAME: the node running it
where() {
  local n
  for n in nodea nodeb; do
    if [ "$(virsh -c "$(uri $n)" domstate "$1" 2>/dev/null | head -1)" = running ]; then echo "$n"; fi
  done
}

downtime_on() { virsh -c "$(uri "$1")" domjobinfo --completed --rawstats "$2" 2>/dev/null | awk -F': ' '$1=="downtime" {print $2}'; }

# move METHOD NAME CONFIG FROM TIMEOUT_S [extra env...]: one migration; prints "ms downtime_ms" or "fail reason"
move() {
  local method=$1 name=$2 config=$3 from=$4 timeout=$5; shift 5
  local to t0 t1 rc=0
  to=$(other "$from")
  t0=$(now_ms)
  case $method in
    virsh)
      on "$from" timeout -s KILL "$timeout" virsh migrate --live --p2p "$@" "$name" "qemu+tcp://$to/system" >/dev/null 2>&1 || rc=$? ;;
    ferry|heartbeat)
      local agent=$ferry; [ "$method" = heartbeat ] && agent=$anchor
      env OCF_RESOURCE_INSTANCE="bench-$name" OCF_RESKEY_config="$config" OCF_RESKEY_CRM_meta_timeout=$((timeout * 1000)) \
        OCF_RESKEY_CRM_meta_migrate_source="$from" OCF_RESKEY_CRM_meta_migrate_target="$to" "$@" \
        "$repo/tests/lab/two-nodes.sh" on "$lab" "$from" timeout -s KILL "$timeout" "$agent" migrate_to >/dev/null 2>"$work/err" || rc=$?
      if [ "$rc" -eq 0 ]; then
        env OCF_RESOURCE_INSTANCE="bench-$name" OCF_RESKEY_config="$config" OCF_RESKEY_CRM_meta_timeout=60000 \
          OCF_RESKEY_CRM_meta_migrate_source="$from" OCF_RESKEY_CRM_meta_migrate_target="$to" "$@" \
          "$repo/tests/lab/two-nodes.sh" on "$lab" "$to" timeout -s KILL 60 "$agent" migrate_from >/dev/null 2>>"$work/err" || rc=$?
      fi ;;
  esac
  t1=$(now_ms)
  if [ "$rc" -eq 0 ] && [ "$(where "$name")" = "$to" ]; then
    echo "$((t1 - t0)) $(downtime_on "$to" "$name")"
  else
    # Whatever was left running: abort it so the guest ends on one node.
    virsh -c "$(uri "$from")" domjobabort "$name" >/dev/null 2>&1 || true
    sleep 3
    echo "fail $((t1 - t0)) rc=$rc, now on: $(where "$name" | tr '\n' ' ')"
  fi
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) {print "n/a"; exit} m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m}'; }

boot() {
  local name=$1 config=$2 log=$3
  OCF_RESOURCE_INSTANCE="bench-$name" OCF_RESKEY_config="$config" on nodea "$ferry" start 2>/dev/null
  for _ in $(seq 60); do grep -q 'ferry-tick 2' "$log" 2>/dev/null && return 0; sleep 1; done
  echo "bench: $name did not boot" >&2; exit 1
}

idle="ferry-mbench-idle-$$"
write_guest "$idle" "$work/idle.xml" "$work/idle.log"
boot "$idle" "$work/idle.xml" "$work/idle.log"
# Warm-up: a fresh libvirtd probes QEMU's capabilities on its first guest.
move virsh "$idle" "$work/idle.xml" nodea 60 >/dev/null
move virsh "$idle" "$work/idle.xml" nodeb 60 >/dev/null
echo "ferry migration bench: lab nodes nodea/nodeb (veth), 128 MiB TCG guest, libvirt $(virsh --version), $runs moves each"
echo
# row KEY LABEL METHOD [ARGS...]: $runs moves of the idle guest, alternating
# direction; prints the medians and keeps the total's in total[KEY].
declare -A total
row() {
  local key=$1 label=$2 method=$3 fails=0 i from r; shift 3
  : > "$work/$key.samples"
  for i in $(seq "$runs"); do
    from=$(where "$idle")
    r=$(move "$method" "$idle" "$work/idle.xml" "$from" 60 "$@")
    case $r in fail*) fails=$((fails + 1)); echo "  $label: $r" >&2 ;; *) echo "$r" >> "$work/$key.samples" ;; esac
  done
  total[$key]=$(awk '{print $1}' "$work/$key.samples" | median)
  printf '%-34s %12s %14s %6s\n' "$label" "${total[$key]}" "$(awk '{print $2}' "$work/$key.samples" | median)" "$fails"
}
ratio() { awk -v a="${total[$2]}" -v b="${total[$3]}" -v what="$1" 'BEGIN { printf "%s: %+.1f%% total time\n", what, (a / b - 1) * 100 }'; }

# The agents' own cost, all three in clear text (heartbeat knows no other).
printf '%-34s %12s %14s %6s\n' "idle guest, live, clear text" "total (ms)" "downtime (ms)" "fails"
row virsh "virsh" virsh
row ferry "ferry" ferry OCF_RESKEY_migration_encryption=none
row heartbeat "heartbeat" heartbeat
ratio "ferry vs raw virsh" ferry virsh
ratio "heartbeat vs raw virsh" heartbeat virsh

# What encryption costs, the same guest: TLS against raw virsh --tls (the
# floor), against clear text, and the other streams.
echo
printf '%-34s %12s %14s %6s\n' "idle guest, live, by stream" "total (ms)" "downtime (ms)" "fails"
row virsh_tls "virsh --tls" virsh --tls
row tls "ferry tls" ferry OCF_RESKEY_migration_encryption=tls
row auto "ferry auto (default: TLS here)" ferry
row tunnelled "ferry tunnelled (qemu+tls)" ferry OCF_RESKEY_migration_encryption=tunnelled OCF_RESKEY_migration_transport=tls
row parallel "ferry tls, 4 parallel" ferry OCF_RESKEY_migration_encryption=tls OCF_RESKEY_migration_parallel=4
ratio "ferry tls vs raw virsh --tls" tls virsh_tls
ratio "ferry tls vs ferry clear text" tls ferry
ratio "ferry tunnelled vs ferry tls" tunnelled tls
ratio "ferry tls + 4 parallel vs ferry tls" parallel tls
OCF_RESOURCE_INSTANCE="bench-$idle" OCF_RESKEY_config="$work/idle.xml" OCF_RESKEY_force_stop=1 on "$(where "$idle")" "$ferry" stop 2>/dev/null

echo
dirty="ferry-mbench-dirty-$$"
write_guest "$dirty" "$work/dirty.xml" "$work/dirty.log"
sed -i 's|</cmdline>| ferry.dirty=48</cmdline>|' "$work/dirty.xml"
boot "$dirty" "$work/dirty.xml" "$work/dirty.log"
printf '%-34s %12s %14s\n' "dirtying guest, 30 MiB/s, 60 s" "total (ms)" "downtime (ms)"
for method in virsh heartbeat ferry; do
  from=$(where "$dirty")
  case $method in
    virsh) r=$(move virsh "$dirty" "$work/dirty.xml" "$from" 60 --bandwidth 30) ;;
    *) r=$(move "$method" "$dirty" "$work/dirty.xml" "$from" 60 OCF_RESKEY_migration_speed=30) ;;
  esac
  case $r in
    fail*) printf '%-34s %s\n' "$method" "did not finish: ${r#fail }" ;;
    *) printf '%-34s %12s %14s\n' "$method" ${r} ;;
  esac
done
if grep -q "allowing" "$work/err" 2>/dev/null; then
  echo "ferry's ladder: $(grep -o 'allowing [0-9]* ms downtime' "$work/err" | tr '\n' ';')"
fi
