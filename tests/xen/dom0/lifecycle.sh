#!/bin/sh
# The first stage of the Xen lab, run inside dom0: ocf:ferry:Xen through its
# lifecycle against a real PVH guest, then bad input (cases.sh reports
# them), then resource-agents' ocf-tester.
. /cases.sh
forward_consoles xguest
export OCF_RESKEY_CRM_meta_timeout=60000 OCF_RESKEY_CRM_meta_interval=10000

check probe 7 env OCF_RESKEY_CRM_meta_interval=0 $A monitor
check validate 0 $A validate-all
# Depth 10 checks the node too: the xmfile is here and xl answers.
check validate-deep 0 env OCF_CHECK_LEVEL=10 $A validate-all
t0=$(cut -d' ' -f1 /proc/uptime)
check start 0 $A start
echo "FERRY-XEN-TIME start $t0 $(cut -d' ' -f1 /proc/uptime)"
check monitor 0 $A monitor
check start-again 0 $A start
check guest-runs 0 wait_ticks 2
# Paused by hand, it serves nothing: degraded (190), until unpaused.
check xl-pause 0 xl pause xguest
echo "FERRY-XEN-XL-LIST paused: $(xl list | grep '^xguest ')"
check monitor-paused 190 $A monitor
check xl-unpause 0 xl unpause xguest
check monitor-unpaused 0 $A monitor
# reload-agent (OCF 1.1) with a changed reloadable parameter leaves the
# domain alone: the same domain id before and after.
domid=$(xl domid xguest)
check reload 0 env OCF_RESKEY_shutdown_timeout=30 $A reload-agent
check reload-same-domain 0 test "$(xl domid xguest)" = "$domid"
xl list
# A save migration (the pull model) through shared storage, here to this same
# host: migrate_to saves and ends the guest, migrate_from restores it, and
# the guest keeps counting where it stopped, without booting again.
mkdir -p /var/lib/xen/migrate
SAVE="OCF_RESKEY_migration_mode=save OCF_RESKEY_migration_state_dir=/var/lib/xen/migrate"
SAVE="$SAVE OCF_RESKEY_CRM_meta_migrate_source=single OCF_RESKEY_CRM_meta_migrate_target=single"
check save-migrate_to 0 env $SAVE $A migrate_to
check save-image-written 0 test -s /var/lib/xen/migrate/xguest.migrating
check save-gone 7 env OCF_RESKEY_CRM_meta_interval=0 $A monitor
n=$(ticks)
check save-migrate_from 0 env $SAVE $A migrate_from
check save-image-removed 1 test -e /var/lib/xen/migrate/xguest.migrating
check save-guest-runs 0 wait_ticks "$n"
check save-not-rebooted 1 test "$(console xguest | grep -c 'ferry-guest: up')" -gt 1
check stop 0 $A stop
# The guest's own shutdown ends in "Power down" (or "System halted"); a
# destroy would cut the log without either.
check stop-graceful 0 sh -c "cat $CONSOLES/guest-xguest.log | grep -Eq 'Power down|System halted'"
check stop-again 0 $A stop
check monitor-stopped 7 $A monitor
check probe-stopped 7 env OCF_RESKEY_CRM_meta_interval=0 $A monitor
# A guest whose kernel crashed, kept by on_crash="preserve": xl lists it
# crashed. It is present (never "not running"), failed, and stop clears it.
CRASH="OCF_RESOURCE_INSTANCE=xcrash OCF_RESKEY_xmfile=/etc/xen/guest-crash.cfg"
forward_consoles xcrash
check crash-start 0 env $CRASH $A start
crashed() { for _ in $(seq 60); do xl list | grep -q '^xcrash .* ----c- \|^xcrash .* ---sc- ' && return 0; sleep 1; done; return 1; }
check crash-listed-crashed 0 crashed
echo "FERRY-XEN-XL-LIST crashed: $(xl list | grep '^xcrash ')"
check crash-monitor 1 env $CRASH $A monitor
check crash-probe 1 env $CRASH OCF_RESKEY_CRM_meta_interval=0 $A monitor
check crash-stop 0 env $CRASH $A stop
check crash-gone 1 sh -c 'xl list | grep -q "^xcrash "'
check crash-monitor-stopped 7 env $CRASH $A monitor
# Beside ours, domains in the states xl prints while it reboots a guest
# (---sr-, kept by on_reboot="preserve") and while it saves or migrates one
# (---ss-: xl save into a pipe nobody reads holds it suspended; killing xl
# then leaves it so, as a cut migration leaves its source). Each used to
# fail the whole list, and every action on the node with it. Then the same
# states as the guest's own, and the source of a migration broken after the
# rename (NAME--migratedaway): present, failed, and cleared by stop.
# One guest boots at a time: TCG Xen was seen to stall with three booting.
forward_consoles xodd xsave
# listed NAME STATE: xl list's row for NAME shows STATE (a regular expression), within 60 s
listed() { for _ in $(seq 60); do xl list | grep -q "^$1 .* $2 " && return 0; sleep 1; done; return 1; }
xl create -q /etc/xen/guest-odd.cfg
check odd-boots 0 wait_ticks 1 xodd
xl reboot xodd
check odd-rebooting 0 listed xodd ---sr-
check odd-start 0 $A start
check odd-monitor 0 $A monitor
check odd-probe 0 env OCF_RESKEY_CRM_meta_interval=0 $A monitor
check odd-stop 0 $A stop
xl create -q /etc/xen/guest-save.cfg
check odd-save-boots 0 wait_ticks 1 xsave
mkfifo /tmp/stalled
sleep 100000 < /tmp/stalled &
reader=$!
xl save xsave /tmp/stalled >/tmp/xl-save.out 2>&1 &
saver=$!
check odd-suspended 0 listed xsave '...ss-'
xl list | sed 's/^/FERRY-XEN-XL-LIST odd: /'
check odd-probe-stopped 7 env OCF_RESKEY_CRM_meta_interval=0 $A monitor
check odd-stop-stopped 0 $A stop
# With the xmfile unreadable and no name, guests here could be ours: 1, never 5 or 7.
check odd-no-xmfile-probe 1 env OCF_RESKEY_xmfile=/etc/xen/none.cfg OCF_RESKEY_CRM_meta_interval=0 $A monitor
check odd-no-xmfile-stop 1 env OCF_RESKEY_xmfile=/etc/xen/none.cfg $A stop
# The saver killed mid-save, xl first (it would resume the domain when its
# helper dies): nothing will resume or destroy the domain now.
kill -9 "$saver"
kill -9 $(pidof libxl-save-helper) 2>/dev/null
kill "$reader" 2>/dev/null
sleep 1
echo "FERRY-XEN-XL-LIST left suspended: $(xl list | grep '^xsave ')"
check odd-own-rebooting-probe 1 env OCF_RESKEY_name=xodd OCF_RESKEY_CRM_meta_interval=0 $A monitor
check odd-own-rebooting-stop 0 env OCF_RESKEY_name=xodd $A stop
check odd-own-suspended-probe 1 env OCF_RESKEY_name=xsave OCF_RESKEY_CRM_meta_interval=0 $A monitor
xl rename xsave xguest--migratedaway
echo "FERRY-XEN-XL-LIST migrated away: $(xl list | grep '^xguest--migratedaway ')"
check odd-away-probe 1 env OCF_RESKEY_CRM_meta_interval=0 $A monitor
check odd-away-stop 0 $A stop
check odd-nothing-left 1 sh -c 'xl list | grep -q "xguest\|xodd\|xsave"'
check odd-no-xmfile-alone 7 env OCF_RESKEY_xmfile=/etc/xen/none.cfg OCF_RESKEY_CRM_meta_interval=0 $A monitor
xl list
# Bad input: the right code, and a reason.
check no-xmfile 6 env -u OCF_RESKEY_xmfile $A validate-all
check relative-xmfile 6 env OCF_RESKEY_xmfile=guest.cfg $A validate-all
check missing-xmfile 5 env OCF_CHECK_LEVEL=10 OCF_RESKEY_xmfile=/etc/xen/none.cfg $A validate-all
# Depth 0 checks the parameters alone: pcs validates on create, on a node
# that may not hold the xmfile.
check missing-xmfile-depth0 0 env OCF_RESKEY_xmfile=/etc/xen/none.cfg $A validate-all
check bad-shutdown-timeout 6 env OCF_RESKEY_shutdown_timeout=soon $A validate-all
check bad-name 6 env OCF_RESKEY_name="two words" $A validate-all
check clone 6 env OCF_RESKEY_CRM_meta_clone_max=2 $A validate-all
check migrate-without-target 6 $A migrate_to
check unknown-action 3 $A promote
check meta-data 0 $A meta-data
# resource-agents' own compliance test, against a real guest.
check ocf-tester 0 env PATH=$PATH:/usr/bin:/usr/sbin /usr/sbin/ocf-tester -n xvm-tester -o xmfile=/etc/xen/guest.cfg $A
cp /tmp/out /tmp/ocf-tester.out
sed 's/^/FERRY-XEN-TESTER /' /tmp/ocf-tester.out
check ocf-tester-passed 0 grep -q "passed all tests" /tmp/ocf-tester.out
check ocf-tester-left-nothing 1 sh -c 'xl list | grep -q xguest'
