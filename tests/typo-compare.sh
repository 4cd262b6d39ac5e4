#!/bin/bash
# A typo in the CIB, ferry beside heartbeat:VirtualDomain (issue 24): for each
# parameter both agents declare, the values ferry's validate-all refuses are
# given to each agent's probe and stop of a running guest. Prints what each
# answered and whether the guest still ran after a stop that said 0.
# Run inside a lab node: tests/lab/with-libvirtd.sh tests/typo-compare.sh
set -euo pipefail
. "$(dirname "$0")/lab/common.sh"
stage_install
ferry=$agent_dir/VirtualDomain
heartbeat=/usr/lib/ocf/resource.d/heartbeat/VirtualDomain
name="ferry-typo-$$"
write_guest "$name" "$work/guest.xml" "$work/console.log"
# force_stop keeps each stop short (a destroy); a case of force_stop itself overrides it.
export OCF_ROOT=/usr/lib/ocf OCF_RESOURCE_INSTANCE=typo-vm OCF_RESKEY_config=$work/guest.xml OCF_RESKEY_CRM_meta_timeout=30000 OCF_RESKEY_force_stop=true
running() { [ "$(virsh -c qemu:///system domstate "$name" 2>/dev/null | head -1)" = running ]; }
ensure_running() { running || "$ferry" start >/dev/null 2>&1; running; }
trap 'virsh -c qemu:///system destroy "$name" >/dev/null 2>&1 || true' EXIT

params() { "$1" meta-data | grep -o '<parameter name="[^"]*"' | cut -d'"' -f2 | sort; }
type_of() { "$ferry" meta-data | tr '\n' ' ' | grep -o "<parameter name=\"$1\".*" | grep -o '<content type="[^"]*"' | head -1 | cut -d'"' -f2; }
mistakes() {
  case "$(type_of "$1")" in
    integer) echo "abc -7" ;;
    boolean) echo "perhaps" ;;
    *) echo "bogus" ;;
  esac
}
run() { # AGENT ACTION PARAM VALUE [INTERVAL]
  env "OCF_RESKEY_$3=$4" OCF_RESKEY_CRM_meta_interval="${5:-0}" "$1" "$2" >/dev/null 2>&1 && echo 0 || echo $?
}

printf '| parameter | value | heartbeat probe | heartbeat stop | ferry probe | ferry stop |\n|---|---|---|---|---|---|\n'
cases=0 hb_bad=0 ferry_bad=0
for p in $(comm -12 <(params "$heartbeat") <(params "$ferry")); do
  # The guest's identity, and snapshot (which force_stop excludes).
  case "$p" in config|hypervisor|snapshot) continue ;; esac
  for v in $(mistakes "$p"); do
    [ "$(run "$ferry" validate-all "$p" "$v")" = 6 ] || continue
    cases=$((cases + 1))
    ensure_running || { echo "the guest does not start" >&2; exit 1; }
    hb_probe=$(run "$heartbeat" monitor "$p" "$v")
    hb_stop=$(run "$heartbeat" stop "$p" "$v")
    if [ "$hb_stop" = 0 ] && running; then hb_stop="0, guest still running"; hb_bad=$((hb_bad + 1)); fi
    ensure_running
    f_probe=$(run "$ferry" monitor "$p" "$v")
    f_stop=$(run "$ferry" stop "$p" "$v")
    if running; then f_stop="$f_stop, guest still running"; ferry_bad=$((ferry_bad + 1)); fi
    case "$f_probe" in 0|190) ;; *) ferry_bad=$((ferry_bad + 1)) ;; esac
    printf '| %s | %s | %s | %s | %s | %s |\n' "$p" "$v" "$hb_probe" "$hb_stop" "$f_probe" "$f_stop"
  done
done
echo
echo "typo-compare: $cases mistakes in shared parameters; heartbeat's stop said 0 with the guest running $hb_bad times; ferry went wrong $ferry_bad times"
