#!/bin/bash
# Runs a command with the two-node lab up (tests/lab/two-nodes.sh), and takes
# the lab down afterwards - also when the command fails or is interrupted.
# The command finds the lab through FERRY_LAB_DIR. With --cluster the nodes
# also run corosync and Pacemaker, with ferry installed for them.
# Usage: tests/lab/with-two-nodes.sh [--cluster] CMD [ARGS...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab=$(mktemp -d /tmp/ferry-lab.XXXXXX)
child=
cleanup() { "$here/two-nodes.sh" down "$lab"; }
trap cleanup EXIT
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; exit 143' INT TERM
with_cluster=
if [ "${1:-}" = --cluster ]; then with_cluster=1; shift; fi
rmdir "$lab"
"$here/two-nodes.sh" up "$lab" || exit 1
if [ -n "$with_cluster" ]; then "$here/two-nodes.sh" cluster "$lab" || exit 1; fi
export FERRY_LAB_DIR=$lab
"$@" &
child=$!
wait "$child"
