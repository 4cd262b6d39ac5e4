#!/bin/bash
# Builds build/ferry_<version>_amd64.deb from build/ferry with dpkg-deb alone:
# ferry is one static binary, so the package needs no debhelper, no
# dependencies and no maintainer scripts. The man pages are written by the
# binary from its embedded meta-data, so they cannot drift from it.
#   packaging/deb.sh [BINARY] [OUTDIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
binary=${1:-$repo/build/ferry}
outdir=${2:-$repo/build}
version=$("$binary" --version | awk '{print $2}')
root=$(mktemp -d /tmp/ferry-deb.XXXXXX)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
# A reproducible package: every date is the last commit's.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}

install -D -m 0755 "$binary" "$root/usr/lib/ocf/lib/ferry/ferry"
install -d "$root/usr/lib/ocf/resource.d/ferry" "$root/usr/share/man/man7"
for agent in $("$binary" list); do
  ln -s ../../lib/ferry/ferry "$root/usr/lib/ocf/resource.d/ferry/$agent"
  "$binary" man "$agent" | gzip -9n >"$root/usr/share/man/man7/ocf_ferry_$agent.7.gz"
done
# Shutdown order: Pacemaker stops before libvirt and xl's services (README
# "Node shutdown"); Debian 12's packages ship units under /lib.
install -D -m 0644 "$repo/packaging/systemd/resource-agents-deps.target.d-ferry.conf" \
  "$root/lib/systemd/system/resource-agents-deps.target.d/ferry.conf"
doc=$root/usr/share/doc/ferry
install -D -m 0644 "$repo/packaging/copyright" "$doc/copyright"
gzip -9n <"$repo/README.md" >"$doc/README.md.gz"
# A native package's changelog, in Debian's format, for this version.
{
  echo "ferry ($version) unstable; urgency=medium"
  echo
  sed 's/^/  /' "$repo/packaging/changes"
  echo
  echo " -- ferry maintainers <maintainers@users.noreply.h-seed-2df15403.example>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
# A static-pie binary is an ELF of type DYN: lintian takes it for a shared
# library without a libc dependency, which it does not need.
install -D -m 0644 /dev/stdin "$root/usr/share/lintian/overrides/ferry" <<'OVERRIDES'
ferry: shared-library-lacks-prerequisites [usr/lib/ocf/lib/ferry/ferry]
OVERRIDES
chmod 0644 "$doc"/*.gz "$root"/usr/share/man/man7/*.gz

install -d "$root/DEBIAN"
(cd "$root" && find usr lib -type f | sort | xargs md5sum) >"$root/DEBIAN/md5sums"
cat >"$root/DEBIAN/control" <<CONTROL
Package: ferry
Version: $version
Architecture: amd64
Maintainer: ferry maintainers <maintainers@users.noreply.h-seed-2df15403.example>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Section: admin
Priority: optional
Recommends: pacemaker, libvirt-clients
Suggests: xen-utils-common
Homepage: https://localhost/ferry
Description: OCF resource agents for virtual machines, in one static binary
 ocf:ferry:VirtualDomain and ocf:ferry:Xen start, stop, monitor and live-migrate
 KVM/QEMU (through libvirt) and Xen (through xl) guests under Pacemaker. They
 take the parameters of resource-agents' heartbeat:VirtualDomain and
 heartbeat:Xen, never report a guest stopped that they cannot prove stopped,
 and bound every wait by the operation's timeout.
CONTROL
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$outdir"
deb=$outdir/ferry_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
