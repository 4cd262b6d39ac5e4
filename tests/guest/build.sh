#!/bin/bash
# Builds the small Linux test guest that ferry's integration tests drive:
# Debian's kernel plus a busybox-static initramfs whose init
#   - answers ACPI power-button presses with `poweroff -f`, so `virsh shutdown`
#     is a real graceful shutdown (about 2 s under TCG);
#   - prints "ferry-tick N" on the serial console every second, so a test can
#     see that the guest keeps running (and, later, keeps running across a
#     migration);
#   - with "ferry.dirty=MIB" on the kernel command line, rewrites that much
#     memory in a loop, for migrations that are hard to converge;
#   - with "ferry.fill=MIB", keeps that much random data in RAM (written once),
#     so a migration has that much to send beyond the kernel's own pages;
#     with "ferry.rate=MIB" too, rewrites that much of it every second: a
#     steady, known dirty rate (the drain test's workload);
#   - answers guest-sync and guest-ping as a QEMU guest agent when it has an
#     org.qemu.guest_agent.0 channel, until the host sends "ferry-freeze":
#     then it keeps the channel open and never answers again (a hung guest);
#     "ferry.agent=off" keeps it from starting (a guest that never connects);
#   - with "ferry.watchdog=SECS", arms an i6300esb watchdog once and never
#     feeds it, so it fires; "ferry-watchdog" sent over the agent channel
#     does the same at a moment the host chooses (a chaos fault);
#   - with "ferry.disk=1", writes 1 MiB a second to /dev/vda, from its start
#     to its end and over again, so a test can make the disk fail under it
#     at any time (storage that fills or loses blocks under the guest);
#   - with "ferry.crash=SECS", crashes its kernel after SECS (sysrq c);
#   - with "ferry.secret=SEED", keeps a secret in its RAM (a tmpfs file):
#     "ferry-secret-" and the first 32 hex digits of SEED's sha256, many
#     times over. A capture of a migration's stream finds it there exactly
#     when the guest's memory crossed the wire in clear text. The secret is
#     derived inside the guest so that it appears nowhere else: not in the
#     domain XML, which libvirt sends over its own connection.
#   - panics on an NMI when booted with unknown_nmi_panic=1, and tells QEMU
#     through the pvpanic device when it has one.
# Inputs come only from Debian's archive (apt-get download), and the result is
# cached: a rerun with the outputs present does nothing.
# Usage: tests/guest/build.sh OUTDIR     (writes OUTDIR/vmlinuz, OUTDIR/initrd.img)
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Rebuilt when this script changes: the guest's behaviour is defined here.
stamp=$(sha256sum "$0" | cut -c1-16)
[ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ] && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# linux-image-amd64 is a metapackage; the kernel lives in the package it depends on.
resolve_kernel() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kpkg=$(resolve_kernel)
if [ -z "$kpkg" ]; then
  apt-get update -qq   # a fresh machine has no package lists yet
  kpkg=$(resolve_kernel)
fi
[ -n "$kpkg" ] || { echo "build.sh: cannot resolve linux-image-amd64" >&2; exit 1; }
apt-get download -q "$kpkg" busybox-static >/dev/null
dpkg -x linux-image-*.deb kernel
dpkg -x busybox-static_*.deb bb

root=$work/root
mkdir -p "$root"/{bin,lib,etc/acpi/PWRF,proc,sys,dev,tmp}
cp bb/bin/busybox "$root/bin/busybox"
kver=$(ls kernel/lib/modules)
cp "kernel/lib/modules/$kver/kernel/drivers/input/evdev.ko" "$root/lib/"
cp "kernel/lib/modules/$kver/kernel/drivers/acpi/button.ko" "$root/lib/"
# Debian builds these as modules; the guest loads what its devices need.
for m in virtio/virtio_ring virtio/virtio virtio/virtio_pci_modern_dev virtio/virtio_pci_legacy_dev virtio/virtio_pci \
         char/virtio_console block/virtio_blk watchdog/watchdog watchdog/i6300esb misc/pvpanic/pvpanic misc/pvpanic/pvpanic-mmio; do
  cp "kernel/lib/modules/$kver/kernel/drivers/$m.ko" "$root/lib/"
done

# busybox acpid maps the power button to the event PWRF/00000080 and runs the
# file of that name under its config directory.
cat > "$root/etc/acpi/PWRF/00000080" <<'SH'
#!/bin/sh
echo "ferry-guest: power button, powering off"
poweroff -f
SH
chmod +x "$root/etc/acpi/PWRF/00000080"

cat > "$root/init" <<'SH'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
insmod /lib/evdev.ko
insmod /lib/button.ko
acpid -c /etc/acpi -l /tmp/acpid.log
# A Xen PV guest has no ACPI button: xl shutdown makes the kernel run its
# poweroff helper, which is the same handler.
echo /etc/acpi/PWRF/00000080 > /proc/sys/kernel/poweroff_cmd
# pvpanic binds only where QEMU has the device (ACPI QEMU0001).
insmod /lib/pvpanic.ko && insmod /lib/pvpanic-mmio.ko
# Red Hat's PCI vendor id: a virtio device (agent channel, test disk).
if grep -qs 0x1af4 /sys/bus/pci/devices/*/vendor; then
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console virtio_blk; do
    insmod /lib/$m.ko
  done
fi
# Arms the i6300esb watchdog to fire after $1 s and never feeds it: armed
# by the open; closed without the magic 'V' it stays armed. (devtmpfs would
# make a plain file of a missing device node, hence the -c.)
arm_watchdog() {
  insmod /lib/watchdog.ko 2>/dev/null
  insmod /lib/i6300esb.ko heartbeat="$1" 2>/dev/null
  [ -c /dev/watchdog ] && echo 1 > /dev/watchdog && echo "ferry-guest: watchdog armed, never fed"
}
agent_port=
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && agent_port=/dev/${p##*/}
done
grep -q 'ferry\.agent=off' /proc/cmdline && agent_port=
if [ -n "$agent_port" ]; then
  (
    exec 3<>"$agent_port"
    while :; do
      # A read returns at once while the host end is not connected.
      if ! read -r line <&3; then sleep 1; continue; fi
      case $line in
        *guest-sync*)
          id=$(echo "$line" | sed -n 's/.*"id"[ ]*:[ ]*\([0-9]*\).*/\1/p')
          echo "{\"return\": $id}" >&3 ;;
        *guest-ping*) echo '{"return": {}}' >&3; echo "ferry-guest: guest-ping answered" ;;
        *ferry-freeze*)
          echo '{"return": {}}' >&3
          echo "ferry-guest: guest agent frozen"
          # Keeps the channel open: libvirt sees an agent that never answers.
          exec sleep 1000000 ;;
        *ferry-watchdog*) echo '{"return": {}}' >&3; arm_watchdog 1 ;;
        *) echo '{"error": {"class": "CommandNotFound", "desc": "not in the ferry test guest"}}' >&3 ;;
      esac
    done
  ) &
  echo "ferry-guest: guest agent on $agent_port"
fi
watchdog=$(sed -n 's/.*ferry\.watchdog=\([0-9]*\).*/\1/p' /proc/cmdline)
[ -z "$watchdog" ] || arm_watchdog "$watchdog"
crash=$(sed -n 's/.*ferry\.crash=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$crash" ]; then
  ( sleep "$crash"; echo "ferry-guest: crashing the kernel"; echo c > /proc/sysrq-trigger ) &
fi
if grep -q 'ferry\.disk=1' /proc/cmdline; then
  (
    # The disk's size in MiB (sysfs counts 512-byte sectors).
    mib=$(( $(cat /sys/block/vda/size) / 2048 ))
    [ "$mib" -gt 0 ] || mib=1
    n=0
    while :; do
      dd if=/dev/urandom of=/dev/vda bs=1M count=1 seek=$n conv=fsync,notrunc 2>/dev/null && echo "ferry-disk wrote $n"
      n=$(( (n + 1) % mib ))
      sleep 1
    done
  ) &
fi
seed=$(sed -n 's/.*ferry\.secret=\([0-9a-zA-Z]*\).*/\1/p' /proc/cmdline)
if [ -n "$seed" ]; then
  secret="ferry-secret-$(printf %s "$seed" | sha256sum | cut -c1-32)"
  mkdir -p /secret
  mount -t tmpfs -o size=1m tmpfs /secret
  # Many copies: a copy cut by a packet boundary must not be the only one.
  i=0; while [ $i -lt 512 ]; do echo "$secret"; i=$((i + 1)); done > /secret/token
  unset secret
  echo "ferry-guest: secret kept in RAM"
fi
dirty=$(sed -n 's/.*ferry\.dirty=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$dirty" ]; then
  mount -t tmpfs -o size=$((dirty + 8))m tmpfs /tmp
  ( while :; do dd if=/dev/urandom of=/tmp/dirty bs=1M count="$dirty" conv=notrunc 2>/dev/null; done ) &
fi
fill=$(sed -n 's/.*ferry\.fill=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$fill" ]; then
  mkdir -p /fill
  mount -t tmpfs -o size=$((fill + 8))m tmpfs /fill
  dd if=/dev/urandom of=/fill/data bs=1M count="$fill" 2>/dev/null
  rate=$(sed -n 's/.*ferry\.rate=\([0-9]*\).*/\1/p' /proc/cmdline)
  if [ -n "$rate" ] && [ "$rate" -gt 0 ]; then
    # rate MiB a second, walking through the data so every page is dirtied
    # in turn, then a pause to the next second.
    ( seek=0; while :; do
        dd if=/dev/urandom of=/fill/data bs=1M count="$rate" seek="$seek" conv=notrunc 2>/dev/null
        seek=$(( (seek + rate) % fill )); [ $((seek + rate)) -le "$fill" ] || seek=0
        sleep 1
      done ) &
  fi
  echo "ferry-guest: filled $fill MiB, rewriting ${rate:-0} MiB/s"
fi
echo "ferry-guest: up"
i=0
while :; do
  echo "ferry-tick $i"
  i=$((i + 1))
  sleep 1
done
SH
chmod +x "$root/init"

cp "kernel/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "$stamp" > "$out/.stamp"
echo "guest built: $out (kernel $kver)"
