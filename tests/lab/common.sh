# Shared by the test scripts: a staged `make install`, and a test guest config.
# Sourced, not run. Every script that sources it gets a private work directory
# that is removed on exit, with any domain it names destroyed.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d /tmp/ferry-test.XXXXXX)
domains_to_clean=()
cleanup_common() {
  local d
  for d in "${domains_to_clean[@]}"; do
    virsh -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup_common EXIT

# Installs ferry under $work/stage as `make install DESTDIR=…` would.
stage_install() {
  make -s -C "$repo" install DESTDIR="$work/stage" PREFIX=/usr >/dev/null
  agent_dir=$work/stage/usr/lib/ocf/resource.d/ferry
}

# Writes the TCG test guest's domain XML: write_guest NAME FILE CONSOLE
write_guest() {
  local name=$1 file=$2 console=$3
  domains_to_clean+=("$name")
  cat > "$file" <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$repo/build/guest/vmlinuz</kernel><initrd>$repo/build/guest/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet</cmdline></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='$console' append='on'/><target port='0'/></serial>
    <console type='file'><source path='$console' append='on'/><target type='serial' port='0'/></console>
  </devices>
</domain>
XML
}
