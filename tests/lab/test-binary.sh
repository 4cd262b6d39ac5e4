#!/bin/bash
# Prints the path of each named integration-test executable, built on this
# host first if stale (cargo test --no-run), one a line: a lab root without
# cargo (tests/lab/in-trixie.sh) runs them directly. The path is the one
# cargo reports in its JSON messages (target/.../deps/NAME-HASH).
# Usage: tests/lab/test-binary.sh NAME...
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] || { echo "usage: $0 NAME..." >&2; exit 2; }
args=()
for name; do args+=(--test "$name"); done
json=$(cargo test --release --locked --no-run --message-format=json "${args[@]}")
for name; do
  exe=$(grep -o "\"executable\":\"[^\"]*/deps/$name-[0-9a-f]*\"" <<<"$json" | tail -n1 | cut -d'"' -f4)
  [ -n "$exe" ] || { echo "test-binary: cargo built no test executable for $name" >&2; exit 1; }
  echo "$exe"
done
