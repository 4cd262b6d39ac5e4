#!/bin/sh
# The second stage of the Xen lab, run inside dom0 of host a or b: the two
# hosts share a private link (QEMU socket netdev) and a directory (9p). Host
# a starts the guest with ocf:ferry:Xen, tries a live migration to b (over a
# lab transport on netcat; ssh in production), then moves it with a save
# migration through the shared directory; host b restores it in migrate_from.
role=$1
HOST=$role
. /cases.sh
export OCF_RESKEY_CRM_meta_migrate_source=10.77.0.1 OCF_RESKEY_CRM_meta_migrate_target=10.77.0.2

insmod /lib/modules/e1000.ko
ip link set lo up
ip link set eth0 up
if [ "$role" = a ]; then ip addr add 10.77.0.1/24 dev eth0; else ip addr add 10.77.0.2/24 dev eth0; fi
printf '#!/bin/sh\nexec xl migrate-receive\n' > /bin/xl-receive
# xl migrate -s CMD runs: CMD HOST xl migrate-receive
printf '#!/bin/sh\nexec nc "$1" 8002\n' > /bin/xen-lab-transport
chmod +x /bin/xl-receive /bin/xen-lab-transport

# Shared storage for the save model: the same host directory in both QEMUs.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p; do
  insmod /lib/modules/$m.ko
done
# Two views of it: /shared uncached, for the hand-shake files, and /images
# for the guest's image. a, which saves, mounts /images through the page
# cache: xl save writes straight from mapped guest pages, which 9p's
# zero-copy path refuses (EFAULT). b, which restores, reads it uncached.
mkdir -p /shared /images
mount -t 9p -o trans=virtio,version=9p2000.L shared /shared
if [ "$role" = a ]; then cache=,cache=loose; else cache=; fi
mount -t 9p -o trans=virtio,version=9p2000.L$cache images /images
SAVE="OCF_RESKEY_migration_mode=save OCF_RESKEY_migration_state_dir=/images"

if [ "$role" = b ]; then
  (while :; do nc -l -p 8002 -e /bin/xl-receive; done) &
  check probe 7 env OCF_RESKEY_CRM_meta_interval=0 $A monitor
  touch /shared/b-ready
  # a tries a live migration first (it fails: see a's side), then saves the
  # guest to /shared and says so there.
  check image-arrived 0 wait_file /shared/a-saved 600
  ls -l /images
  t0=$(cut -d' ' -f1 /proc/uptime)
  check migrate_from 0 env OCF_RESKEY_CRM_meta_timeout=600000 $SAVE $A migrate_from
  echo "FERRY-XEN-TIME migrate_from $t0 $(cut -d' ' -f1 /proc/uptime)"
  check monitor 0 env OCF_RESKEY_CRM_meta_timeout=30000 OCF_RESKEY_CRM_meta_interval=10000 $A monitor
  # The same guest, still counting: no fresh boot here, and it goes on.
  check guest-runs 0 wait_ticks 0
  check not-rebooted 1 grep -q 'ferry-guest: up' "$LOG"
  echo "FERRY-XEN-FIRST-TICK-HERE $(grep -m1 -o 'ferry-tick [0-9]*' "$LOG")"
  check image-removed 1 test -e /images/xguest.migrating
  xl list
  check stop 0 env OCF_RESKEY_CRM_meta_timeout=60000 $A stop
else
  check peer-ready 0 wait_file /shared/b-ready 300
  check start 0 env OCF_RESKEY_CRM_meta_timeout=60000 $A start
  check guest-runs 0 wait_ticks 3
  echo "FERRY-XEN-LAST-TICK-HERE $(grep -o 'ferry-tick [0-9]*' "$LOG" | tail -1)"
  # Live first. Debian's Xen is built without shadow paging, which a PV
  # guest's log-dirty mode needs, and TCG offers no HAP for an HVM guest: the
  # live migration must fail cleanly, leaving the guest running here.
  check live-migrate_to 1 env OCF_RESKEY_CRM_meta_timeout=120000 OCF_RESKEY_migration_transport=/bin/xen-lab-transport $A migrate_to
  check live-failed-guest-here 0 env OCF_RESKEY_CRM_meta_timeout=30000 OCF_RESKEY_CRM_meta_interval=10000 $A monitor
  check live-failed-guest-runs 0 wait_ticks "$(ticks)"
  t0=$(cut -d' ' -f1 /proc/uptime)
  check migrate_to 0 env OCF_RESKEY_CRM_meta_timeout=600000 $SAVE $A migrate_to
  echo "FERRY-XEN-TIME migrate_to $t0 $(cut -d' ' -f1 /proc/uptime)"
  check monitor-after 7 env OCF_RESKEY_CRM_meta_timeout=30000 OCF_RESKEY_CRM_meta_interval=0 $A monitor
  xl list
  ls -l /images
  touch /shared/a-saved
fi
