#!/bin/bash
# Every test suite, in order; each runs even if an earlier one failed, and the
# last line counts suites as "N passed, N failed". Needs a libvirtd (make test
# wraps this in tests/lab/with-libvirtd.sh); the migration and cluster suites
# bring up their own two-node lab.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0 failed=0 failures=()
suite() {
  local name=$1; shift
  echo
  echo "==== $name: $*"
  local started=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "==== $name: ok ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "==== $name: FAILED ($((SECONDS - started)) s)"
  fi
}
suite unit           cargo test --release --locked --bins
suite integration    cargo test --release --locked --test integration -- --test-threads=2
suite libvirtd-down  cargo test --release --locked --test libvirtd_down
suite migration      tests/lab/with-two-nodes.sh cargo test --release --locked --test migration -- --test-threads=1
suite cluster        tests/lab/with-two-nodes.sh --cluster cargo test --release --locked --test cluster -- --test-threads=1
suite xen            tests/xen/run.sh
suite ocf-tester     tests/ocf-tester.sh
suite ocft           tests/ocft.sh
echo
[ "$failed" -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
