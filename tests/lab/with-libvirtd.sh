#!/bin/bash
# Runs a command with a working system libvirtd (qemu:///system).
# If one already answers, it is used as it is. Otherwise this starts virtlogd and
# libvirtd itself, following the lab recipes (no systemd, guests run as root
# without confinement), runs the command, and on exit - also on failure or
# interrupt - ends exactly the daemons it started, by the PIDs their pid files
# name. It then exports FERRY_TEST_OWNS_LIBVIRTD=1: tests may stop and restart
# that libvirtd (with the same pid file), which they must never do to a daemon
# they did not start.
# Usage: tests/lab/with-libvirtd.sh CMD [ARGS...]
set -uo pipefail

started_pidfiles=()
cleanup() {
  local pid pidfile pids=()
  for pidfile in "${started_pidfiles[@]}"; do
    pid=$(cat "$pidfile" 2>/dev/null) && [ -n "$pid" ] && pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
child=
trap cleanup EXIT
# Forward an interrupt to the command, then clean up at once (bash would only
# run the trap after a foreground command finished).
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; exit 143' INT TERM

libvirt_answers() { timeout 10 virsh -c qemu:///system -q uri >/dev/null 2>&1; }

# Starts DAEMON in the background with a pid file and records its PID.
start_daemon() {
  local name=$1 pidfile=$2; shift 2
  rm -f "$pidfile"
  "$@" &
  local launcher=$!
  wait "$launcher"   # -d daemons fork; the pid file names the survivor
  for _ in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.1; done
  [ -s "$pidfile" ] || { echo "with-libvirtd: $name did not start" >&2; exit 1; }
  started_pidfiles+=("$pidfile")
}

if ! libvirt_answers; then
  # libvirtd refuses to start without these accounts; without libvirt-daemon-system
  # nothing creates them.
  getent group kvm >/dev/null || groupadd -r kvm
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  conf=/etc/libvirt/qemu.conf
  if ! grep -q '^# ferry test lab' "$conf" 2>/dev/null; then
    printf '\n# ferry test lab: guests run as root, unconfined\nuser = "root"\ngroup = "root"\nsecurity_driver = "none"\n' >> "$conf"
  fi
  mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/qemu
  if [ ! -S /var/run/libvirt/virtlogd-sock ]; then
    start_daemon virtlogd /var/run/virtlogd.pid virtlogd -d -p /var/run/virtlogd.pid
  fi
  start_daemon libvirtd /var/run/libvirtd.pid libvirtd -d -p /var/run/libvirtd.pid
  for _ in $(seq 100); do libvirt_answers && break; sleep 0.2; done
  libvirt_answers || { echo "with-libvirtd: libvirtd does not answer" >&2; exit 1; }
  echo "with-libvirtd: started virtlogd/libvirtd (${started_pidfiles[*]})" >&2
  export FERRY_TEST_OWNS_LIBVIRTD=1
fi

"$@" &
child=$!
wait "$child"
