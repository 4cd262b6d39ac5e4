#!/bin/bash
# The full story: a two-node corosync + Pacemaker cluster (the lab nodes),
# ocf:ferry:VirtualDomain installed by `make install`, a guest created as a
# cluster resource with allow-migrate=true, and Pacemaker moving it back and
# forth by live migration. Prints crm_mon, the migrate_to/migrate_from
# exec-times from the CIB and libvirt's downtime for every move.
# Run inside the lab: tests/lab/with-two-nodes.sh --cluster.
set -euo pipefail
. "$(dirname "$0")/lab/common.sh"
lab=${FERRY_LAB_DIR:?run through tests/lab/with-two-nodes.sh --cluster}
on() { "$repo/tests/lab/two-nodes.sh" on "$lab" "$@"; }
uri() { echo "qemu+unix:///system?socket=$lab/$1/run/libvirt/libvirt-sock"; }
name="ferry-demo-cluster-$$"
rsc=demo-vm
write_guest "$name" "$work/guest.xml" "$work/console.log"
trap 'on nodea crm_resource -r $rsc --meta -p target-role -v Stopped >/dev/null 2>&1 || true; sleep 5
      for n in nodea nodeb; do virsh -c "$(uri $n)" destroy "$name" >/dev/null 2>&1 || true; done; cleanup_common' EXIT

# op_field NODE OPERATION ATTR: from the CIB's history of $rsc on NODE
op_field() {
  on nodea cibadmin -Q -o status | tr '\n' ' ' | sed 's/<node_state /\n&/g' | grep "uname=\"$1\"" |
    grep -o "<lrm_rsc_op [^>]*operation=\"$2\"[^>]*>" | grep -o " $3=\"[^\"]*\"" | cut -d'"' -f2 | tail -1
}
located() { on nodea crm_resource --locate -r "$rsc" -Q 2>/dev/null | tr '\n' ' '; }
tick() { grep -a 'ferry-tick' "$work/console.log" | tail -1; }

echo
echo "== Pacemaker: $(on nodea pacemakerd --version | head -1), corosync $(on nodea corosync -v | grep -o '[0-9][0-9.]*' | head -1)"
echo "   agent: ocf:ferry:VirtualDomain $(on nodea crm_resource --show-metadata ocf:ferry:VirtualDomain | grep -o '<resource-agent [^>]*version="[^"]*"' | grep -o 'version="[^"]*"'), installed by make install at /usr/lib/ocf/resource.d/ferry"
on nodea cibadmin --create -o resources --xml-text "
<primitive id=\"$rsc\" class=\"ocf\" provider=\"ferry\" type=\"VirtualDomain\">
  <instance_attributes id=\"$rsc-params\">
    <nvpair id=\"$rsc-config\" name=\"config\" value=\"$work/guest.xml\"/>
    <nvpair id=\"$rsc-transport\" name=\"migration_transport\" value=\"tcp\"/>
  </instance_attributes>
  <meta_attributes id=\"$rsc-meta\"><nvpair id=\"$rsc-am\" name=\"allow-migrate\" value=\"true\"/></meta_attributes>
  <operations>
    <op id=\"$rsc-monitor\" name=\"monitor\" interval=\"10s\" timeout=\"30s\"/>
    <op id=\"$rsc-start\" name=\"start\" interval=\"0\" timeout=\"90s\"/>
    <op id=\"$rsc-stop\" name=\"stop\" interval=\"0\" timeout=\"90s\"/>
    <op id=\"$rsc-mt\" name=\"migrate_to\" interval=\"0\" timeout=\"120s\"/>
    <op id=\"$rsc-mf\" name=\"migrate_from\" interval=\"0\" timeout=\"60s\"/>
  </operations>
</primitive>"
for _ in $(seq 90); do [ -n "$(located)" ] && grep -q 'ferry-tick 2' "$work/console.log" 2>/dev/null && break; sleep 1; done
echo "   $rsc started on: $(located)  (start exec-time $(op_field "$(located | tr -d ' ')" start exec-time) ms); guest console: $(tick)"
echo
on nodea crm_mon -1 | sed 's/^/   | /'
for round in 1 2; do
  from=$(located | tr -d ' '); to=$([ "$from" = nodea ] && echo nodeb || echo nodea)
  echo
  echo "== crm_resource --move -r $rsc -N $to"
  t0=$(date +%s%N)
  on nodea crm_resource --move -r "$rsc" -N "$to" >/dev/null
  on nodea crm_resource --wait --timeout 120s
  t1=$(date +%s%N)
  downtime=$(virsh -c "$(uri "$to")" domjobinfo --completed --keep-completed --rawstats "$name" 2>/dev/null | awk -F': ' '$1=="downtime" {print $2}')
  echo "   now on: $(located); guest console: $(tick)"
  echo "   migrate_to on $from: exec-time $(op_field "$from" migrate_to exec-time) ms rc $(op_field "$from" migrate_to rc-code);" \
       "migrate_from on $to: exec-time $(op_field "$to" migrate_from exec-time) ms rc $(op_field "$to" migrate_from rc-code)"
  echo "   whole move as the cluster ran it: $(((t1 - t0) / 1000000)) ms; guest downtime (libvirt): ${downtime:-?} ms"
  on nodea crm_resource --clear -r "$rsc" >/dev/null
done
echo
on nodea crm_mon -1 | sed 's/^/   | /'
echo "   the guest booted $(grep -c 'ferry-guest: up' "$work/console.log") time(s): every move was live"
