#!/bin/bash
# make test-xen: ocf:ferry:Xen on a real Xen 4.17 hypervisor, booted under
# QEMU (TCG, -cpu qemu64: this machine's KVM cannot run Xen).
#   stage 1: one Xen host; inside dom0 the agent runs its lifecycle against
#            a PV guest, then bad input (tests/xen/dom0/lifecycle.sh);
#   stage 2: two Xen hosts joined by a private link (QEMU socket netdev on
#            loopback) and a shared directory (9p): a live xl migrate from a
#            to b, which this Xen build cannot do (no shadow paging for PV
#            log-dirty, no HAP under TCG) and which must fail with the guest
#            still running on a; then a save migration, migrate_to on a and
#            migrate_from on b (tests/xen/dom0/migration.sh).
# dom0 reports every case on the serial console; this script asserts them.
# Every QEMU runs under `timeout` and is ended by the PID started here.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$repo/build/xen
logs=$repo/build/xen-logs
"$repo/tests/xen/build.sh" "$out" "$repo/build/ferry" "$repo/build/guest"
rm -rf "$logs"; mkdir -p "$logs"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 143' INT TERM

# boot ROLE LOG LIMIT_S [QEMU ARGS...]: starts one Xen host in the background
boot() {
  local role=$1 log=$2 limit=$3; shift 3
  : > "$log"
  timeout -s KILL "$limit" qemu-system-x86_64 -machine pc -accel tcg -cpu qemu64 -m 2048 -smp 1 \
    -display none -no-reboot -monitor none -serial "file:$log" "$@" \
    -kernel "$out/xen" -append "console=com1 dom0_mem=1024M,max:1024M dom0_max_vcpus=1 noreboot" \
    -initrd "$out/vmlinuz console=hvc0 ferry.role=$role,$out/dom0.cpio.gz" &
  pids+=($!)
}

# watch LOG...: waits for every QEMU, printing when each dom0 came up
started=$SECONDS
watch_boot() {
  local log
  declare -A seen=()
  while :; do
    for log in "$@"; do
      if [ -z "${seen[$log]:-}" ] && grep -qa 'FERRY-XEN-DOM0' "$log"; then
        seen[$log]=1
        echo "xen: $(basename "$log" .log): dom0 ready $((SECONDS - started)) s after QEMU started ($(grep -ao 'FERRY-XEN-DOM0.*' "$log" | head -1))"
      fi
    done
    local alive=0 pid
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 1 ] || break
    sleep 1
  done
}

# verdict LOG CASES...: every named case reported, each with its expected code
failures=0
verdict() {
  local log=$1; shift
  grep -a 'FERRY-XEN-' "$log" | grep -v 'FERRY-XEN-DOM0' | tr -d '\r' | sed 's/^/    /'
  grep -qa 'FERRY-XEN-DONE' "$log" || { echo "xen: $log: dom0 did not finish (see $log)"; failures=$((failures + 1)); }
  local case
  for case in "$@"; do
    local line
    line=$(grep -a "FERRY-XEN-CASE [a-z]* $case rc=" "$log" | tr -d '\r' | head -1)
    if [ -z "$line" ]; then
      echo "xen: case $case was not reported"; failures=$((failures + 1))
    elif [ "$(sed 's/.* rc=\([0-9]*\) expect=\([0-9]*\).*/\1/' <<<"$line")" != "$(sed 's/.* expect=\([0-9]*\).*/\1/' <<<"$line")" ]; then
      echo "xen: case $case failed: $line"; failures=$((failures + 1))
    fi
  done
}

echo "== xen stage 1: one host, the agent's lifecycle"
boot single "$logs/single.log" 900 -nic none
watch_boot "$logs/single.log"
pids=()
echo "xen: stage 1 took $((SECONDS - started)) s"
verdict "$logs/single.log" probe validate start monitor start-again guest-runs save-migrate_to save-image-written \
  save-gone save-migrate_from save-image-removed save-guest-runs save-not-rebooted stop stop-graceful stop-again \
  monitor-stopped probe-stopped no-xmfile relative-xmfile missing-xmfile bad-shutdown-timeout bad-name clone \
  migrate-without-target unknown-action meta-data

echo "== xen stage 2: two hosts, migration a -> b"
port=$((20000 + RANDOM % 20000))
shared=$(mktemp -d /tmp/ferry-xen-shared.XXXXXX)
trap 'cleanup; rm -rf "$shared"' EXIT
share=(-virtfs "local,path=$shared,mount_tag=shared,security_model=none,id=shared"
       -virtfs "local,path=$shared,mount_tag=images,security_model=none,id=images")
started=$SECONDS
boot a "$logs/a.log" 1500 "${share[@]}" -netdev "socket,id=n0,listen=127.0.0.1:$port" -device e1000,netdev=n0,mac=52:54:00:fe:00:01
sleep 2
boot b "$logs/b.log" 1500 "${share[@]}" -netdev "socket,id=n0,connect=127.0.0.1:$port" -device e1000,netdev=n0,mac=52:54:00:fe:00:02
watch_boot "$logs/a.log" "$logs/b.log"
pids=()
echo "xen: stage 2 took $((SECONDS - started)) s"
verdict "$logs/a.log" peer-ready start guest-runs live-migrate_to live-failed-guest-here live-failed-guest-runs \
  migrate_to monitor-after
verdict "$logs/b.log" probe image-arrived migrate_from monitor guest-runs not-rebooted image-removed stop
for log in "$logs/a.log" "$logs/b.log"; do
  grep -a 'FERRY-XEN-TIME' "$log" | tr -d '\r' | awk '{printf "xen: %s took %.1f s (dom0 clock)\n", $2, $4 - $3}'
done
if [ "$failures" -ne 0 ]; then
  echo "xen: FAILED ($failures); serial logs in $logs"
  exit 1
fi
echo "xen: passed"
