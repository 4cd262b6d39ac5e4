#!/bin/bash
# Chaos side by side (issue 25): tests/chaos's seeded schedule of faults,
# run under heartbeat:VirtualDomain and under ferry with the same seeds in
# the same lab, and the judge's counts for each run in one table: double
# runs, failed stops (each a fence in production), restarts, migrations and
# the longest time a guest had no running copy.
#
# A violation fails a chaos run. Here it is a figure, not an error: the
# point is to show where heartbeat runs a guest twice and ferry does not.
# The whole log of each run is kept in build/test-logs.
#
#   CHAOS_SEEDS    ("1 2")  the seeds, each run under every agent
#   CHAOS_MINUTES  (3)      as in tests/chaos
#   CHAOS_AGENTS   ("heartbeat ferry")
#
# In a lab brought up with FERRY_LAB_LEASES=1 each guest has a disk with a
# lease (make bench runs seed 1 so too).
#
# Run through tests/lab/with-two-nodes.sh --cluster (make bench does).
set -uo pipefail
seeds=${CHAOS_SEEDS:-"1 2"}
agents=${CHAOS_AGENTS:-"heartbeat ferry"}
export CHAOS_MINUTES=${CHAOS_MINUTES:-3}
mkdir -p build/test-logs
rows=()
# The lab's lease mode, for the logs' names: a run with leases keeps its own.
leases=
grep -qs "FERRY_LAB_LEASES=1" "${FERRY_LAB_DIR:-/nonexistent}/lab.env" && leases=-leases
for seed in $seeds; do
  for agent in $agents; do
    log=build/test-logs/bench-chaos-$agent-$seed$leases.log
    CHAOS_SEED=$seed CHAOS_AGENT=$agent cargo test --release --locked --test chaos -- --test-threads=1 --nocapture \
      no_guest_ever_runs_twice >"$log" 2>&1
    rc=$?
    line=$(grep -o 'chaos-result .*' "$log" | tail -n 1)
    [ -n "$line" ] || line="chaos-result seed=$seed agent=$agent (no result: the run ended before its report, rc $rc; see $log)"
    rows+=("$line")
  done
done
echo "chaos: ${CHAOS_MINUTES} minutes of faults per run, 3 guests, Pacemaker $(pacemakerd --version | head -n1 | awk '{print $2}')"
printf '%-5s %-10s %-7s %7s %11s %12s %9s %11s %18s\n' seed agent leases events migrations double_runs restarts failed_stops longest_unavailable
for line in "${rows[@]}"; do
  v() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  if [ -z "$(v events)" ]; then echo "${line#chaos-result }"; continue; fi
  printf '%-5s %-10s %-7s %7s %11s %12s %9s %11s %18s\n' "$(v seed)" "$(v agent)" "$(v leases)" "$(v events)" "$(v migrations)" \
    "$(v double_runs)" "$(v restarts)" "$(v failed_stops)" "$(v longest_unavailable)"
done
