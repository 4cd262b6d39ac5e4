#!/bin/bash
# make deb, checked as an operator meets it: lintian reports no errors; then,
# in a private mount namespace whose package-owned trees are overlays (the
# host's /usr and dpkg database stay untouched, and the namespace ends with
# this script), dpkg -i installs it, crm_resource --show-metadata finds both
# agents, man renders both pages with every parameter, systemd accepts the
# shutdown-order drop-in, and dpkg --purge leaves no file behind.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "package: FAILED: $*" >&2; exit 1; }
# The trees the package or dpkg's triggers (man-db) write to.
trees=(/usr/lib/ocf /usr/share/man /usr/share/doc /usr/share/lintian /usr/lib/systemd/system /var/lib/dpkg /var/cache/man)

inside() {
  local scratch=$1 deb=$2 t i=0
  for t in "${trees[@]}"; do
    mkdir -p "$t" "$scratch/upper$i" "$scratch/work$i"
    # The overlay's root takes its owner and mode from the upper directory.
    chown --reference="$t" "$scratch/upper$i" && chmod --reference="$t" "$scratch/upper$i"
    mount -t overlay overlay -o "lowerdir=$t,upperdir=$scratch/upper$i,workdir=$scratch/work$i" "$t"
    i=$((i + 1))
  done
  local before=$scratch/before after=$scratch/after
  find /usr/lib/ocf /usr/share/man /usr/share/doc /usr/share/lintian /usr/lib/systemd/system | sort >"$before"
  echo "== dpkg -i"
  dpkg --log=/dev/null -i "$deb"
  dpkg-query -W -f='${Status}\n' ferry | grep "install ok installed" >/dev/null || fail "dpkg does not list ferry as installed"
  for agent in $(/usr/lib/ocf/lib/ferry/ferry list); do
    echo "== crm_resource --show-metadata ocf:ferry:$agent"
    md=$(crm_resource --show-metadata "ocf:ferry:$agent") || fail "crm_resource --show-metadata ocf:ferry:$agent"
    grep -q "<resource-agent name=\"$agent\"" <<<"$md" || fail "$agent: not its meta-data"
    grep -q 'reloadable="1"' <<<"$md" || fail "$agent: no reloadable parameter"
    echo "== man ocf_ferry_$agent"
    page=$(man -w "ocf_ferry_$agent") || fail "man cannot find ocf_ferry_$agent"
    warnings=$(man --warnings -l "$page" 2>&1 >/dev/null) || true
    [ -z "$warnings" ] || fail "$agent: man warns: $warnings"
    text=$(MANWIDTH=200 man -l "$page" 2>/dev/null)
    grep -q "^ *OCF_FERRY_${agent^^}(7)" <<<"$text" || fail "$agent: no header"
    for section in NAME SYNOPSIS DESCRIPTION "SUPPORTED PARAMETERS" "SUPPORTED ACTIONS" "EXAMPLE CRM SHELL" "EXAMPLE PCS"; do
      grep -q "^$section" <<<"$text" || fail "$agent: no $section section"
    done
    for param in $(grep -o '<parameter name="[^"]*"' <<<"$md" | cut -d'"' -f2); do
      grep -q "^ *$param (" <<<"$text" || fail "$agent: the page lacks parameter $param"
    done
    grep -q "reload-agent" <<<"$text" || fail "$agent: the page lacks reload-agent"
  done
  # This machine has no systemd as PID 1: what is checked is that systemd
  # parses the drop-in without a complaint, that it orders the target after
  # libvirt's and xl's services, and that Pacemaker's own unit is ordered
  # after the target, the chain a shutdown's reverse order relies on.
  echo "== systemd-analyze verify resource-agents-deps.target"
  dropin=/lib/systemd/system/resource-agents-deps.target.d/ferry.conf
  [ -f "$dropin" ] || fail "no $dropin"
  complaints=$(systemd-analyze verify resource-agents-deps.target 2>&1 | grep ferry.conf || true)
  [ -z "$complaints" ] || fail "systemd complains: $complaints"
  for unit in libvirtd.service libvirt-guests.service virt-guest-shutdown.target xendomains.service; do
    grep -q "^After=.*$unit" "$dropin" || fail "the drop-in does not order the target after $unit"
  done
  grep -q "^After=resource-agents-deps.target" /lib/systemd/system/pacemaker.service || fail "pacemaker.service is not After=resource-agents-deps.target"
  echo "== dpkg --purge"
  dpkg --log=/dev/null --purge ferry
  ! dpkg-query -W -f='${Status}\n' ferry 2>/dev/null | grep "installed" >/dev/null || fail "ferry is still listed as installed"
  find /usr/lib/ocf /usr/share/man /usr/share/doc /usr/share/lintian /usr/lib/systemd/system | sort >"$after"
  diff "$before" "$after" || fail "dpkg --purge left the files above"
}

if [ "${1:-}" = __inside ]; then
  inside "$2" "$3"
  exit 0
fi

cd "$repo"
host_before=$({ find /usr/lib/ocf /usr/share/man/man7 /usr/share/doc/ferry 2>/dev/null || true; } | sort | md5sum)
deb=$(packaging/deb.sh build/ferry build)
[ -f "$deb" ] || fail "no package built"
echo "== lintian $(basename "$deb")"
report=$(lintian --tag-display-limit 0 "$deb" 2>/dev/null) || true
[ -z "$report" ] || echo "$report"
! grep -q '^E:' <<<"$report" || fail "lintian reports errors"
scratch=$(mktemp -d /tmp/ferry-package.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
unshare -m --propagation private -- "$0" __inside "$scratch" "$deb"
# The namespace is gone: the host must not have seen the install.
[ "$({ find /usr/lib/ocf /usr/share/man/man7 /usr/share/doc/ferry 2>/dev/null || true; } | sort | md5sum)" = "$host_before" ] || fail "the install reached the host's /usr"
dpkg-query -W ferry >/dev/null 2>&1 && fail "the host's dpkg database lists ferry"
echo "package: passed"
