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
  sed -e "s|@NAME@|$name|g" -e "s|@IMAGES@|$repo/build/guest|g" -e "s|@CONSOLE@|$console|g" \
    "$repo/tests/guest/domain.xml.in" > "$file"
}
