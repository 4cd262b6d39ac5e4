#!/bin/bash
# The migration half of the demo: a guest moved live between the two lab
# nodes by ocf:ferry:VirtualDomain's migrate_to and migrate_from, exactly as
# Pacemaker sequences them, with the guest's serial counter as proof that it
# kept running. Run inside the lab: tests/lab/with-two-nodes.sh.
set -euo pipefail
. "$(dirname "$0")/lab/common.sh"
lab=${FERRY_LAB_DIR:?run through tests/lab/with-two-nodes.sh}
stage_install
agent=$agent_dir/VirtualDomain
name="ferry-demo-mig-$$"
write_guest "$name" "$work/guest.xml" "$work/console.log"
uri() { echo "qemu+unix:///system?socket=$lab/$1/run/libvirt/libvirt-sock"; }
trap 'for n in nodea nodeb; do virsh -c "$(uri $n)" destroy "$name" >/dev/null 2>&1 || true; done; cleanup_common' EXIT
export OCF_ROOT=/usr/lib/ocf OCF_RESOURCE_INSTANCE=demo-vm OCF_RESKEY_config=$work/guest.xml
export OCF_RESKEY_migration_transport=tcp   # lab only: ssh is the default
tick() { grep -a 'ferry-tick' "$work/console.log" | tail -1; }
where() {
  local n out=
  for n in nodea nodeb; do virsh -c "$(uri $n)" domstate "$name" >/dev/null 2>&1 && out+="$n "; done
  echo "${out:-nowhere}"
}

step() {
  local what=$1 node=$2; shift 2
  local t0 t1 rc
  t0=$(date +%s%N)
  set +e; "$repo/tests/lab/two-nodes.sh" on "$lab" "$node" env "$@" 2>"$work/stderr"; rc=$?; set -e
  t1=$(date +%s%N)
  printf '%-40s exit %-3s %6d ms\n' "$what" "$rc" $(((t1 - t0) / 1000000))
  sed 's/^/      | /' "$work/stderr" | grep -v DEBUG || true
}

echo
echo "== live migration between two libvirt nodes (network + mount + UTS namespaces, veth)"
step "start on nodea" nodea "$agent" start
for _ in $(seq 60); do grep -q 'ferry-tick 2' "$work/console.log" 2>/dev/null && break; sleep 1; done
echo "  running on: $(where); guest console: $(tick)"
for pair in "nodea nodeb" "nodeb nodea"; do
  set -- $pair
  mig="OCF_RESKEY_CRM_meta_migrate_source=$1 OCF_RESKEY_CRM_meta_migrate_target=$2"
  step "migrate_to on $1 (target $2)" "$1" $mig "$agent" migrate_to
  step "migrate_from on $2" "$2" $mig "$agent" migrate_from
  step "stop on $1 (nothing left there)" "$1" "$agent" stop
  sleep 2
  echo "  running on: $(where); guest console: $(tick)"
done
step "stop on nodea" nodea "$agent" stop
echo "  running on: $(where)"
