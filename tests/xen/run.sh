#!/bin/bash
# make test-xen: ocf:ferry:Xen on a real Xen 4.17 hypervisor (Debian's
# security-supported build), booted under QEMU. This machine's KVM cannot
# run Xen, so it is TCG with -cpu qemu64,+npt: TCG emulates AMD's nested
# paging, Xen finds HAP, and a PVH guest gets the log-dirty mode live
# migration needs (the build has no shadow paging, so a PV guest has none).
#   stage 1: one Xen host; inside dom0 the agent runs its lifecycle against
#            a PVH guest, then bad input (tests/xen/dom0/lifecycle.sh), then
#            resource-agents' ocf-tester;
#   stage 2: two Xen hosts joined by a private link (QEMU socket netdev on
#            loopback) and a shared directory (9p): a PV guest's live
#            migration fails cleanly and it moves by save migration; a PVH
#            guest's migration survives a cut link, then moves live
#            (tests/xen/dom0/migration.sh).
# dom0 reports every case on the serial console, which this script stamps
# with the host's clock as it arrives, and asserts. Every QEMU runs under
# `timeout` and is ended by the PID started here.
#   stage 3: the same two hosts as a corosync + Pacemaker cluster, each
#            dom0 running Debian 12's cluster userland over 9p
#            (tests/xen/dom0/cluster.sh): the README's marked Xen block
#            creates the resource, then start, a live move, standby,
#            reload-agent, recovery from xl destroy and from a crash, and
#            the xmfile hidden under the running guest, all by Pacemaker.
# FERRY_XEN_STAGE=1 runs stage 1 alone, a shorter check of the agent's
# own cases on one host; FERRY_XEN_STAGE=3 runs stage 3 alone.
# FERRY_XEN_DEBUG=1 has stage 3's dom0s print what runs and what the
# cluster logged every 20 s.
# FERRY_XEN_LOGS names the directory for the serial logs, each guest's
# console and xl's output; by default a temporary one, deleted on success
# and kept (and named) on failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$repo/build/xen
"$repo/tests/xen/build.sh" "$out" "$repo/build/ferry" "$repo/build/guest"
if [ -n "${FERRY_XEN_LOGS:-}" ]; then
  logs=$FERRY_XEN_LOGS keep_logs=1
  mkdir -p "$logs"
else
  logs=$(mktemp -d /tmp/ferry-xen-logs.XXXXXX) keep_logs=0
fi
pids=()
shared=
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -z "$shared" ] || rm -rf "$shared"
}
trap cleanup EXIT
trap 'exit 143' INT TERM
# The one-host stage also carries ocf-tester (the kernel unpacks the two
# archives one over the other).
cat "$out/dom0.cpio.gz" "$out/tester.cpio.gz" > "$out/dom0-tester.cpio.gz"

# stamp: each serial line, prefixed with the host's clock when it arrived
stamp() {
  local line
  while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "${line//$'\r'/}"; done
}

# boot ROLE LOG LIMIT_S INITRD [QEMU ARGS...]: starts one Xen host in the background
boot() {
  local role=$1 log=$2 limit=$3 initrd=$4; shift 4
  : > "$log"
  timeout -s KILL "$limit" qemu-system-x86_64 -machine pc -accel tcg -cpu qemu64,+npt -m 2048 -smp 1 \
    -display none -no-reboot -monitor none -serial stdio "$@" \
    -kernel "$out/xen" -append "console=com1 dom0_mem=1024M,max:1024M dom0_max_vcpus=1 noreboot" \
    -initrd "$out/vmlinuz console=hvc0 ferry.role=$role,$initrd" </dev/null > >(stamp > "$log") 2> "$log.qemu" &
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
  sleep 1   # the stamping reader's last lines
}

# boot_pair ROLE_A ROLE_B LOG_PREFIX QEMU_ARGS...: two Xen hosts, each with
# QEMU_ARGS, joined by a private link (a QEMU socket netdev on loopback: a
# listens, b connects); their serial logs are PREFIXa.log and PREFIXb.log.
# Waits for both to power off.
boot_pair() {
  local role_a=$1 role_b=$2 prefix=$3; shift 3
  local port=$((20000 + RANDOM % 20000))
  boot "$role_a" "$logs/${prefix}a.log" 1500 "$out/dom0.cpio.gz" "$@" -netdev "socket,id=n0,listen=127.0.0.1:$port" -device e1000,netdev=n0,mac=52:54:00:fe:00:01
  sleep 2
  boot "$role_b" "$logs/${prefix}b.log" 1500 "$out/dom0.cpio.gz" "$@" -netdev "socket,id=n0,connect=127.0.0.1:$port" -device e1000,netdev=n0,mac=52:54:00:fe:00:02
  watch_boot "$logs/${prefix}a.log" "$logs/${prefix}b.log"
  pids=()
}

failures=0
finish() {
  if [ "$failures" -ne 0 ]; then
    echo "xen: FAILED ($failures); serial logs, guest consoles and xl's output in $logs"
    exit 1
  fi
  if [ "$keep_logs" = 1 ]; then echo "xen: logs in $logs"; else rm -rf "$logs"; fi
  echo "xen: passed"
  exit 0
}
fail() { echo "xen: $*"; failures=$((failures + 1)); }
# verdict LOG CASES...: every named case reported, each with its expected code
verdict() {
  local log=$1; shift
  grep -a 'FERRY-XEN-' "$log" | grep -av 'FERRY-XEN-DOM0\|FERRY-XEN-GUEST\|FERRY-XEN-TESTER\|FERRY-XEN-XL\|FERRY-XEN-DEBUG\|FERRY-XEN-PCMK' | cut -d' ' -f2- | sed 's/^/    /'
  grep -qa 'FERRY-XEN-DONE' "$log" || fail "$log: dom0 did not finish"
  local case
  for case in "$@"; do
    local line
    line=$(grep -a "FERRY-XEN-CASE [a-z]* $case rc=" "$log" | head -1 || true)
    if [ -z "$line" ]; then
      fail "case $case was not reported"
    elif [ "$(sed 's/.* rc=\([0-9]*\) expect=\([0-9]*\).*/\1/' <<<"$line")" != "$(sed 's/.* expect=\([0-9]*\).*/\1/' <<<"$line")" ]; then
      fail "case $case failed: $line"
    fi
  done
}
# keep HOST LOG: each guest's console and xl's receiver output, in files of their own
keep() {
  local host=$1 log=$2 guest
  for guest in $(grep -ao 'FERRY-XEN-GUEST [a-z-]*:' "$log" | sort -u | awk '{print $2}' | tr -d :); do
    grep -a "FERRY-XEN-GUEST $guest: " "$log" | sed "s/ FERRY-XEN-GUEST $guest: / /" > "$logs/$host-console-$guest.log"
  done
  grep -a 'FERRY-XEN-XL ' "$log" | sed 's/ FERRY-XEN-XL / /' > "$logs/$host-xl.log" || true
  grep -a 'FERRY-XEN-AGENT ' "$log" | sed 's/ FERRY-XEN-AGENT / /' > "$logs/$host-agent.log" || true
  grep -a 'FERRY-XEN-PCMK ' "$log" | sed 's/ FERRY-XEN-PCMK / /' > "$logs/$host-pacemaker.log" || true
  grep -a 'FERRY-XEN-DEBUG ' "$log" | sed 's/ FERRY-XEN-DEBUG / /' > "$logs/$host-debug.log" || true
}
# tick LOG GUEST first|last: the tick number and host time of a guest's first or last tick on a host
tick() {
  grep -a "FERRY-XEN-GUEST $2\(--incoming\)\?: ferry-tick " "$1" | { if [ "$3" = first ]; then head -1; else tail -1; fi; } | awk '{print $NF, $1}'
}

# judge_ticks GUEST BOOTS LOG...: the guest's console across hosts, merged
# by the host's clock: it booted BOOTS times, and within each boot its
# counter never repeats a number and never skips one, whichever host it ran
# on. Two running copies would print the same numbers twice; a move that
# restarted it would start again at 1 with a boot between. Prints the gap
# at each change of host (the downtime the counter saw, to within a tick).
judge_ticks() {
  local guest=$1 boots=$2; shift 2
  local verdict
  verdict=$(for log in "$@"; do
      grep -a "FERRY-XEN-GUEST $guest\(--incoming\)\?: \(ferry-tick [0-9]*\|ferry-guest: up\)" "$log" |
        awk -v host="$(basename "$log" .log)" '{ if ($NF == "up") print $1, host, "up"; else print $1, host, $NF }'
    done | sort -n -k1,1 | awk -v want="$boots" '
      $3 == "up" { boots++; next }
      { n = $3; seen[boots, n]++; if (!((boots) in lo) || n < lo[boots]) lo[boots] = n; if (n > hi[boots]) hi[boots] = n
        if (host != "" && $2 != host && boots == hostboot) moves = moves sprintf(" %s->%s at tick %d, gap %.1f s;", host, $2, n, $1 - at - 1)
        host = $2; at = $1; hostboot = boots }
      END {
        for (b = 1; b <= boots; b++) for (n = lo[b]; n <= hi[b]; n++)
          if (seen[b, n] != 1) bad = bad sprintf(" boot %d tick %d seen %d times;", b, n, seen[b, n])
        printf "boots=%d moves:%s", boots, moves
        if (bad != "") printf " BAD:%s", bad
        if (boots != want) printf " BAD: %d boots, expected %d", boots, want
        print "" }')
  echo "xen: $guest's counter: $verdict"
  case $verdict in *BAD*) fail "$guest's counter: $verdict" ;; esac
}

want_stage() { [ -z "${FERRY_XEN_STAGE:-}" ] || [ "$FERRY_XEN_STAGE" = "$1" ]; }
if want_stage 1; then
echo "== xen stage 1: one host, the agent's lifecycle, ocf-tester"
boot single "$logs/single.log" 900 "$out/dom0-tester.cpio.gz" -nic none
watch_boot "$logs/single.log"
pids=()
echo "xen: stage 1 took $((SECONDS - started)) s"
grep -a 'HAP\|virt_caps' "$logs/single.log" | cut -d' ' -f2- | head -3 | sed 's/^/    /'
grep -qa 'Hardware Assisted Paging (HAP) detected' "$logs/single.log" || fail "Xen did not find HAP: no live migration for PVH"
verdict "$logs/single.log" probe validate validate-deep start monitor start-again guest-runs xl-pause monitor-paused xl-unpause monitor-unpaused \
  reload reload-same-domain \
  crash-start crash-listed-crashed crash-monitor crash-probe crash-stop crash-gone crash-monitor-stopped \
  odd-boots odd-rebooting odd-start odd-monitor odd-probe odd-stop odd-save-boots odd-suspended odd-probe-stopped odd-stop-stopped \
  odd-no-xmfile-probe odd-no-xmfile-stop odd-own-rebooting-probe odd-own-rebooting-stop odd-own-suspended-probe odd-away-probe \
  odd-away-stop odd-nothing-left odd-no-xmfile-alone save-migrate_to save-image-written \
  save-gone save-migrate_from save-image-removed save-guest-runs save-not-rebooted stop stop-graceful stop-again \
  monitor-stopped probe-stopped no-xmfile relative-xmfile missing-xmfile missing-xmfile-depth0 bad-shutdown-timeout bad-name clone \
  migrate-without-target unknown-action meta-data ocf-tester ocf-tester-passed ocf-tester-left-nothing
grep -a 'FERRY-XEN-TESTER' "$logs/single.log" | cut -d' ' -f2- | sed 's/^FERRY-XEN-TESTER /    ocf-tester: /' | tail -3
keep single "$logs/single.log"
fi

if want_stage 2; then
echo "== xen stage 2: two hosts; PV save migration, a cut link, PVH live migration a -> b"
shared=$(mktemp -d /tmp/ferry-xen-shared.XXXXXX)
started=$SECONDS
boot_pair a b "" -virtfs "local,path=$shared,mount_tag=shared,security_model=none,id=shared" \
  -virtfs "local,path=$shared,mount_tag=images,security_model=none,id=images"
echo "xen: stage 2 took $((SECONDS - started)) s"
verdict "$logs/a.log" peer-ready pv-start pv-guest-runs pv-live-migrate_to pv-live-failed-guest-here pv-live-failed-guest-runs \
  pv-migrate_to pv-gone-here start guest-runs peer-watching cut-migrate_to cut-in-budget cut-guest-here cut-guest-runs \
  link-back live-migrate_to ran-during-copy gone-here
verdict "$logs/b.log" probe pv-image-arrived pv-migrate_from pv-monitor pv-guest-runs pv-not-rebooted pv-image-removed pv-stop \
  cut-incoming-seen never-arrives never-arrives-in-budget cut-stop cut-nothing-left cut-source-done link-back \
  live-handed-over migrate_from monitor guest-runs not-rebooted xl-received-live stop
keep a "$logs/a.log"
keep b "$logs/b.log"
for log in "$logs/single.log" "$logs/a.log" "$logs/b.log"; do
  [ -e "$log" ] || continue
  grep -a 'FERRY-XEN-TIME' "$log" | awk -v host="$(basename "$log" .log)" '{printf "xen: %s: %s took %.1f s (dom0 clock)\n", host, $3, $5 - $4}'
done
# The live migration as the guest saw it: its counter goes on from a to b
# with no number lost or repeated, and the gap between its last tick on a
# and its first on b, less the second between ticks, is its downtime (to
# within a tick, as dom0 forwards the console once a second).
read -r last_a at_a < <(tick "$logs/a.log" xguest last) || true
read -r first_b at_b < <(tick "$logs/b.log" xguest first) || true
if [ -z "${last_a:-}" ] || [ -z "${first_b:-}" ]; then
  fail "the live-migrated guest's ticks were not seen on both hosts"
elif [ "$first_b" -ne $((last_a + 1)) ]; then
  fail "the guest's counter did not go on across the live migration: last tick on a $last_a, first on b $first_b"
else
  echo "xen: live migration: counter $last_a on a, then $first_b on b; downtime seen by the counter ~$(awk -v a="$at_a" -v b="$at_b" 'BEGIN { d = b - a - 1; printf "%.1f", d < 0 ? 0 : d }') s (+-1 s)"
fi
rm -rf "$shared"; shared=
fi

if want_stage 3; then
echo "== xen stage 3: the two hosts as a Pacemaker cluster; ocf:ferry:Xen driven by it"
shared=$(mktemp -d /tmp/ferry-xen-shared.XXXXXX)
# ferry as an operator installs it: dpkg -i of its .deb, here into the
# userland both dom0s share (read-only to them), in a private mount
# namespace. (dpkg run in dom0, over 9p, took python3 for not installed.)
"$repo/packaging/deb.sh" "$repo/build/ferry" "$shared" >/dev/null
unshare --mount --propagation private -- sh -c '
  mount --bind "$2" "$1/tmp" && chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg -i /tmp/"$3"' \
  sh "$out/cluster-root" "$shared" "$(basename "$shared"/ferry_*.deb)" > "$logs/dpkg.log" 2>&1 ||
  { cat "$logs/dpkg.log"; fail "dpkg -i of ferry into the cluster userland failed"; finish; }
awk '/^```sh xen-cluster-lab$/ {on = 1; next} on && /^```$/ {on = 0; next} on' "$repo/README.md" > "$shared/readme-xen.sh"
[ -s "$shared/readme-xen.sh" ] || fail "README.md has no block marked sh xen-cluster-lab"
[ -z "${FERRY_XEN_DEBUG:-}" ] || touch "$shared/debug"
started=$SECONDS
boot_pair ca cb cluster- -virtfs "local,path=$shared,mount_tag=shared,security_model=none,id=shared" \
  -virtfs "local,path=$out/cluster-root,mount_tag=userland,security_model=none,readonly=on,id=userland"
echo "xen: stage 3 took $((SECONDS - started)) s"
verdict "$logs/cluster-a.log" ferry-installed corosync cluster-online cluster-properties readme-block readme-no-warning \
  started start-settled start-recorded guest-runs monitor-recurring \
  move move-settled move-migrate_to move-migrate_from move-booted-once move-clear \
  standby standby-settled standby-migrate_to standby-migrate_from standby-booted-once unstandby unstandby-stays \
  reload reload-settled reload-ran reload-same-domain reload-utilization \
  destroy destroy-restarted destroy-settled crash crash-restarted crash-settled \
  hidden-refresh hidden-settled hidden-no-second-copy hidden-probe-running hidden-still-here delete deleted-nothing-left
verdict "$logs/cluster-b.log" ferry-installed corosync cluster-online
keep cluster-a "$logs/cluster-a.log"
keep cluster-b "$logs/cluster-b.log"
grep -a 'FERRY-XEN-OP \|FERRY-XEN-BOOTS \|FERRY-XEN-DOMID \|FERRY-XEN-UTILIZATION ' "$logs/cluster-a.log" | cut -d' ' -f2- | sed 's/^FERRY-XEN-/    /'
grep -a 'FERRY-XEN-TIME' "$logs/cluster-a.log" | awk '{printf "xen: cluster: %s took %.1f s (dom0 clock)\n", $3, $5 - $4}'
judge_ticks guest1 3 "$logs/cluster-a.log" "$logs/cluster-b.log"
fi
finish
