#!/bin/bash
# Builds what the Xen lab boots under QEMU:
#   OUT/xen              Debian's Xen 4.17 hypervisor (gunzipped, multiboot)
#   OUT/vmlinuz          Debian's kernel, dom0 and the PV guest alike
#   OUT/dom0.cpio.gz     dom0's initramfs: busybox, the xl toolstack with every
#                        library it loads, the Xen kernel modules, the static
#                        ferry binary installed as ocf:ferry:Xen, the test
#                        guest (tests/guest) as a PVH domU (xguest) and as a PV
#                        one (xpv), and tests/xen/dom0 (init and the test
#                        scripts run inside dom0)
#   OUT/cluster-root     Debian 12's userland for the cluster stage: corosync,
#                        Pacemaker, pcs, crmsh and xen-utils, debootstrapped
#                        from Debian's archive (tests/lab/debian-root.sh,
#                        cached); dom0 mounts it read-only over 9p
#   OUT/tester.cpio.gz   resource-agents' ocf-tester with what it runs (bash,
#                        xmllint and their libraries, ra-api-1.dtd); appended
#                        to dom0's initramfs for the one-host stage only, as
#                        it doubles the archive
# Inputs come only from Debian's archive (`apt-get download`, cached in
# OUT/debs) and this tree; dom0.cpio.gz is rebuilt every time, since it
# carries the ferry binary under test.
# Usage: tests/xen/build.sh OUT FERRY GUEST_DIR
set -euo pipefail
out=${1:?usage: build.sh OUT FERRY GUEST_DIR}
ferry=${2:?ferry binary}
guest=${3:?guest dir (tests/guest/build.sh output)}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out/debs"
out=$(cd "$out" && pwd)

packages=(xen-hypervisor-4.17-amd64 xen-utils-4.17 libxencall1 libxenevtchn1 libxenforeignmemory1
  libxengnttab1 libxenmisc4.17 libxenstore4 libxentoollog1 libxendevicemodel1 libxenhypfs1 libxentoolcore1 libyajl2)
resolve_kernel() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
if [ "$(cat "$out/debs/.complete" 2>/dev/null)" != "${packages[*]}" ]; then
  kpkg=$(resolve_kernel)
  if [ -z "$kpkg" ] || ! apt-cache show xen-utils-4.17 >/dev/null 2>&1; then
    apt-get update -qq
    kpkg=$(resolve_kernel)
  fi
  (cd "$out/debs" && apt-get download -q "${packages[@]}" "$kpkg" >/dev/null 2>&1) || { echo "xen build: apt-get download failed" >&2; exit 1; }
  echo "${packages[*]}" > "$out/debs/.complete"
  rm -rf "$out/pkgroot"
fi

pkgroot=$out/pkgroot
if [ ! -d "$pkgroot/usr/lib/xen-4.17" ]; then
  rm -rf "$pkgroot"; mkdir -p "$pkgroot"
  for deb in "$out"/debs/*.deb; do dpkg -x "$deb" "$pkgroot"; done
fi
[ -s "$out/xen" ] || gunzip -c "$pkgroot"/boot/xen-4.17-amd64.gz > "$out/xen"
kver=$(ls "$pkgroot/lib/modules")
cp "$pkgroot/boot/vmlinuz-$kver" "$out/vmlinuz"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"   # it becomes dom0's /, which ocf-tester's nobody must traverse
mkdir -p "$root"/{bin,sbin,etc/xen,lib/modules,proc,sys,dev,run,tmp,var/lib/xen,var/log/xen/console,guest}
mkdir -p "$root/usr/lib/ocf/lib/ferry" "$root/usr/lib/ocf/resource.d/ferry"
cp /bin/busybox "$root/bin/busybox"
xenbin=/usr/lib/xen-4.17/bin
mkdir -p "$root$xenbin"
for tool in xl xenstored xenconsoled xen-init-dom0 libxl-save-helper; do
  cp "$pkgroot$xenbin/$tool" "$root$xenbin/"
done
# Every shared library the tools load, from the unpacked packages first and
# this (Debian 12) machine second, at the path the loader will look in.
libpath=$pkgroot/usr/lib/x86_64-linux-gnu:$pkgroot/usr/lib/xen-4.17/lib/x86_64-linux-gnu:$pkgroot/lib/x86_64-linux-gnu
if LD_LIBRARY_PATH=$libpath ldd "$root$xenbin"/* | grep -q "not found"; then
  echo "xen build: libraries missing:" >&2
  LD_LIBRARY_PATH=$libpath ldd "$root$xenbin"/* | grep "not found" | sort -u >&2
  exit 1
fi
libs=$(for tool in "$root$xenbin"/*; do LD_LIBRARY_PATH=$libpath ldd "$tool"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
for lib in $libs /usr/lib/x86_64-linux-gnu/libgcc_s.so.1; do   # xl create aborts without libgcc_s
  case $lib in
    "$pkgroot"/*) dest=${lib#"$pkgroot"} ;;
    *) dest=$lib ;;
  esac
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$lib" "$root$dest"
done
mkdir -p "$root/lib64" && cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd; do
  cp "$pkgroot/lib/modules/$kver/kernel/drivers/xen/$m.ko" "$root/lib/modules/"
done
cp "$pkgroot/lib/modules/$kver/kernel/drivers/xen/xenfs/xenfs.ko" "$root/lib/modules/"
kmod=$pkgroot/lib/modules/$kver/kernel
cp "$kmod/drivers/net/ethernet/intel/e1000/e1000.ko" "$root/lib/modules/"
# 9p over virtio: the two hosts' shared storage in stage 2.
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev \
         drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci fs/netfs/netfs fs/fscache/fscache \
         net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p; do
  cp "$kmod/$m.ko" "$root/lib/modules/"
done
# overlayfs: the cluster stage's writable layer over the shared userland.
cp "$kmod/fs/overlayfs/overlay.ko" "$root/lib/modules/"

cp "$ferry" "$root/usr/lib/ocf/lib/ferry/ferry"
ln -s ../../lib/ferry/ferry "$root/usr/lib/ocf/resource.d/ferry/Xen"
cp "$out/vmlinuz" "$root/guest/vmlinuz"
cp "$guest/initrd.img" "$root/guest/initrd.img"
cp "$here/dom0/init" "$here/dom0/cases.sh" "$here/dom0/lifecycle.sh" "$here/dom0/migration.sh" "$here/dom0/cluster.sh" "$root/"
chmod +x "$root/init" "$root/lifecycle.sh" "$root/migration.sh" "$root/cluster.sh"
# The test guest (tests/guest) twice. xguest is PVH, the lab's main guest:
# Debian's Xen 4.17.7 is built without shadow paging (XSA-495), so only a
# guest on hardware-assisted paging (HAP, here TCG's emulated AMD NPT) has
# the log-dirty mode live migration needs. xpv is PV, which has no log-dirty
# mode on this build: its live migration must fail cleanly, and it moves by
# save migration instead.
# guest_cfg NAME TYPE [ON_CRASH [EXTRA [ON_REBOOT]]]
guest_cfg() {
  cat <<CFG
# The test guest (tests/guest) as a Xen $2 domU.
name = "$1"
type = "$2"
kernel = "/guest/vmlinuz"
ramdisk = "/guest/initrd.img"
extra = "console=hvc0 quiet${4:+ $4}"
memory = 128
vcpus = 1
on_poweroff = "destroy"
on_reboot = "${5:-restart}"
on_crash = "${3:-destroy}"
CFG
}
guest_cfg xguest pvh > "$root/etc/xen/guest.cfg"
# xl reads its global settings here and complains when the file is missing.
echo '# xl.conf: xl defaults throughout' > "$root/etc/xen/xl.conf"
guest_cfg xpv pv > "$root/etc/xen/guest-pv.cfg"
# A guest whose kernel crashes a few seconds after boot, kept by Xen for
# inspection: present, failed, and cleared by stop.
guest_cfg xcrash pvh preserve ferry.crash=4 > "$root/etc/xen/guest-crash.cfg"
# Two more beside the agent's own, held in the states xl prints while it
# reboots a guest (kept so by on_reboot="preserve") and saves one.
guest_cfg xodd pvh destroy "" preserve > "$root/etc/xen/guest-odd.cfg"
guest_cfg xsave pvh > "$root/etc/xen/guest-save.cfg"
# The cluster stage's guest, as the README names it; a crash keeps it
# (on_crash="preserve") for the monitor to find and stop to clear.
guest_cfg guest1 pvh preserve > "$root/etc/xen/guest1.cfg"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/dom0.cpio.gz.tmp"
mv "$out/dom0.cpio.gz.tmp" "$out/dom0.cpio.gz"

# ocf-tester's archive, from this machine's own packages (bash,
# libxml2-utils, resource-agents), unpacked over dom0's by the kernel.
if [ ! -s "$out/tester.cpio.gz" ] || [ "$out/tester.cpio.gz" -ot /usr/sbin/ocf-tester ] || [ "$out/tester.cpio.gz" -ot "$0" ]; then
  troot=$(mktemp -d)
  chmod 755 "$troot"
  mkdir -p "$troot"/{bin,usr/bin,usr/sbin,etc,usr/share/resource-agents}
  cp /bin/bash "$troot/bin/bash"
  cp /usr/bin/xmllint "$troot/usr/bin/xmllint"
  cp /usr/sbin/ocf-tester "$troot/usr/sbin/ocf-tester"
  cp /usr/share/resource-agents/ra-api-1.dtd "$troot/usr/share/resource-agents/"
  for lib in $(ldd /bin/bash /usr/bin/xmllint | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u); do
    mkdir -p "$troot$(dirname "$lib")"
    cp -L "$lib" "$troot$lib"
  done
  # ocf-tester runs meta-data as nobody (su nobody).
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' > "$troot/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$troot/etc/group"
  (cd "$troot" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/tester.cpio.gz.tmp"
  rm -rf "$troot"
  mv "$out/tester.cpio.gz.tmp" "$out/tester.cpio.gz"
fi
# The cluster stage's userland, the KVM lab's package versions (this
# machine's suite), with xen-utils for the xl Pacemaker's agents run.
"$here/../lab/debian-root.sh" xen-cluster-root "$(. /etc/os-release && echo "$VERSION_CODENAME")" "$out/cluster-root" \
  pacemaker pacemaker-cli-utils corosync pcs crmsh resource-agents xen-utils-4.17 iproute2 procps
echo "xen build: $out (Xen $(ls "$pkgroot"/boot/xen-4.17-amd64.gz >/dev/null && dpkg-deb -f "$out"/debs/xen-hypervisor-4.17-amd64_*.deb Version), kernel $kver, dom0 initramfs $(du -h "$out/dom0.cpio.gz" | cut -f1))"
