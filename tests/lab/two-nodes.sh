#!/bin/bash
# The two-node lab: two libvirt "nodes" on one machine, for migration tests,
# the demo and (next) the Pacemaker cluster.
#
# Each node is a network namespace plus a mount and UTS namespace of its own,
# with private /run, /etc/libvirt, /etc/pki, /var/lib/libvirt,
# /var/log/libvirt, /var/cache/libvirt, /dev/shm and /etc/hosts, its own
# hostname, and its own virtlogd and libvirtd (listening on TCP, lab only: no
# auth; and on TLS). The two are joined by a veth pair, and by a second one
# that only migrations use: NODE-mig names a node's end of it (tests point a
# guest's migrateuri at %n-mig), so a test can cut or slow the migration
# stream and leave corosync and libvirt's own connections alone.
#
# The lab has a certificate authority of its own (certtool, from gnutls-bin),
# and each node a certificate from it, installed where an operator installs
# them: /etc/pki/CA and /etc/pki/libvirt for libvirtd's TLS (qemu+tls://),
# /etc/pki/qemu for QEMU's migration stream (virsh migrate --tls). Everything else (the repository, guest images, test
# scratch directories) is the host's and so plays the part of shared storage.
#
#   two-nodes.sh up LABDIR        bring the lab up; writes LABDIR/lab.env
#   two-nodes.sh down LABDIR      end every process of the nodes, delete them
#   two-nodes.sh on LABDIR NODE CMD...   run CMD inside NODE (as its agents run)
#   two-nodes.sh link LABDIR up|down     plug or cut the wire between the nodes
#   two-nodes.sh libvirtd LABDIR NODE stop|start   end or restart one libvirtd
#   two-nodes.sh cluster LABDIR   also run corosync + Pacemaker on both nodes,
#                                 with ferry installed by `make install`
#   two-nodes.sh pacemaker LABDIR NODE stop|start   shut Pacemaker down on one
#                                 node (corosync stays), or start it again
#   two-nodes.sh upgrade LABDIR NODE   reboot NODE into Debian 13 (its
#                                 Pacemaker stopped first), as a rolling
#                                 upgrade does, and rejoin the cluster
#
# With FERRY_LAB_TRIXIE="NODE..." in the environment of `up`, those nodes run
# Debian 13's userland: their mount namespace's root is build/trixie-root
# (tests/lab/trixie-root.sh), so their libvirtd, QEMU, corosync, Pacemaker and
# OCF tree are trixie's (libvirt 11.3, QEMU 10.0, Pacemaker 3.0) while the
# others stay this Debian 12 host's: FERRY_LAB_TRIXIE=nodeb is the mixed
# cluster of a rolling upgrade, "nodea nodeb" a Debian 13 cluster.
#
# With FERRY_LAB_LEASES=1 in the environment of `up`, libvirt takes a disk
# lease (virtlockd) for every disk a guest opens, in a lockspace both nodes
# share: a disk in use on one node cannot be opened on the other.
#
# Teardown never looks for processes by name: a node's processes are exactly
# those in its network namespace (libvirt gives QEMU a mount namespace of its
# own, but not a network one), and they are ended by PID before the namespace
# is deleted.
set -Eeuo pipefail

NODES=(nodea nodeb)
# solo is with-libvirtd.sh's single node; its libvirtd listens only inside
# its own network namespace.
declare -A ADDR=([nodea]=10.213.77.1 [nodeb]=10.213.77.2 [solo]=127.0.0.1)
# The migration link's addresses, NODE-mig in each node's /etc/hosts.
declare -A MIGRATION_ADDR=([nodea]=10.213.78.1 [nodeb]=10.213.78.2)

repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lab/pivot.sh
. "$repo/tests/lab/pivot.sh"
trixie_root=$(readlink -f "${FERRY_TRIXIE_ROOT:-$repo/build/trixie-root}")

usage() { sed -n '/^#   two-nodes/p' "$0" >&2; exit 2; }
die() { echo "two-nodes: $*" >&2; exit 1; }
# set -e ends the script at a failed command, and many print nothing of
# their own: say which one it was (-E: also inside functions).
said_failure() { echo "two-nodes: ${cmd:-?} failed at line $1: $2" >&2; }
trap 'said_failure $LINENO "$BASH_COMMAND"' ERR

load() {
  lab=$(cd "${1:?usage}" && pwd)
  [ -f "$lab/lab.env" ] || die "$lab is not a lab (no lab.env)"
  # shellcheck disable=SC1091
  . "$lab/lab.env"
}

ns_of() { echo "ferry-$FERRY_LAB_ID-$1"; }

# Runs CMD in NODE's namespaces: entered through its virtlogd, which lives as
# long as the node does (libvirtd may be stopped by a test).
on_node() {
  local node=$1; shift
  local pid
  pid=$(cat "$lab/$node/run/virtlogd.pid" 2>/dev/null) || die "$node is not up"
  exec nsenter -t "$pid" -n -m -u -- "$@"
}

wait_pidfile() {
  local f=$1
  for _ in $(seq 100); do [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# The lab's CA: LAB/pki/ca-cert.pem and its key.
make_lab_ca() {
  local ca=$lab/pki
  mkdir -p "$ca"
  printf 'cn = ferry lab CA\nca\ncert_signing_key\nexpiration_days = 30\n' > "$ca/ca.info"
  certtool --generate-privkey --key-type=rsa --bits=2048 --outfile "$ca/ca-key.pem" 2>/dev/null
  certtool --generate-self-signed --load-privkey "$ca/ca-key.pem" --template "$ca/ca.info" \
    --outfile "$ca/ca-cert.pem" 2>/dev/null
}

# NODE's certificate, for its name and address, good as server and client,
# copied to every file libvirtd and QEMU look for under /etc/pki.
issue_node_cert() {
  local node=$1 ca=$lab/pki pki=$lab/$1/pki
  mkdir -p "$pki"/{CA,libvirt/private,qemu}
  printf 'organization = ferry lab\ncn = %s\ndns_name = %s\nip_address = %s\ntls_www_server\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 30\n' \
    "$node" "$node" "${ADDR[$node]}" > "$ca/$node.info"
  certtool --generate-privkey --key-type=rsa --bits=2048 --outfile "$ca/$node-key.pem" 2>/dev/null
  certtool --generate-certificate --load-privkey "$ca/$node-key.pem" --load-ca-certificate "$ca/ca-cert.pem" \
    --load-ca-privkey "$ca/ca-key.pem" --template "$ca/$node.info" --outfile "$ca/$node-cert.pem" 2>/dev/null
  install -m 0644 "$ca/ca-cert.pem" "$pki/CA/cacert.pem"
  install -m 0644 "$ca/ca-cert.pem" "$pki/qemu/ca-cert.pem"
  local role
  for role in server client; do
    install -m 0644 "$ca/$node-cert.pem" "$pki/libvirt/${role}cert.pem"
    install -m 0600 "$ca/$node-key.pem" "$pki/libvirt/private/${role}key.pem"
    install -m 0644 "$ca/$node-cert.pem" "$pki/qemu/$role-cert.pem"
    install -m 0600 "$ca/$node-key.pem" "$pki/qemu/$role-key.pem"
  done
}

write_node_config() {
  local node=$1 dir=$lab/$1 n tls=0
  mkdir -p "$dir"/{run,etc/libvirt,lib/libvirt/qemu,lib/libvirt/images,log/libvirt,cache/libvirt,shm}
  if [ -f "$lab/pki/ca-cert.pem" ]; then issue_node_cert "$node"; tls=1; fi
  # A random host UUID per node: libvirt refuses to migrate "to the same host".
  cat > "$dir/etc/libvirt/libvirtd.conf" <<EOF
listen_tls = $tls
listen_tcp = 1
listen_addr = "${ADDR[$node]}"
auth_tcp = "none"
auth_unix_rw = "none"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  cat > "$dir/etc/libvirt/qemu.conf" <<EOF
user = "root"
group = "root"
security_driver = "none"
# Notice a dead peer during a peer-to-peer migration in 6 s rather than 30 s.
keepalive_interval = 2
keepalive_count = 2
EOF
  : > "$dir/etc/libvirt/virtlogd.conf"
  # Disk leases (FERRY_LAB_LEASES=1): libvirt's lockd lock manager. Each
  # node runs its own virtlockd; their lockspace is one directory both see,
  # as a shared mount is in production, so a disk leased on one node cannot
  # be leased on the other. A lease is a lock on the file named by the
  # SHA-256 of the disk's path.
  if [ "${FERRY_LAB_LEASES:-0}" = 1 ]; then
    mkdir -p "$lab/lockspace"
    echo 'lock_manager = "lockd"' >> "$dir/etc/libvirt/qemu.conf"
    printf 'auto_disk_leases = 1\nrequire_lease_for_disks = 1\nfile_lockspace_dir = "%s"\n' "$lab/lockspace" \
      > "$dir/etc/libvirt/qemu-lockd.conf"
    : > "$dir/etc/libvirt/virtlockd.conf"
  fi
  cp /etc/libvirt/libvirt.conf "$dir/etc/libvirt/" 2>/dev/null || true
  { grep -v -E 'nodea|nodeb' /etc/hosts || true
    for n in "${NODES[@]}"; do echo "${ADDR[$n]} $n"; echo "${MIGRATION_ADDR[$n]} $n-mig"; done; } > "$dir/hosts"
}

is_trixie() { case " ${FERRY_LAB_TRIXIE:-} " in *" $1 "*) return 0 ;; esac; return 1; }

# Makes the trixie root this mount namespace's root, as tests/lab/in-trixie.sh
# does (see there why pivot_root and why the root is bound onto itself). What
# the lab shares between nodes is bound in at its host path: /tmp (the lab's
# own directory, the tests' guest configs and consoles), the project (the
# ferry binary the tests run, the guest images). /proc and /sys are the
# node's as on a Debian 12 node: the host's PID namespace (the lab ends a
# node's processes by PID from outside), the network namespace's sysfs.
enter_trixie_root() {
  local root=$1
  mount --bind "$root" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount --make-rslave "$root/dev"
  mount --rbind /tmp "$root/tmp"
  mkdir -p "$root/etc/pki"
  bind_at_host_paths "$root" "$repo" "$(readlink -f "$repo/build/guest" 2>/dev/null || true)" "${CARGO_TARGET_DIR:-}"
  pivot_into "$root"
}

# The first process of a node: private mounts, hostname, then the daemons.
# Runs inside `ip netns exec NS unshare -m -u`.
node_init() {
  local node=$1 dir=$2 root=${3:-}
  mount --make-rprivate /
  [ -z "$root" ] || enter_trixie_root "$root"
  mkdir -p /etc/libvirt /etc/pki /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
  mount --bind "$dir/run" /run
  mount --bind "$dir/etc/libvirt" /etc/libvirt
  mount --bind "$dir/lib/libvirt" /var/lib/libvirt
  mount --bind "$dir/log/libvirt" /var/log/libvirt
  mount --bind "$dir/cache/libvirt" /var/cache/libvirt
  mount --bind "$dir/hosts" /etc/hosts
  [ ! -d "$dir/pki" ] || mount --bind "$dir/pki" /etc/pki
  mount -t tmpfs -o size=64m tmpfs /dev/shm
  mkdir -p /run/libvirt /run/lock /run/resource-agents
  hostname "$node"
  virtlogd -d -p /run/virtlogd.pid
  wait_pidfile /run/virtlogd.pid || die "$node: virtlogd did not start"
  # systemd's socket starts virtlockd on a real node; here it starts before
  # libvirtd, and it outlives a libvirtd a test kills, as its leases do.
  if [ -f /etc/libvirt/qemu-lockd.conf ]; then
    virtlockd -d -p /run/virtlockd.pid
    wait_pidfile /run/virtlockd.pid || die "$node: virtlockd did not start"
  fi
  libvirtd -d --listen -p /run/libvirtd.pid
  wait_pidfile /run/libvirtd.pid || die "$node: libvirtd did not start"
}

start_libvirtd() {
  local node=$1
  rm -f "$lab/$node/run/libvirtd.pid"
  (on_node "$node" libvirtd -d --listen -p /run/libvirtd.pid)
  wait_pidfile "$lab/$node/run/libvirtd.pid" || die "$node: libvirtd did not start"
  for _ in $(seq 100); do
    virsh -q -c "qemu+unix:///system?socket=$lab/$node/run/libvirt/libvirt-sock" uri >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$node: libvirtd does not answer"
}

stop_libvirtd() {
  local node=$1 pid
  pid=$(cat "$lab/$node/run/libvirtd.pid" 2>/dev/null) || return 0
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$lab/$node/run/libvirtd.pid"
}

up() {
  mkdir -p "$1"
  lab=$(cd "$1" && pwd)
  [ ! -f "$lab/lab.env" ] || die "$lab already holds a lab; take it down first"
  FERRY_LAB_ID=$(printf '%05d' $((RANDOM % 100000)))
  {
    echo "FERRY_LAB_ID=$FERRY_LAB_ID"
    echo "FERRY_LAB_DIR=$lab"
    echo "FERRY_LAB_NODES='${NODES[*]}'"
    echo "FERRY_LAB_LEASES=${FERRY_LAB_LEASES:-0}"
    echo "FERRY_LAB_TRIXIE='${FERRY_LAB_TRIXIE:-}'"
    for n in "${NODES[@]}"; do
      echo "FERRY_LAB_ADDR_$n=${ADDR[$n]}"
      echo "FERRY_LAB_URI_$n='qemu+unix:///system?socket=$lab/$n/run/libvirt/libvirt-sock'"
    done
  } > "$lab/lab.env"
  # From here on a failure leaves a partial lab: take it down, and say
  # which command failed, since many of them print nothing of their own.
  trap 'said_failure $LINENO "$BASH_COMMAND"; down_loaded; exit 1' ERR
  # libvirtd refuses to start without these accounts, and without
  # libvirt-daemon-system nothing creates them (with-libvirtd.sh does the
  # same, so either lab comes up first on a fresh machine).
  getent group kvm >/dev/null || groupadd -r kvm
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  # Mount points the nodes' private directories go over.
  mkdir -p /etc/libvirt /etc/pki /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
  command -v certtool >/dev/null || die "certtool is not installed (make deps: gnutls-bin)"
  if [ -n "${FERRY_LAB_TRIXIE:-}" ]; then
    [ -f "$trixie_root/.ferry-trixie-root" ] || die "no trixie root at $trixie_root (make trixie-root)"
  fi
  make_lab_ca
  local a=fv${FERRY_LAB_ID}a b=fv${FERRY_LAB_ID}b n
  for n in "${NODES[@]}"; do ip netns add "$(ns_of "$n")"; done
  local ma=fm${FERRY_LAB_ID}a mb=fm${FERRY_LAB_ID}b
  ip link add "$a" type veth peer name "$b"
  ip link add "$ma" type veth peer name "$mb"
  ip link set "$a" netns "$(ns_of nodea)"
  ip link set "$b" netns "$(ns_of nodeb)"
  ip link set "$ma" netns "$(ns_of nodea)"
  ip link set "$mb" netns "$(ns_of nodeb)"
  for n in "${NODES[@]}"; do
    local ns dev mdev
    ns=$(ns_of "$n"); [ "$n" = nodea ] && dev=$a mdev=$ma || dev=$b mdev=$mb
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "${ADDR[$n]}/24" dev "$dev"
    ip -n "$ns" link set "$dev" up
    ip -n "$ns" addr add "${MIGRATION_ADDR[$n]}/24" dev "$mdev"
    ip -n "$ns" link set "$mdev" up
    write_node_config "$n"
    if is_trixie "$n"; then
      ip netns exec "$ns" unshare -m -u -- "$0" __init "$n" "$lab/$n" "$trixie_root"
    else
      ip netns exec "$ns" unshare -m -u -- "$0" __init "$n" "$lab/$n"
    fi
  done
  for n in "${NODES[@]}"; do
    for _ in $(seq 100); do
      virsh -q -c "qemu+unix:///system?socket=$lab/$n/run/libvirt/libvirt-sock" uri >/dev/null 2>&1 && continue 2
      sleep 0.1
    done
    die "$n: libvirtd does not answer"
  done
  # Each node reaches the other's libvirtd by name, as a cluster node would.
  for n in "${NODES[@]}"; do
    for _ in $(seq 50); do
      (on_node nodea virsh -q -c "qemu+tcp://$n/system" uri >/dev/null 2>&1) && continue 2
      sleep 0.1
    done
    die "nodea cannot reach $n's libvirtd over TCP"
  done
  # ... and over TLS, which checks both nodes' certificates against the CA.
  for n in "${NODES[@]}"; do
    (on_node nodea virsh -q -c "qemu+tls://$n/system" uri >/dev/null 2>&1) && continue
    die "nodea cannot reach $n's libvirtd over TLS"
  done
  trap 'said_failure $LINENO "$BASH_COMMAND"' ERR
  echo "two-nodes: lab $FERRY_LAB_ID up in $lab (${NODES[*]})" >&2
}

# Ends every process in network namespace NS by PID, then deletes it.
end_netns() {
  local ns=$1 pid pids round
  ip netns list 2>/dev/null | grep -w "$ns" >/dev/null || return 0
  for round in TERM TERM TERM KILL KILL KILL; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] || break
    for pid in $pids; do kill -"$round" "$pid" 2>/dev/null || true; done
    sleep 0.5
  done
  ip netns del "$ns" 2>/dev/null || true
}

down_loaded() {
  local n
  for n in "${NODES[@]}"; do end_netns "$(ns_of "$n")"; done
  rm -rf "$lab"
}

down() {
  [ -d "${1:?usage}" ] || return 0
  [ -f "$1/lab.env" ] || { rm -rf "$1"; return 0; }
  load "$1"
  down_loaded
  echo "two-nodes: lab $FERRY_LAB_ID down" >&2
}

# --- the cluster: corosync (knet over the veth, two_node) + Pacemaker -------

write_cluster_config() {
  local n id=0
  {
    printf 'totem {\n  version: 2\n  cluster_name: ferrylab\n  transport: knet\n'
    printf '  crypto_cipher: none\n  crypto_hash: none\n  token: 3000\n}\nnodelist {\n'
    for n in "${NODES[@]}"; do
      id=$((id + 1))
      printf '  node {\n    name: %s\n    nodeid: %s\n    ring0_addr: %s\n  }\n' "$n" "$id" "${ADDR[$n]}"
    done
    printf '}\nquorum {\n  provider: corosync_votequorum\n  two_node: 1\n}\n'
    printf 'logging {\n  to_logfile: yes\n  logfile: /var/log/cluster/corosync.log\n'
    printf '  to_syslog: no\n  to_stderr: no\n  timestamp: on\n}\n'
  } > "$lab/corosync.conf"
  corosync-keygen -k "$lab/authkey" >/dev/null 2>&1 || die "corosync-keygen failed"
}

# pacemakerd ignores --pid-file, so its PID is written by the shell it
# replaces: stopping it later goes by that PID, never by a process name.
pacemakerd_pidfile() { echo "$lab/$1/run/ferry-lab-pacemakerd.pid"; }

start_pacemaker() {
  local node=$1 pidfile
  pidfile=$(pacemakerd_pidfile "$node")
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$ is the inner shell's PID, which exec hands to pacemakerd
  (on_node "$node" setsid -f sh -c 'echo $$ > /run/ferry-lab-pacemakerd.pid; exec pacemakerd' </dev/null >/dev/null 2>&1) \
    || die "$node: pacemakerd did not start"
  wait_pidfile "$pidfile" || die "$node: pacemakerd did not start"
}

# Whether PID runs: an exited process whose parent does not reap it (setsid
# -f left pacemakerd to PID 1) stays a zombie that kill -0 still finds.
running() {
  local state
  state=$(sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# A clean shutdown, as `systemctl stop pacemaker` makes one: pacemakerd on
# SIGTERM has the cluster stop or move away what runs on the node, ends its
# daemons and exits. Waits for that; a shutdown still going after 5 minutes
# is an error left for the caller to see, not something to SIGKILL.
stop_pacemaker() {
  local node=$1 pidfile pid
  pidfile=$(pacemakerd_pidfile "$node")
  pid=$(cat "$pidfile" 2>/dev/null) || die "$node: no pacemakerd was started by the lab"
  # The PID file outlives the process: make sure the PID is still ours.
  [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = pacemakerd ] || { rm -f "$pidfile"; return 0; }
  kill -TERM "$pid"
  for _ in $(seq 600); do
    running "$pid" || { rm -f "$pidfile"; return 0; }
    sleep 0.5
  done
  die "$node: pacemakerd $pid still runs 5 minutes after SIGTERM"
}

# ferry goes in with its own `make install`, into a copy of a generation's
# OCF tree (this machine's, or the trixie root's) that each node of that
# generation mounts at the real path: Pacemaker finds ocf:ferry:VirtualDomain
# where an operator's install puts it, and neither the host's /usr nor the
# trixie root is touched. Prints the tree's root.
ocf_tree() {
  local node=$1 base= tree=$lab/root
  ! is_trixie "$node" || base=$trixie_root tree=$lab/root-trixie
  if [ ! -d "$tree/usr/lib/ocf" ]; then
    mkdir -p "$tree/usr/lib"
    cp -a "$base/usr/lib/ocf" "$tree/usr/lib/ocf"
    make -s -C "$repo" install DESTDIR="$tree" PREFIX=/usr >/dev/null
  fi
  echo "$tree"
}

# Corosync's and Pacemaker's private directories on NODE, then corosync.
# The defaults come from the node's own generation, and the files are owned
# by its own hacluster (trixie's has not this host's uid). What a node had
# before (its CIB, its logs) is kept, as a package upgrade keeps them.
cluster_node() {
  local n=$1 dir=$lab/$1/cluster base= ocf
  ! is_trixie "$n" || base=$trixie_root
  ocf=$(ocf_tree "$n")
  mkdir -p "$dir/etc" "$dir/lib-corosync" "$dir/log-pacemaker" "$dir/log-cluster"
  cp -a "$base/etc/corosync/." "$dir/etc/"
  cp "$lab/corosync.conf" "$dir/etc/corosync.conf"
  install -m 0400 "$lab/authkey" "$dir/etc/authkey"
  [ -d "$dir/lib-pacemaker" ] || cp -a "$base/var/lib/pacemaker" "$dir/lib-pacemaker"
  (on_node "$n" mkdir -p /etc/corosync /var/lib/corosync /var/lib/pacemaker /var/log/pacemaker /var/log/cluster)
  (on_node "$n" mount --bind "$dir/etc" /etc/corosync)
  (on_node "$n" mount --bind "$dir/lib-corosync" /var/lib/corosync)
  (on_node "$n" mount --bind "$dir/lib-pacemaker" /var/lib/pacemaker)
  (on_node "$n" mount --bind "$dir/log-pacemaker" /var/log/pacemaker)
  (on_node "$n" mount --bind "$dir/log-cluster" /var/log/cluster)
  (on_node "$n" chown -R hacluster:haclient /var/lib/pacemaker /var/log/pacemaker)
  (on_node "$n" mount --bind "$ocf/usr/lib/ocf" /usr/lib/ocf)
  (on_node "$n" corosync) || die "$n: corosync did not start"
}

# NODE upgraded in place to Debian 13, as a rolling upgrade does it: its
# Pacemaker must already be stopped (its guests moved away); then the node
# "reboots": every process of it ends, and it comes up again from the trixie
# root with its network, its libvirt state, its CIB and its logs, and joins
# the cluster again.
upgrade() {
  local n=$1 pid
  ! is_trixie "$n" || die "$n already runs Debian 13"
  pid=$(cat "$(pacemakerd_pidfile "$n")" 2>/dev/null) && running "$pid" && die "$n: stop Pacemaker first"
  local ns pids
  ns=$(ns_of "$n")
  for round in TERM TERM KILL KILL; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] || break
    for pid in $pids; do kill -"$round" "$pid" 2>/dev/null || true; done
    sleep 1
  done
  [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] || die "$n: processes outlived the reboot"
  # A reboot empties /run.
  find "$lab/$n/run" -mindepth 1 -delete
  FERRY_LAB_TRIXIE="${FERRY_LAB_TRIXIE:-} $n"
  sed -i "s/^FERRY_LAB_TRIXIE=.*/FERRY_LAB_TRIXIE='${FERRY_LAB_TRIXIE# }'/" "$lab/lab.env"
  ip netns exec "$ns" unshare -m -u -- "$0" __init "$n" "$lab/$n" "$trixie_root"
  for _ in $(seq 100); do
    virsh -q -c "qemu+unix:///system?socket=$lab/$n/run/libvirt/libvirt-sock" uri >/dev/null 2>&1 && break
    sleep 0.1
  done
  if [ -f "$lab/corosync.conf" ]; then
    cluster_node "$n"
    start_pacemaker "$n"
  fi
  echo "two-nodes: $n upgraded to Debian 13" >&2
}

# crm_mon's whole answer is read before it is matched. Under pipefail,
# `crm_mon | grep -q` fails whenever grep exits before crm_mon's last write:
# Pacemaker 3.0's crm_mon writes a line at a time, so a slow tail dies of
# SIGPIPE (141) after the match was seen, and once this ended a lab at `up`.
cluster_online() {
  local status
  status=$(on_node nodea crm_mon -1 2>/dev/null) || return 1
  [[ $status == *"Online: [ nodea nodeb ]"* ]]
}

cluster() {
  command -v pacemakerd >/dev/null && command -v corosync >/dev/null || die "pacemaker and corosync are not installed (make deps)"
  write_cluster_config
  mkdir -p /etc/corosync /var/lib/corosync /var/lib/pacemaker /var/log/pacemaker /var/log/cluster
  local n
  for n in "${NODES[@]}"; do cluster_node "$n"; done
  for n in "${NODES[@]}"; do start_pacemaker "$n"; done
  for _ in $(seq 120); do cluster_online && break; sleep 1; done
  cluster_online || die "the cluster did not come up"
  # Lab only: nothing here can fence, and nothing needs to.
  (on_node nodea crm_attribute -t crm_config -n stonith-enabled -v false)
  # A guest stays where it is unless moved: the tests decide every move.
  (on_node nodea crm_attribute -t rsc_defaults -n resource-stickiness -v 100)
  echo "two-nodes: cluster up on ${NODES[*]}" >&2
}

cmd=${1:-}; shift || true
case "$cmd" in
  up) up "${1:?usage}" ;;
  down) down "${1:?usage}" ;;
  on) load "$1"; node=$2; shift 2; on_node "$node" "$@" ;;
  link)
    load "$1"
    for n in nodea nodeb; do
      dev=fv${FERRY_LAB_ID}${n: -1}
      ip -n "$(ns_of "$n")" link set "$dev" "${2:?up or down}"
    done ;;
  libvirtd)
    load "$1"
    case "${3:-}" in stop) stop_libvirtd "$2" ;; start) start_libvirtd "$2" ;; *) usage ;; esac ;;
  cluster) load "$1"; cluster ;;
  upgrade) load "$1"; upgrade "${2:?usage}" ;;
  pacemaker)
    load "$1"
    case "${3:-}" in stop) stop_pacemaker "$2" ;; start) start_pacemaker "$2" ;; *) usage ;; esac ;;
  __init) node_init "$@" ;;
  __config) lab=$(cd "$1" && pwd); write_node_config "$2" ;;
  __end) end_netns "$1" ;;
  *) usage ;;
esac
