#!/bin/bash
# Every test suite, in order; each runs even if an earlier one failed, and the
# last line counts suites as "N passed, N failed". Each single-node suite gets
# a private libvirtd of its own (tests/lab/with-libvirtd.sh), so a libvirtd the
# host runs is never touched; the migration and cluster suites bring up their
# own two-node lab.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0 failed=0 failures=()
# Each suite's output is also kept in build/test-logs/NAME.log: CI shows only
# the end of the run, so the summary below repeats why each failed suite failed.
logs=build/test-logs
mkdir -p "$logs"
suite() {
  local name=$1; shift
  echo
  echo "==== $name: $*"
  local started=$SECONDS
  local dmesg_from
  dmesg_from=$(dmesg 2>/dev/null | wc -l)
  local rc
  "$@" 2>&1 | tee "$logs/$name.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); echo "==== $name: ok ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "==== $name: FAILED (exit $rc, $((SECONDS - started)) s)"
    echo "exit status $rc after $((SECONDS - started)) s" >> "$logs/$name.log"
    dmesg 2>/dev/null | tail -n +"$((dmesg_from + 1))" > "$logs/$name.dmesg"
  fi
}
# The lines that say why a suite failed: Rust's panics and their messages,
# failed test names, a shell suite's own FAIL lines, the lab scripts' own
# complaints (two-nodes:, in-trixie:), and the one-line results the lab
# suites print (drain-result, scale-phase). Then the end of the log, which
# says what happened last when none of those matched (a lab that never came
# up, a process killed by a signal), and what the kernel said of killed or
# crashed processes while the suite ran.
why() {
  grep -a -E -A5 "panicked at|^test .* FAILED|FAIL|not ok|error:|^(two-nodes|in-trixie|trixie-root|xen-cluster-root): |^(drain-result|scale-phase)" "$logs/$1.log" |
    grep -a -v -E "^(stack backtrace|note: run with|--$)" | cut -c1-300 | head -n 18
  echo "-- the last lines of its log:"
  tail -n 12 "$logs/$1.log" | cut -c1-300
  local kernel
  kernel=$(grep -a -E "Out of memory|oom-kill|Killed process|segfault|general protection|hung_task" "$logs/$1.dmesg" 2>/dev/null | tail -n 6)
  [ -z "$kernel" ] || { echo "-- the kernel, while it ran:"; echo "$kernel"; }
  echo "-- the machine after it: $(df -h --output=avail,pcent / 2>/dev/null | tail -n 1 | tr -s ' ') free on /, $(free -m | awk '/^Mem:/ {print $7}') MiB memory available"
}
solo=tests/lab/with-libvirtd.sh
# A libvirtd the host runs must come out of the run as it went in.
host_libvirtd() { pgrep -x -d, libvirtd 2>/dev/null | tr , '\n' | while read -r p; do [ "$(readlink /proc/"$p"/ns/net)" = "$(readlink /proc/self/ns/net)" ] && echo "$p"; done | sort | tr '\n' ' '; }
host_before=$(host_libvirtd)
suite unit           cargo test --release --locked --bins
suite package        tests/package.sh
suite integration    $solo cargo test --release --locked --test integration -- --test-threads=2
suite libvirtd-down  $solo cargo test --release --locked --test libvirtd_down
suite faults         $solo cargo test --release --locked --test faults -- --test-threads=1 --nocapture
suite migration      tests/lab/with-two-nodes.sh cargo test --release --locked --test migration -- --test-threads=1
suite faults-lab     tests/lab/with-two-nodes.sh cargo test --release --locked --test faults_lab -- --test-threads=1
suite cluster        tests/lab/with-two-nodes.sh --cluster cargo test --release --locked --test cluster -- --test-threads=1 --nocapture
suite drain          tests/lab/with-two-nodes.sh --cluster cargo test --release --locked --test drain -- --test-threads=1 --nocapture
suite scale          tests/lab/with-two-nodes.sh --cluster cargo test --release --locked --test scale -- --test-threads=1 --nocapture
# A short chaos run (issue 25): a fixed seed, so the same schedule of faults
# every time; it passes on the invariant (no guest twice, no failed stop),
# never on a time. make chaos runs longer ones with any seed.
suite chaos          env CHAOS_SEED=1 CHAOS_MINUTES=2 tests/lab/with-two-nodes.sh --cluster cargo test --release --locked --test chaos -- --test-threads=1 --nocapture
# Disk leases (virtlockd, a lockspace both nodes share): a guest moved
# behind the cluster's back is not started a second time.
suite leases         env FERRY_LAB_LEASES=1 tests/lab/with-two-nodes.sh --cluster cargo test --release --locked --test leases -- --test-threads=1 --nocapture
suite xen            tests/xen/run.sh
# Debian 13 (issue 27): the root is built once and cached in build/, then the
# single-node suites run inside it, on trixie's libvirt 11.3 and QEMU 10.0,
# from the test binaries built here (the root has no compiler).
on_trixie() { local bin; bin=$(tests/lab/test-binary.sh "$1") || return 1; shift; tests/lab/in-trixie.sh $solo "$bin" "$@"; }
suite trixie-root    tests/lab/trixie-root.sh
suite trixie-integration   on_trixie integration --test-threads=2
suite trixie-libvirtd-down on_trixie libvirtd_down
# Two Debian 13 nodes (the lab's FERRY_LAB_TRIXIE): the cluster under
# Pacemaker 3.0, and the migration and fault cases whose tools changed
# (the Makefile's test-trixie names the same ones).
trixie_nodes() { env FERRY_LAB_TRIXIE="nodea nodeb" "$@"; }
suite trixie-cluster       trixie_nodes tests/lab/with-two-nodes.sh --cluster cargo test --release --locked --test cluster -- --test-threads=1 --nocapture
suite trixie-migration     trixie_nodes tests/lab/with-two-nodes.sh cargo test --release --locked --test migration -- --test-threads=1 \
                             live_round_trip tunnelled_and_parallel_tls postcopy_round_trip killing_the_target_libvirtd
suite trixie-faults        on_trixie faults --test-threads=1 --nocapture one_socket_error a_hung_libvirtd monitors_and_probes_leave_no_hang_up
suite trixie-ocf-tester    tests/lab/in-trixie.sh $solo tests/ocf-tester.sh
suite trixie-ocft          tests/lab/in-trixie.sh $solo tests/ocft.sh
# The rolling upgrade: a Debian 12 and a Debian 13 node in one cluster.
suite upgrade              env FERRY_LAB_TRIXIE=nodeb tests/lab/with-two-nodes.sh --cluster cargo test --release --locked --test upgrade -- --test-threads=1 --nocapture
suite ocf-tester     $solo tests/ocf-tester.sh
suite ocft           $solo tests/ocft.sh
host_after=$(host_libvirtd)
if [ "$host_before" != "$host_after" ]; then
  failed=$((failed + 1)); failures+=("host-libvirtd")
  echo "==== the host's libvirtd changed during the run: [$host_before] -> [$host_after]"
fi
echo
for name in "${failures[@]}"; do
  [ -f "$logs/$name.log" ] || continue
  echo "---- why $name failed (whole output: $logs/$name.log)"
  why "$name"
done
[ "$failed" -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
