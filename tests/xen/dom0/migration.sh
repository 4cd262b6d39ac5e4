#!/bin/sh
# The second stage of the Xen lab, run inside dom0 of host a or b. The two
# hosts share a private link (QEMU socket netdev) and a directory (9p), and
# take turns through hand-shake files in it:
#   1. PV guest xpv: a live migration fails cleanly (this Xen build has no
#      shadow paging, so no log-dirty mode for PV) and the guest keeps
#      running on a; then a save migration through the shared directory,
#      migrate_to on a, migrate_from (a restore) on b.
#   2. PVH guest xguest, the link cut mid-migration: b cuts it once the
#      receiving half appears; migrate_to on a fails inside its budget with
#      the guest still running there; migrate_from on b, for a guest that
#      never arrives, fails inside its own; stop on b clears the half.
#   3. PVH guest xguest, a live migration a -> b through the agent: the
#      guest keeps counting through the copy, arrives without rebooting,
#      and ends on b only. xl's receiver confirms it was an xl migrate.
# Migrations run over a lab transport on netcat (ssh in production).
role=$1
HOST=$role
. /cases.sh
export OCF_RESKEY_CRM_meta_migrate_source=10.77.0.1 OCF_RESKEY_CRM_meta_migrate_target=10.77.0.2
PV="OCF_RESOURCE_INSTANCE=xpv OCF_RESKEY_xmfile=/etc/xen/guest-pv.cfg"
LIVE=OCF_RESKEY_migration_transport=/bin/xen-lab-transport
SAVE="OCF_RESKEY_migration_mode=save OCF_RESKEY_migration_state_dir=/images"
MONITOR="OCF_RESKEY_CRM_meta_timeout=30000 OCF_RESKEY_CRM_meta_interval=10000"
PROBE="OCF_RESKEY_CRM_meta_timeout=30000 OCF_RESKEY_CRM_meta_interval=0"

lab_link "$role"
# xl migrate -s CMD runs: CMD HOST xl migrate-receive
printf '#!/bin/sh\nexec nc "$1" 8002\n' > /bin/xen-lab-transport
chmod +x /bin/xen-lab-transport

# Shared storage for the save model: the same host directory in both QEMUs.
# Two views of it: /shared uncached, for the hand-shake files, and /images
# for the guest's image. a, which saves, mounts /images through the page
# cache: xl save writes straight from mapped guest pages, which 9p's
# zero-copy path refuses (EFAULT). b, which restores, reads it uncached.
mkdir -p /images
if [ "$role" = a ]; then cache=,cache=loose; else cache=; fi
mount -t 9p -o trans=virtio,version=9p2000.L$cache images /images

# within T0 SECONDS: less than SECONDS have passed since T0 (dom0's uptime)
within() { awk -v t0="$1" -v limit="$2" -v now="$(now)" 'BEGIN { exit !(now - t0 < limit) }'; }
wait_ping() { for _ in $(seq "$2"); do ping -c 1 -W 1 "$1" >/dev/null 2>&1 && return 0; sleep 1; done; return 1; }
wait_incoming() { for _ in $(seq "$1"); do xl list | grep -q "^$2--incoming " && return 0; sleep 1; done; return 1; }

if [ "$role" = b ]; then
  (while :; do nc -l -p 8002 -e /bin/xl-receive; done) &
  forward_consoles xpv xguest xguest--incoming
  check probe 7 env $PROBE $A monitor
  touch /shared/b-ready

  # 1. PV: a tries live first (it fails, see a's side), then saves the guest.
  check pv-image-arrived 0 wait_file /shared/pv-saved 900
  ls -l /images
  t0=$(now)
  check pv-migrate_from 0 env $PV OCF_RESKEY_CRM_meta_timeout=600000 $SAVE $A migrate_from
  time_of pv-migrate_from "$t0"
  check pv-monitor 0 env $PV $MONITOR $A monitor
  # The same guest, still counting: no fresh boot here, and it goes on.
  check pv-guest-runs 0 wait_ticks 0 xpv
  check pv-not-rebooted 1 sh -c "cat $CONSOLES/guest-xpv.log | grep -q 'ferry-guest: up'"
  echo "FERRY-XEN-FIRST-TICK-HERE xpv $(console xpv | grep -m1 -o 'ferry-tick [0-9]*')"
  check pv-image-removed 1 test -e /images/xpv.migrating
  check pv-stop 0 env $PV OCF_RESKEY_CRM_meta_timeout=60000 $A stop
  touch /shared/pv-done

  # 2. The link cut mid-migration, a few seconds into the pre-copy of 128 MiB.
  check cut-incoming-seen 0 wait_incoming 300 xguest
  sleep 3
  ip link set eth0 down
  echo "FERRY-XEN-CUT link down at $(now)"
  xl list
  # Pacemaker runs migrate_from only after a good migrate_to; this is what
  # one for a guest that never comes must do: fail inside its budget.
  t0=$(now)
  check never-arrives 1 env OCF_RESKEY_CRM_meta_timeout=20000 $A migrate_from
  time_of never-arrives "$t0"
  check never-arrives-in-budget 0 within "$t0" 21
  check cut-stop 0 env OCF_RESKEY_CRM_meta_timeout=60000 $A stop
  check cut-nothing-left 1 sh -c 'xl list | grep -q xguest'
  # xl's receiver waits on a stream that will never go on.
  kill -9 "$(cat /run/receiver.pid)"
  check cut-source-done 0 wait_file /shared/a-cut-done 300
  ip link set eth0 up
  check link-back 0 wait_ping 10.77.0.1 60
  touch /shared/b-link-up

  # 3. The live migration; migrate_from once migrate_to has returned.
  check live-handed-over 0 wait_file /shared/a-live-done 900
  t0=$(now)
  check migrate_from 0 env OCF_RESKEY_CRM_meta_timeout=60000 $A migrate_from
  time_of migrate_from "$t0"
  check monitor 0 env $MONITOR $A monitor
  check guest-runs 0 wait_ticks 0
  check not-rebooted 1 sh -c "cat $CONSOLES/guest-xguest*.log | grep -q 'ferry-guest: up'"
  echo "FERRY-XEN-FIRST-TICK-HERE xguest $(console xguest | grep -m1 -o 'ferry-tick [0-9]*')"
  # xl's receiver, not xl restore: the stream was an xl migrate, which is
  # always live (pre-copy), and the target started the guest on the
  # sender's word.
  check xl-received-live 0 sh -c "cat /run/receive/*.log | grep -q 'migration target: Domain started successs*fully'"
  for f in /run/receive/*.log; do sed "s|^|FERRY-XEN-XL receive $(basename "$f" .log): |" "$f"; done
  xl list
  check stop 0 env OCF_RESKEY_CRM_meta_timeout=60000 $A stop
else
  forward_consoles xpv xguest
  check peer-ready 0 wait_file /shared/b-ready 300

  # 1. PV
  check pv-start 0 env $PV OCF_RESKEY_CRM_meta_timeout=60000 $A start
  check pv-guest-runs 0 wait_ticks 3 xpv
  check pv-live-migrate_to 1 env $PV $LIVE OCF_RESKEY_CRM_meta_timeout=120000 $A migrate_to
  show_log pv-live-migrate_to
  check pv-live-failed-guest-here 0 env $PV $MONITOR $A monitor
  check pv-live-failed-guest-runs 0 wait_ticks "$(ticks xpv)" xpv
  t0=$(now)
  check pv-migrate_to 0 env $PV OCF_RESKEY_CRM_meta_timeout=600000 $SAVE $A migrate_to
  time_of pv-migrate_to "$t0"
  echo "FERRY-XEN-LAST-TICK-HERE xpv $(console xpv | grep -o 'ferry-tick [0-9]*' | tail -1)"
  check pv-gone-here 7 env $PV $PROBE $A monitor
  ls -l /images
  touch /shared/pv-saved

  # 2. PVH, and the link cut under its migration.
  check start 0 env OCF_RESKEY_CRM_meta_timeout=60000 $A start
  check guest-runs 0 wait_ticks 3
  check peer-watching 0 wait_file /shared/pv-done 900
  t0=$(now)
  check cut-migrate_to 1 env $LIVE OCF_RESKEY_CRM_meta_timeout=60000 $A migrate_to
  time_of cut-migrate_to "$t0"
  show_log cut-migrate_to
  check cut-in-budget 0 within "$t0" 61
  xl list
  check cut-guest-here 0 env $MONITOR $A monitor
  check cut-guest-runs 0 wait_ticks "$(ticks)"
  touch /shared/a-cut-done
  check link-back 0 wait_file /shared/b-link-up 300

  # 3. Live. The guest counts on here while its memory is copied.
  before=$(ticks)
  t0=$(now)
  check live-migrate_to 0 env $LIVE OCF_RESKEY_CRM_meta_timeout=300000 $A migrate_to
  time_of live-migrate_to "$t0"
  show_log live-migrate_to
  check ran-during-copy 0 test "$(ticks)" -ge $((before + 3))
  echo "FERRY-XEN-LAST-TICK-HERE xguest $(console xguest | grep -o 'ferry-tick [0-9]*' | tail -1)"
  check gone-here 7 env $PROBE $A monitor
  xl list
  touch /shared/a-live-done
fi
