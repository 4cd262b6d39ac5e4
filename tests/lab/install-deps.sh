#!/bin/bash
# Installs, with apt-get, the Debian 12 packages ferry's build, tests, demo and
# benchmark need (debootstrap builds the Debian 13 lab root,
# tests/lab/trixie-root.sh), skipping those already present. Safe to run again.
set -euo pipefail
packages=(
  qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  qemu-utils resource-agents libxml2-utils cpio busybox-static iproute2 procps kmod
  util-linux pacemaker pacemaker-cli-utils corosync gnutls-bin tcpdump
  pcs crmsh lintian man-db systemd strace time debootstrap
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
done
command -v cargo >/dev/null || { echo "install-deps: cargo is required (rustup)" >&2; exit 1; }
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
[ "$(id -u)" -eq 0 ] || { echo "install-deps: run as root to install packages" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
