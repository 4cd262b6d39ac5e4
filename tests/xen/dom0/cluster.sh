#!/bin/sh
# The third stage of the Xen lab, run inside dom0 of host a (xena) or b
# (xenb): the two Xen hosts form a corosync + Pacemaker cluster and
# Pacemaker drives a PVH guest through ocf:ferry:Xen.
#
# The cluster's userland is Debian 12's own (tests/xen/build.sh debootstraps
# it into build/xen/cluster-root: pacemaker, corosync, pcs, crmsh,
# xen-utils). Each dom0 mounts it read-only over 9p, lays a tmpfs over it
# (overlayfs) and runs the cluster in a chroot of that: the same packages as
# the KVM lab's nodes with every dependency (pcs and crmsh are Python), where
# copying binaries and libraries into the initramfs, as ocf-tester is, would
# have meant chasing Python's modules by hand. ferry is in it by dpkg -i of
# its .deb (tests/xen/run.sh, on the host before the boot). xenstored,
# xenconsoled and the
# migration receiver stay the initramfs's (the same Xen 4.17 build).
#
# Host a drives: it runs the README's marked Xen block, then start, move,
# standby, recovery from xl destroy and from a crash, reload-agent, and the
# xmfile hidden under a running guest. Host b serves: its cluster node, and
# commands a sends it through the shared directory. Both write what xl lists
# to the shared directory every second, so a can see both hosts.
role=$1
HOST=$role
. /cases.sh
R=/cluster/root
G=guest1
export PATH=/usr/lib/xen-4.17/bin:/bin

lab_link "$role"

# The userland: Debian 12 read-only over 9p, a tmpfs over it.
mkdir -p /cluster/lower /cluster/rw "$R"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose userland /cluster/lower
mount -t tmpfs -o size=256m tmpfs /cluster/rw
mkdir -p /cluster/rw/upper /cluster/rw/work
insmod /lib/modules/overlay.ko
mount -t overlay overlay -o lowerdir=/cluster/lower,upperdir=/cluster/rw/upper,workdir=/cluster/rw/work "$R"
for d in proc sys dev run; do mount --rbind /$d "$R/$d"; done
# libqb's IPC lives in /dev/shm.
mkdir -p "$R/dev/shm"
mount -t tmpfs -o size=128m tmpfs "$R/dev/shm"
# The guests' files, xenconsoled's logs and xl's state are the initramfs's.
mkdir -p "$R/guest" "$R/shared"
for d in /guest /etc/xen /var/log/xen /var/lib/xen /shared; do mount --bind "$d" "$R$d"; done
hostname "xen$role"
printf '127.0.0.1 localhost\n10.77.0.1 xena\n10.77.0.2 xenb\n' > "$R/etc/hosts"
echo "xen$role" > "$R/etc/hostname"
# xl migrate -s CMD runs CMD HOST xl migrate-receive: the lab's transport is
# netcat to each host's receiver (ssh in production).
printf '#!/bin/sh\nexec /bin/busybox nc "$1" 8002\n' > "$R/usr/local/bin/xen-lab-transport"
cp /bin/busybox "$R/bin/busybox"
chmod +x "$R/usr/local/bin/xen-lab-transport"

# in_root CMD...: CMD in the cluster's userland, with xl's own directory
# first on PATH (Debian's /usr/sbin/xl is a wrapper that asks which Xen
# runs), as Pacemaker and its agents get it.
# env by its path: dom0's busybox runs its own applet for any command named
# like one (setsid, sh, ls...), even after chroot, unless given a path.
ROOT_PATH=/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
in_root() {
  chroot "$R" /usr/bin/env -i PATH=$ROOT_PATH HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
}

# ferry was installed into the userland with dpkg -i before it was shared
# (tests/xen/run.sh); Pacemaker must find it where the package put it.
check ferry-installed 0 in_root crm_resource --show-metadata ocf:ferry:Xen

cat > "$R/etc/corosync/corosync.conf" <<'CONF'
totem {
  version: 2
  cluster_name: xenlab
  transport: knet
  crypto_cipher: none
  crypto_hash: none
  # dom0 shares one emulated CPU with everything a migration does.
  token: 10000
}
nodelist {
  node {
    name: xena
    nodeid: 1
    ring0_addr: 10.77.0.1
  }
  node {
    name: xenb
    nodeid: 2
    ring0_addr: 10.77.0.2
  }
}
quorum {
  provider: corosync_votequorum
  two_node: 1
}
# dom0 has one emulated CPU: corosync at realtime priority (sched_rr, its
# default) can starve the rest of dom0 whenever it is busy.
system {
  sched_rr: no
}
logging {
  to_logfile: yes
  logfile: /var/log/corosync/corosync.log
  to_syslog: no
  to_stderr: no
  timestamp: on
}
CONF

# Every incoming migration gets its own receiver, in the initramfs.
(while :; do nc -l -p 8002 -e /bin/xl-receive; done) &
forward_consoles "$G" "$G--incoming"

# What this host's xl lists, every second, for a to read; and a command a
# left for this host (a file holding a shell command), run once.
serve() {
  while [ ! -e /shared/cluster-done ]; do
    xl list > /shared/.xl-$role 2>&1 && mv /shared/.xl-$role /shared/xl-$role
    # A guest prints "ferry-guest: up" once a boot; one that arrives by
    # migration prints nothing new.
    console "$G" | grep -c 'ferry-guest: up' > /shared/.boots-$role; mv /shared/.boots-$role /shared/boots-$role
    if [ -e /shared/do-$role ]; then
      mv /shared/do-$role /tmp/do
      (sh /tmp/do; echo "rc=$?") > /shared/.done-$role 2>&1
      mv /shared/.done-$role /shared/done-$role
    fi
    sleep 1
  done
}
serve &

# FERRY_XEN_DEBUG=1 (tests/xen/run.sh): every 20 s, what runs and what the
# cluster logged, on the serial console.
if [ -e /shared/debug ]; then
  (while [ ! -e /shared/cluster-done ]; do
    sleep 20
    { ps -o pid,stat,args | grep -v ']$'; tail -n 5 "$R/var/log/corosync/corosync.log"; tail -n 15 "$R/var/log/pacemaker/pacemaker.log" "$R/var/log/pacemakerd.out"; } 2>&1 | sed 's/^/FERRY-XEN-DEBUG /'
  done) &
fi

t0=$(now)
check corosync 0 in_root corosync
# pacemakerd stays in the foreground (systemd's way); dom0's init is its
# parent, and power-off its end.
in_root pacemakerd </dev/null >"$R/var/log/pacemakerd.out" 2>&1 &
online() { timeout 20 chroot "$R" /usr/bin/env -i PATH=$ROOT_PATH crm_mon -1 2>/dev/null > /tmp/crm_mon; grep -q "Online: \[ xena xenb \]" /tmp/crm_mon; }
wait_online() {
  for i in $(seq 300); do
    online && return 0
    [ $((i % 30)) != 0 ] || echo "FERRY-XEN-WAIT cluster after $i s: $(grep -i 'stack\|online\|offline\|DC' /tmp/crm_mon | tr -s ' \n' ' ')"
    sleep 1
  done
  return 1
}
check cluster-online 0 wait_online
if [ "$rc" != 0 ]; then
  cat /tmp/crm_mon
  ps -ef | grep -v ']$'
  tail -n 40 "$R/var/log/corosync/corosync.log"
  tail -n 80 "$R/var/log/pacemaker/pacemaker.log"
fi 2>&1 | sed 's/^/FERRY-XEN-DIAG /'
time_of cluster-up "$t0"

if [ "$role" = b ]; then
  touch /shared/b-joined
  # b serves until a is done, then leaves the cluster as a node shuts down.
  wait_file /shared/cluster-done 1500
  in_root crm_mon -1
  exit 0
fi

# ---- host a drives ----
other() { if [ "$1" = xena ]; then echo xenb; else echo xena; fi; }
# on NODE CMD: run the shell command CMD on NODE (xena here, xenb by the
# shared directory), with its output and status.
on() {
  if [ "$1" = xena ]; then sh -c "$2"; return; fi
  rm -f /shared/done-b
  echo "$2" > /shared/.do-b && mv /shared/.do-b /shared/do-b
  wait_file /shared/done-b 120 || { echo "xenb did not run: $2"; return 1; }
  sed '$d' /shared/done-b
  return "$(sed -n '$s/^rc=//p' /shared/done-b)"
}
# Where xl lists the guest, by its own name (not NAME--incoming or
# NAME--migratedaway, which are halves of a migration): "xena", "xenb",
# "xena xenb" or nothing.
xl_hosts() {
  hosts=
  for h in a b; do grep -q "^$G " /shared/xl-$h 2>/dev/null && hosts="$hosts xen$h"; done
  echo ${hosts# }
}
# Where Pacemaker says it runs.
located() { in_root crm_resource --locate -r "$G" 2>/dev/null | sed -n 's/.*is running on: \([a-z]*\).*/\1/p' | tr '\n' ' ' | sed 's/ $//'; }
# settled NODE: Pacemaker has nothing left to do, locates the guest on NODE
# alone, and xl lists it there alone, two snapshots apart.
settle() { in_root crm_resource --wait --timeout=240s >/dev/null 2>&1; }
settled_on() {
  settle || return 1
  for _ in $(seq 30); do
    [ "$(located)" = "$1" ] && [ "$(xl_hosts)" = "$1" ] && sleep 2 && [ "$(xl_hosts)" = "$1" ] && return 0
    sleep 1
  done
  echo "Pacemaker: $(located); xl lists it on: $(xl_hosts)"
  return 1
}
# The guest's boots so far, on both hosts: each prints "ferry-guest: up".
boots() {
  n=0
  for h in a b; do
    c=$(cat /shared/boots-$h 2>/dev/null || echo 0)
    n=$((n + c))
  done
  echo "$n"
}
# The CIB's record of an operation on a node: rc-code and exec-time.
op_record() {
  in_root cibadmin -Q --xpath "//node_state[@uname='$1']//lrm_resource[@id='$G']/lrm_rsc_op[@operation='$2']" 2>/dev/null |
    sed -n 's/.* call-id="\([0-9]*\)".* rc-code="\([0-9]*\)".* exec-time="\([0-9]*\)".*/call=\1 rc=\2 exec-time=\3ms/p' | head -1
}
# wait_restarted N: the guest has booted N times in all.
wait_restarted() { for _ in $(seq 120); do [ "$(boots)" -ge "$1" ] && return 0; sleep 1; done; return 1; }
op_ok() { case "$(op_record "$1" "$2")" in *" rc=0 "*) return 0 ;; *) return 1 ;; esac; }
domid_on() { on "$1" "xl domid $G"; }

check cluster-properties 0 in_root crm_attribute --type crm_config --name stonith-enabled --update false
# The README's Xen block, as written, but for the lab's transport.
sed 's|^\( *\)xmfile=|\1migration_transport=/usr/local/bin/xen-lab-transport xmfile=|' /shared/readme-xen.sh > "$R/tmp/readme-xen.sh"
cat "$R/tmp/readme-xen.sh" | sed 's/^/FERRY-XEN-README /'
t0=$(now)
check readme-block 0 in_root bash -eu /tmp/readme-xen.sh
cp /tmp/out /tmp/readme.out
sed 's/^/FERRY-XEN-LOG /' /tmp/readme.out
check readme-no-warning 1 grep -qi warning /tmp/readme.out
home=
wait_started() { for _ in $(seq 120); do home=$(located); [ -n "$home" ] && return 0; sleep 1; done; return 1; }
check started 0 wait_started
check start-settled 0 settled_on "$home"
time_of start "$t0"
check start-recorded 0 op_ok "$home" start
# It boots (a first "ferry-guest: up" on its console), on its host alone.
check guest-runs 0 wait_restarted 1
# The recurring monitor runs (interval 10 s in the README's block).
monitor_recorded() {
  in_root cibadmin -Q --xpath "//node_state[@uname='$home']//lrm_rsc_op[@operation='monitor'][@interval='10000'][@rc-code='0']" >/dev/null 2>&1
}
wait_monitor() { for _ in $(seq 30); do monitor_recorded && return 0; sleep 1; done; return 1; }
check monitor-recurring 0 wait_monitor
echo "FERRY-XEN-BOOTS after-start $(boots)"

# live_move CASE COMMAND...: COMMAND makes Pacemaker move the guest away
# from its host; it must go live: settled on the other host alone, the CIB
# recording migrate_to on the source and migrate_from on the target (rc 0),
# and no new boot.
live_move() {
  case=$1; shift
  to=$(other "$home")
  t0=$(now)
  check "$case" 0 "$@"
  check "$case-settled" 0 settled_on "$to"
  time_of "$case" "$t0"
  check "$case-migrate_to" 0 op_ok "$home" migrate_to
  check "$case-migrate_from" 0 op_ok "$to" migrate_from
  echo "FERRY-XEN-OP $case migrate_to $home $(op_record "$home" migrate_to)"
  echo "FERRY-XEN-OP $case migrate_from $to $(op_record "$to" migrate_from)"
  check "$case-booted-once" 0 test "$(boots)" = 1
  from=$home home=$to
}
# A move by constraint, then cleared.
live_move move in_root crm_resource --move -r "$G" -N "$(other "$home")"
check move-clear 0 in_root crm_resource --clear -r "$G"
# Standby of its host; back online, the guest stays where it went.
live_move standby in_root crm_attribute --node "$home" --name standby --update on
check unstandby 0 in_root crm_attribute --node "$from" --name standby --update off
check unstandby-stays 0 settled_on "$home"

# reload-agent: a reloadable parameter changed in the CIB (autoset of the
# guest's memory as its utilization); the domain stays, and the reload sets
# the utilization from it at once.
before=$(domid_on "$home")
t0=$(now)
check reload 0 in_root crm_resource -r "$G" --set-parameter autoset_utilization_hv_memory --parameter-value true
check reload-settled 0 settled_on "$home"
time_of reload "$t0"
# Pacemaker records a reload under the resource's start; ferry's own word
# that reload-agent ran is in the node's pacemaker.log.
check reload-ran 0 on "$home" "grep -q '$G.*reloaded: the new parameters apply' $R/var/log/pacemaker/pacemaker.log"
check reload-same-domain 0 test "$(domid_on "$home")" = "$before"
echo "FERRY-XEN-DOMID reload before=$before after=$(domid_on "$home")"
utilization() { in_root crm_resource -r "$G" --utilization --get-parameter hv_memory 2>/dev/null; }
check reload-utilization 0 test "$(utilization)" = 128
echo "FERRY-XEN-UTILIZATION hv_memory=$(utilization)"

# recovery CASE BOOTS COMMAND: COMMAND, run on the guest's host, ends the
# guest behind the cluster's back; the recurring monitor finds it failed or
# gone, and Pacemaker starts it again (its BOOTS-th boot), on one host.
# Then the failure is cleaned up, as an operator does.
recovery() {
  t0=$(now)
  check "$1" 0 on "$home" "$3"
  check "$1-restarted" 0 wait_restarted "$2"
  check "$1-settled" 0 settled_on "$(located)"
  time_of "$1-recovery" "$t0"
  home=$(located)
  echo "FERRY-XEN-BOOTS after-$1 $(boots) on $home"
  in_root crm_resource --cleanup -r "$G" >/dev/null 2>&1
  settle
}
# The domain destroyed: the monitor finds it gone.
recovery destroy 2 "xl destroy $G"
# The guest's kernel crashed (xl sysrq c): on_crash="preserve" keeps the
# domain, crashed, which the monitor fails; stop destroys it.
recovery crash 3 "xl sysrq $G c"

# The xmfile hidden on the host that runs the guest, then a refresh: the
# probes run again, there without the file. The resource names its domain
# (name=, as the README's block does), so the probe there still finds it
# running; the guest must never be started on the other host, and stays.
t0=$(now)
on "$home" "mv /etc/xen/$G.cfg /etc/xen/$G.cfg.hidden"
check hidden-refresh 0 in_root crm_resource --refresh -r "$G"
check hidden-settled 0 settled_on "$home"
never_elsewhere() {
  for _ in $(seq 10); do
    case " $(xl_hosts) " in *" $(other "$home") "*) echo "xl lists $G on $(other "$home")"; return 1 ;; esac
    sleep 1
  done
}
check hidden-no-second-copy 0 never_elsewhere
in_root crm_mon -1 -r | sed 's/^/FERRY-XEN-CRM /'
check hidden-probe-running 0 op_ok "$home" monitor
check hidden-still-here 0 test "$(xl_hosts)" = "$home"
on "$home" "mv /etc/xen/$G.cfg.hidden /etc/xen/$G.cfg"
time_of hidden "$t0"
echo "FERRY-XEN-BOOTS at-end $(boots)"

# The resource deleted: stop, and nothing left on either host.
check delete 0 in_root crm_resource --delete -r "$G" -t primitive
gone() { for _ in $(seq 90); do [ -z "$(xl_hosts)" ] && return 0; sleep 1; done; return 1; }
check deleted-nothing-left 0 gone
# What Pacemaker logged, when a case failed.
if [ "${FAILED:-0}" -gt 0 ]; then
  tail -n 150 "$R/var/log/pacemaker/pacemaker.log" | sed 's/^/FERRY-XEN-PCMK /'
fi
touch /shared/cluster-done
