#!/bin/bash
# resource-agents' ocf-tester against the installed ocf:ferry:VirtualDomain and
# a real guest. Passes only if ocf-tester reports every test passed.
set -euo pipefail
. "$(dirname "$0")/lab/common.sh"
stage_install
name="ferry-ocftester-$$"
write_guest "$name" "$work/guest.xml" "$work/console.log"
chmod 755 "$work"   # ocf-tester runs meta-data as nobody
echo "== ocf-tester on $agent_dir/VirtualDomain"
set +e
ocf-tester -n vm-ocftester -o config="$work/guest.xml" "$agent_dir/VirtualDomain" 2>&1 | tee "$work/ocf-tester.log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ] || ! grep -q "passed all tests" "$work/ocf-tester.log"; then
  echo "ocf-tester: FAILED (rc=$rc)"
  exit 1
fi
if virsh -c qemu:///system domstate "$name" >/dev/null 2>&1; then
  echo "ocf-tester: the guest was left running"
  exit 1
fi
echo "ocf-tester: passed"
