#!/bin/bash
# Drain bench (issue 12): nodea of the two-node cluster lab put in standby
# with several guests on it, ferry and resource-agents' heartbeat:VirtualDomain
# at the same loads in the same lab. Runs tests/drain once per agent and load,
# and prints one row each: drain time against the floor (every guest's memory
# over the link once), restarts, failed migrate_to, downtime (p50, max), the
# machine's CPU use, the link's use and its seconds below half its rate, and
# the most migrations that ran at once.
#
# Run through tests/lab/with-two-nodes.sh --cluster (make bench does).
# FERRY_DRAIN_LOADS picks the loads: "GUESTS/DIRTY/RATE/LINK/MIGRATE_TO ...";
# FERRY_DRAIN_AGENTS the agents: heartbeat, ferry (its default
# migration_slots, 0: no limit), ferry:N (migration_slots=N);
# FERRY_DRAIN_ACTION_LIMIT Pacemaker's node-action-limit (unset: its default),
# FERRY_DRAIN_MIGRATION_LIMIT its migration-limit (unset: none).
set -uo pipefail
loads=${FERRY_DRAIN_LOADS:-"6/3/4/20/120 8/4/4/8/120 8/4/4/8/60 8/8/4/8/60"}
agents=${FERRY_DRAIN_AGENTS:-"heartbeat ferry ferry:2"}
results=$(mktemp)
trap 'rm -f "$results"' EXIT
echo "Pacemaker node-action-limit: ${FERRY_DRAIN_ACTION_LIMIT:-default (2 x cores, less under load)}, migration-limit: ${FERRY_DRAIN_MIGRATION_LIMIT:-none}"
printf '%-9s %-22s %7s %6s %6s %5s %8s %10s %10s %5s %5s %5s %4s\n' agent "load (n/dirty/rate/link/to)" drain floor ratio rest. failed_to "dt p50" "dt max" cpu "link" idle par
for load in $loads; do
  IFS=/ read -r guests dirty rate link to <<<"$load"
  for agent in $agents; do
    slots=${agent#*:}; [ "$slots" != "$agent" ] || slots=
    line=$(FERRY_DRAIN_SLOTS=$slots FERRY_DRAIN_GUESTS=$guests FERRY_DRAIN_DIRTY=$dirty FERRY_DRAIN_RATE=$rate \
      FERRY_DRAIN_LINK=$link FERRY_DRAIN_MIGRATE_TO=$to FERRY_DRAIN_AGENT=${agent%%:*} \
      cargo test --release --locked --test drain -- --test-threads=1 --nocapture 2>&1 | grep -o 'drain-result .*')
    [ -n "$line" ] || { echo "bench-drain: no result for $agent at $load" >&2; continue; }
    echo "$line" >>"$results"
    v() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    printf '%-9s %-22s %6ss %5ss %6s %5s %8s %10s %10s %5s %5s %5s %4s\n' "$agent" "$load" "$(v time)" "$(v floor)" "$(v ratio)x" \
      "$(v restarts)" "$(v failed_migrate_to)" "$(v downtime_p50)" "$(v downtime_max)" "$(v cpu_busy)" "$(v link_used)" "$(v link_idle)" "$(v max_parallel)"
  done
done
echo "raw results:"
cat "$results"
