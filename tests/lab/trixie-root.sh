#!/bin/bash
# Builds the Debian 13 (trixie) root the labs run a node from on this Debian 12
# machine (tests/lab/in-trixie.sh runs commands inside it), or keeps the one
# already built (tests/lab/debian-root.sh says how it is cached).
#
# Usage: tests/lab/trixie-root.sh [ROOT]      (default: build/trixie-root)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
# What the labs and their tests call: libvirtd and QEMU, corosync, Pacemaker
# and its tools (crm_resource, the OCF schemas), pcs and crmsh (the README's
# cluster blocks use both), heartbeat's agents, ocf-tester and ocft,
# xmllint, the guest image tools, and what the integration suite's own checks
# run (make install, man -l, su, strace).
exec "$repo/tests/lab/debian-root.sh" trixie-root trixie "${1:-$repo/build/trixie-root}" \
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 \
  pacemaker pacemaker-cli-utils corosync pcs crmsh resource-agents \
  libxml2-utils busybox-static cpio iproute2 strace mount procps make man-db
