#!/bin/bash
# resource-agents' own ocft cases for VirtualDomain, run against ferry: the
# case file shipped in /usr/share/resource-agents/ocft/configs/VirtualDomain,
# with only its agent root and guest config pointed at ferry and a real guest.
set -euo pipefail
. "$(dirname "$0")/lab/common.sh"
stage_install
name="ferry-ocft-$$"
write_guest "$name" "$work/guest.xml" "$work/console.log"
mkdir -p "$work/configs"
sed -e "s|^\(\s*AgentRoot\s\+\).*|\1$agent_dir|" \
    -e "s|^\(\s*OCFT_config=\).*|\1$work/guest.xml|" \
    /usr/share/resource-agents/ocft/configs/VirtualDomain > "$work/configs/VirtualDomain"
grep -q "AgentRoot $agent_dir" "$work/configs/VirtualDomain"
echo "== ocft make/test VirtualDomain (agent root $agent_dir)"
ocft make -d "$work/configs" VirtualDomain | tee "$work/make.log"
set +e
ocft test VirtualDomain 2>&1 | tee "$work/ocft.log"
set -e
made=$(grep -c -- '- case [0-9]*:' "$work/make.log" || true)
ok=$(grep -c -- ' - .*OK' "$work/ocft.log" || true)
ocft clean VirtualDomain >/dev/null 2>&1 || true
echo "ocft: $ok of $made cases OK"
if [ "$made" -lt 9 ] || [ "$ok" -ne "$made" ]; then
  echo "ocft: FAILED"
  exit 1
fi
echo "ocft: passed"
