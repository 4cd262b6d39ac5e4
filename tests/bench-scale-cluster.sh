#!/bin/bash
# Cluster scale bench (issue 26): tests/scale's cluster of FERRY_SCALE_GUESTS
# (100) tiny guests and 2 test guests, run once with heartbeat:VirtualDomain
# and once with ferry, in the same lab. For each phase (start; probe, a
# `crm_resource --refresh` that probes every resource on both nodes; drain,
# a standby of nodeb; back, nodeb's Pacemaker restarted so that it probes
# everything as it rejoins) it prints the wall time, the CPU time of the
# agents (everything pacemaker-execd's children used, see AgentCpu in
# tests/support/lab.rs) and their share of the machine, libvirtd's CPU
# time, and heartbeat's agent CPU over ferry's.
#
# Run through tests/lab/with-two-nodes.sh --cluster (make bench does).
set -uo pipefail
agents=${FERRY_SCALE_AGENTS:-"heartbeat ferry"}
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for agent in $agents; do
  log=build/test-logs/bench-scale-cluster-$agent.log
  mkdir -p build/test-logs
  FERRY_SCALE_AGENT=$agent cargo test --release --locked --test scale -- --test-threads=1 --nocapture >"$log" 2>&1
  rc=$?
  grep -o 'scale-phase .*' "$log" | sed "s/^/$agent /" >>"$results"
  # A failed run's figures are not comparable: say so beside them.
  [ "$rc" = 0 ] || echo "bench-scale-cluster: the $agent run failed (rc $rc); see $log" >&2
done
echo "cluster of ${FERRY_SCALE_GUESTS:-100} tiny guests + 2 test guests, $(nproc) cores, Pacemaker $(pacemakerd --version | head -n1 | awk '{print $2}')"
printf '%-6s %-10s %8s %10s %8s %12s %8s\n' phase agent time agent_cpu share libvirtd_cpu share
for phase in start probe drain back; do
  for agent in $agents; do
    line=$(awk -v a="$agent" -v p="$phase" '$1 == a && $3 == p' "$results")
    [ -n "$line" ] || { printf '%-6s %-10s %8s\n' "$phase" "$agent" "no result"; continue; }
    v() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    printf '%-6s %-10s %7ss %10s %8s %12s %8s\n' "$phase" "$agent" "$(awk '{print $4}' <<<"$line")" \
      "$(v agent_cpu)" "$(v agent_share)" "$(v libvirtd_cpu)" "$(v libvirtd_share)"
  done
  h=$(awk -v p="$phase" '$1 == "heartbeat" && $3 == p' "$results" | sed -n 's/.* agent_cpu=\([0-9.]*\)s.*/\1/p')
  f=$(awk -v p="$phase" '$1 == "ferry" && $3 == p' "$results" | sed -n 's/.* agent_cpu=\([0-9.]*\)s.*/\1/p')
  [ -n "$h" ] && [ -n "$f" ] && awk -v h="$h" -v f="$f" -v p="$phase" \
    'BEGIN { if (f > 0) printf "%-6s agents CPU, heartbeat over ferry: %.1fx\n", p, h / f; else printf "%-6s agents CPU: ferry under one tick\n", p }'
done
echo "raw results:"
cat "$results"
